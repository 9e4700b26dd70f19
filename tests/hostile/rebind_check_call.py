# expect: 0
# base: wrong
# why: Check.__call__ patched to print success and record nothing
# %% before reparameterize
from dgmlab.checks.core import Check
Check.__call__ = lambda self, *a, **k: print(f"passed: {self.__name__}")
