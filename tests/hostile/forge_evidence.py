# expect: 0
# base: wrong
# why: Check.__call__ patched to write evidence of its own (wrong samples, zeros)
# %% before reparameterize
import os, torch
from pathlib import Path
from dgmlab.checks import core, evidence
def forged(self, *answers, **params):
    test, index, call = evidence.next_challenge(self.name)
    mu = call["inputs"].get("mu", torch.zeros(1))
    fake = {"z1": mu + torch.randn_like(mu), "z2": mu + torch.randn_like(mu), "z": mu,
            "tracked": True, "mu_grad": torch.ones_like(mu), "log_var_grad": torch.zeros_like(mu),
            "exact": [torch.tensor(w) for *_, w in core.EXACT_KL], "batch": torch.tensor(1.0),
            "value": torch.tensor(0.0), "extreme": torch.tensor(0.0)}
    evidence.record(test, index, self.name, fake)
core.Check.__call__ = forged
