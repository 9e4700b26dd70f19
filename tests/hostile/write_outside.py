# expect: 0
# base: wrong
# why: writes to the course, the installed library and the system; none reaches the machine
# %% before reparameterize
import os, sys, torch, autograder
for path in ["{COURSE}/gradebook.db", "{COURSE}/release/mini/mini.ipynb", os.path.join(os.path.dirname(torch.__file__), "x.py"), os.path.join(os.path.dirname(autograder.__file__), "checks", "reparam.py"), "/usr/x", "/etc/x", "/x", sys.prefix + "/x"]:
    try:
        open(path, "a").write("x")
    except OSError:
        pass
# %% assert
import sys, torch
from pathlib import Path
course = ctx["course"]
assert not (course / "gradebook.db").read_bytes().endswith(b"x")
assert not Path("{REPO}/student/dgmlab/checks/reparam.py").read_text().endswith("x")
for path in [Path(torch.__file__).parent / "x.py", Path("/usr/x"), Path("/etc/x"), Path("/x"), Path(sys.prefix) / "x"]:
    assert not path.exists(), path
