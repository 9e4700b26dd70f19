# expect: 0
# base: wrong
# why: an object whose __eq__, item() and comparisons say what the check wants
# %% answer-kl
class Yes:
    shape = ()
    def dim(self): return 0
    def item(self): return 2.0
    def __eq__(self, other): return True
    def __sub__(self, other): return 0.0
    def __abs__(self): return 0.0
    def __lt__(self, other): return True
    def __le__(self, other): return True

def kl(mu, log_var):
    return Yes()
