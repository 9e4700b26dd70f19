# expect: 5
# base: full
# why: a correct submission with the kl answer moved after its test: graded cells run in the release's order
# %% notebook
ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
answer = nb.cells.pop(ids.index("answer-kl"))
nb.cells.append(answer)
