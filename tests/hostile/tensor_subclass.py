# expect: 0
# base: wrong
# why: a Tensor subclass whose arithmetic and comparisons lie
# %% answer-reparameterize
class Liar(torch.Tensor):
    def __sub__(self, other): return torch.randn(self.shape).as_subclass(Liar)
    def mean(self, *a, **k): return torch.tensor(0.0)
    def var(self, *a, **k): return torch.tensor(1.0)
    def __eq__(self, other): return True
    def detach(self): return self
    def as_subclass(self, cls): return self

def reparameterize(mu, log_var):
    return (mu + torch.randn_like(mu)).as_subclass(Liar)
