# expect: 0
# base: wrong
# why: reading the course: sources with solutions, the gradebook, other students, the hidden tests
# %% before reparameterize
import glob, os
found = []
for path in ["{COURSE}/source/mini/mini.ipynb", "{COURSE}/gradebook.db", "{COURSE}/submitted/a-full/mini/mini.ipynb", "{COURSE}/nbgrader_config.py"]:
    try:
        open(path, "rb").read(10)
        found.append(path)
    except OSError:
        pass
for path in ["{REPO}/solutions", "{REPO}/labs", "{REPO}/autograder/hidden", "{REPO}/tests", "/root/.cache/dgm-labs"]:
    if os.path.exists(path):
        found.append(path)
import autograder
# the hidden thresholds (the hidden tests' checks, hidden_checks, are the kernel's to collect with)
found += [p for p in glob.glob(os.path.dirname(autograder.__file__) + "/*") if os.path.basename(p) == "hidden"]
print("SEEN", found)
# %% assert
outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
assert "SEEN []" in outputs, outputs
