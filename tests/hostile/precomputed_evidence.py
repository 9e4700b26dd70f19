# expect: 0
# base: wrong
# why: evidence files written before the tests, then every later cell turned into a no-op
# %% before reparameterize
import os, torch
from pathlib import Path
from dgmlab.checks import evidence, reparam
root = Path(os.environ[evidence.EVIDENCE_ENV])
inputs = reparam._columns(reparam.ROWS)
z = inputs["mu"] + torch.exp(0.5 * inputs["log_var"]) * torch.randn(inputs["mu"].shape)
for test in ("reparameterize", "kl"):
    for index in range(2):
        evidence.save({"check": "reparam.check_reparameterization", "evidence": {"z1": z, "z2": z + 0}}, root / test / f"{index}.pt")
get_ipython().input_transformers_post.append(lambda lines: ["pass\n"])
