# expect: 0
# base: wrong
# why: the tags grading and nbclient skip added to every test cell
# %% notebook
for cell in nb.cells:
    if cell.metadata.get("nbgrader", {}).get("grade"):
        cell.metadata["tags"] = ["autograder-skip-when-grading", "skip-execution", "raises-exception"]
