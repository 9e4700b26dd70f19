# expect: 0
# base: wrong
# why: an evidence file whose pickle would run code in the grader
# %% before reparameterize
import os, pickle, torch
from pathlib import Path
from dgmlab.checks import evidence
class Evil:
    def __reduce__(self):
        return (os.system, ("touch {MARKER}",))
root = Path(os.environ[evidence.EVIDENCE_ENV])
for test in ("reparameterize", "kl"):
    for index in range(2):
        (root / test).mkdir(parents=True, exist_ok=True)
        torch.save({"check": "x", "evidence": Evil()}, root / test / f"{index}.pt")
get_ipython().input_transformers_post.append(lambda lines: ["pass\n"])
