"""Seeding of every cell while a submission is graded, so that grading is reproducible.

The grader starts the kernel with AUTOGRADER_GRADING=1 and a salt drawn from the submission's
secret (see job.py). Importing the check library, which the lab's locked first cell does, then
registers an IPython hook that seeds random, numpy and torch before each cell from the salt and
the cell's source: a cell's random draws do not depend on what ran before it, a regrade with the
same secret draws the same numbers, and no two submissions share one fixed stream. Students,
who run without the variable, keep ordinary fresh randomness.
"""

import os

from dgmlab.checks.core import seed_everything, stable_seed

GRADING_ENV = "AUTOGRADER_GRADING"
SALT_ENV = "AUTOGRADER_SEED_SALT"


def seed_cell(info) -> None:
    """IPython pre_run_cell hook: seed from the salt and the cell about to run."""
    seed_everything(stable_seed(os.environ.get(SALT_ENV, "") + (info.raw_cell or "")))


def install_seed_hook() -> bool:
    """Register the hook once, if grading inside IPython; say whether it is active."""
    if os.environ.get(GRADING_ENV) != "1":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    if seed_cell not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", seed_cell)
    return True
