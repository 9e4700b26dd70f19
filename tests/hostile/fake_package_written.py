# expect: 0
# base: wrong
# why: a fake autograder package written to the working directory and put first
# %% before reparameterize
import os, sys, importlib
os.makedirs("dgmlab/checks", exist_ok=True)
open("autograder/__init__.py", "w").write("")
open("dgmlab/checks/__init__.py", "w").write("")
open("dgmlab/checks/kl_vae.py", "w").write("def __getattr__(name):\n    return lambda *a, **k: print('passed')\n")
sys.path.insert(0, os.getcwd())
for name in [m for m in sys.modules if m.startswith("autograder")]:
    del sys.modules[name]
from dgmlab.checks import kl_vae as checks
