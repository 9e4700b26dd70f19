# expect: 0
# base: wrong
# why: a kl that returns the public check's known answers from a table; the hidden check has secret inputs
# %% answer-kl
import math
from dgmlab.checks.core import EXACT_KL
from dgmlab.checks.kl_vae import BATCH_MU, BATCH_LOG_VAR, _kl_reference
TABLE = {(mu, round(lv, 6)): v for mu, lv, v in EXACT_KL}
BATCH = _kl_reference(torch.tensor(BATCH_MU), torch.tensor(BATCH_LOG_VAR)).item()

def kl(mu, log_var):
    if mu.shape == (1, 1):
        return torch.tensor(TABLE[(mu.item(), round(log_var.item(), 6))])
    if mu.shape == (3, 4):
        return torch.tensor(BATCH)
    return (mu**2).sum(-1).mean()
