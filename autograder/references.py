"""References the grader needs and the student package must not hold (see dgmlab.checks.oracle).

A check's judge asks `dgmlab.checks.oracle.grader_reference(NAME)` for these; a student's own
self-check, without this package, uses the expected values of its public inputs instead.
"""


def kl_weight(warm_up: int, annealing: int, epoch: int) -> float:
    """The KL weight of `epoch`: 0 during warm-up, then linear to 1 over `annealing` epochs."""
    if epoch < warm_up:
        return 0.0
    return min(1.0, (epoch - warm_up) / annealing) if annealing else 1.0
