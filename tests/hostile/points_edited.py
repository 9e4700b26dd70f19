# expect: 0
# base: wrong
# why: points and grade ids edited, a fake test cell worth 1000 added
# %% notebook
for cell in nb.cells:
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("grade"):
        meta["points"] = 1000
fake = nbformat.v4.new_code_cell("print('passed')")
fake.metadata["nbgrader"] = {"grade": True, "grade_id": "bonus", "locked": True, "points": 1000, "solution": False, "schema_version": 3}
nb.cells.append(fake)
