"""Statistical checks with a bounded false-failure rate (DESIGN §3).

Every assertion compares a statistic with its standard error under the hypothesis that the
student's code is correct, with the two-sided threshold C = 5.5 standard errors:
P(|N(0, 1)| > 5.5) = 3.8e-8. A check function makes at most 25 such assertions, so by the
union bound a correct answer fails one with probability at most 25 * 3.8e-8 < 1e-6.
"""

import math

import torch

from autograder.checks.core import expect

C = 5.5
P_ONE = 3.8e-8  # 2 * (1 - Phi(C)): the false-failure probability of one assertion
TAIL_P = 0.04550026  # P(|N(0, 1)| > 2)


def expect_standard_normal(e: torch.Tensor, what: str) -> None:
    """Each column of `e` (n rows) looks like iid N(0, 1): mean, variance and tail mass."""
    e = e.detach().double().cpu()
    n = e.shape[0]
    mean, var = e.mean(0), e.var(0)
    tail = (e.abs() > 2).double().mean(0)
    for j in range(e.shape[1]):
        # mean of n iid N(0,1): sd 1/sqrt(n); false failure P_ONE
        expect(
            abs(mean[j]) <= C / math.sqrt(n),
            f"{what}: column {j} has mean {mean[j]:.4f}, expected 0",
        )
        # sample variance: sd sqrt(2/(n-1)) (chi-square, skew sqrt(8/n) ~ 0.01); false failure ~P_ONE
        expect(
            abs(var[j] - 1) <= C * math.sqrt(2 / (n - 1)),
            f"{what}: column {j} has variance {var[j]:.4f}, expected 1",
        )
        # fraction beyond 2 sd: binomial(n, TAIL_P)/n; uniform noise of unit variance has none
        expect(
            abs(tail[j] - TAIL_P) <= C * math.sqrt(TAIL_P * (1 - TAIL_P) / n),
            f"{what}: column {j} has {tail[j]:.4f} of its mass beyond 2 sd, a Gaussian has 0.0455",
        )


def expect_uncorrelated(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Two standardised samples of length n are uncorrelated: |mean(a*b)| <= C/sqrt(n)."""
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    r = (a * b).mean()
    # for independent unit-variance a, b: sd of mean(a*b) is 1/sqrt(n); false failure P_ONE
    expect(abs(r) <= C / math.sqrt(a.numel()), f"{what}: correlation {r:.4f}, expected 0")


# Power: a statistic with standard error sd, tested at C sd, is caught with probability >= 0.999
# when its true shift is at least (C + Z_POWER) sd, Z_POWER = Phi^-1(0.999). Every statistical
# assertion states this smallest detectable effect beside its false-failure bound (issue 10).
Z_POWER = 3.0902


def detectable(sd: float) -> float:
    """The smallest shift of a statistic with standard error `sd` that a C-sd test detects with
    probability at least 0.999: (C + Z_POWER) * sd = 8.59 sd."""
    return (C + Z_POWER) * sd
