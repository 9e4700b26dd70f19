# expect: 0
# base: wrong
# why: a fake module swapped into sys.modules and re-imported
# %% before reparameterize
import sys, types
fake = types.ModuleType("dgmlab.checks.kl_vae")
fake.__getattr__ = lambda name: (lambda *a, **k: print("passed"))
sys.modules["dgmlab.checks.kl_vae"] = fake
from dgmlab.checks import kl_vae as checks
