# expect: 0
# base: wrong
# why: an answer cell relabelled with a test's grade id
# %% notebook
for cell in nb.cells:
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("grade_id") == "answer-kl":
        meta.update(grade=True, grade_id="kl", points=2)
