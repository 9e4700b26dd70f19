# expect: 5
# base: full
# why: every test cell of a correct submission copied three times: each runs once
# %% notebook
import copy
cells = []
for cell in nb.cells:
    cells.append(cell)
    if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code":
        cells += [copy.deepcopy(cell), copy.deepcopy(cell)]
nb.cells = cells
