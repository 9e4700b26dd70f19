# expect: 0
# base: wrong
# why: writes to the course, the installed library and the system
# %% before reparameterize
import os, sys, torch, autograder
written = []
for path in ["{COURSE}/gradebook.db", "{COURSE}/release/mini/mini.ipynb", os.path.join(os.path.dirname(torch.__file__), "x.py"), os.path.join(os.path.dirname(autograder.__file__), "checks", "reparam.py"), "/usr/x", "/etc/x", "/x", sys.prefix + "/x"]:
    try:
        open(path, "a").write("x")
        written.append(path)
    except OSError:
        pass
print("WROTE", written)
# %% assert
outputs = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
assert "WROTE []" in outputs, outputs
