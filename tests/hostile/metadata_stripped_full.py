# expect: 5
# base: full
# why: a correct submission copied into a fresh notebook (no metadata): tests are found by their source
# %% notebook
for cell in nb.cells:
    cell.metadata = {}
nb.metadata = {}
