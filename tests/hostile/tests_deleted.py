# expect: 0
# base: wrong
# why: every test cell deleted
# %% notebook
nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))]
