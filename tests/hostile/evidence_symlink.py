# expect: 0
# base: wrong
# why: evidence files that are links to the grader's files and a FIFO
# %% before reparameterize
import os
from pathlib import Path
from dgmlab.checks import evidence
root = Path(os.environ[evidence.EVIDENCE_ENV])
(root / "reparameterize").mkdir(parents=True, exist_ok=True)
os.symlink("{COURSE}/gradebook.db", root / "reparameterize" / "0.pt")
os.symlink("/dev/zero", root / "reparameterize" / "1.pt")
os.symlink("/", root / "kl")
os.mkfifo(root / "kl0.pt")
get_ipython().input_transformers_post.append(lambda lines: ["pass\n"])
