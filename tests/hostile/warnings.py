# expect: 5
# base: full
# why: a correct answer that warns on stderr loses nothing
# %% answer-kl
import warnings

def kl(mu, log_var):
    warnings.warn("kl warns", UserWarning)
    return 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1).mean()
