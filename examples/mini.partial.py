# The partly correct submission of tests/templates/mini.md: every answer cell holds the
# reference solution except the ones below, which hold a typical student mistake.

# %% answer-kl
def kl(mu, log_var):
    # forgot the 1/2
    return (mu**2 + log_var.exp() - 1 - log_var).sum(-1).mean()
