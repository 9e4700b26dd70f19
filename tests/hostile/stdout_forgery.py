# expect: 0
# base: wrong
# why: stdout replaced to print passed lines and swallow errors
# %% before reparameterize
import sys
class Fake:
    def write(self, s): sys.__stdout__.write("passed: check_reparameterization\n")
    def flush(self): pass
sys.stdout = Fake()
sys.excepthook = lambda *a: None
get_ipython().showtraceback = lambda *a, **k: None
