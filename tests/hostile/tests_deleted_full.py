# expect: 5
# base: full
# why: test cells deleted from a correct submission: they are run as the instructor wrote them
# %% notebook
nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))]
