# expect: 5
# base: full
# why: the locked import cell deleted from a correct submission: it is restored
# %% notebook
nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("locked") or c.metadata["nbgrader"].get("grade")]
