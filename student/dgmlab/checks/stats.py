"""Statistical checks with a bounded false-failure rate (DESIGN §3).

Every assertion compares a statistic with its standard error under the hypothesis that the
student's code is correct, with the two-sided threshold C = 5.5 standard errors:
P(|N(0, 1)| > 5.5) = 3.8e-8. A check function makes at most 25 such assertions, so by the
union bound a correct answer fails one with probability at most 25 * 3.8e-8 < 1e-6. Beside
each assertion stands its power: the smallest effect it detects with probability 0.999.
"""

import math

import torch

from dgmlab.checks.core import expect

C = 5.5
P_ONE = 3.8e-8  # 2 * (1 - Phi(C)): the false-failure probability of one assertion
TAIL_P = 0.04550026  # P(|N(0, 1)| > 2)
TAIL3_P = 0.0026997961  # P(|N(0, 1)| > 3)
TAIL3_ROWS = 50_000  # the least n whose beyond-3-sd assertion fails a correct sampler < 1.3e-7


def expect_standard_normal(e: torch.Tensor, what: str) -> None:
    """Each column of `e` (n rows) looks like iid N(0, 1): mean, variance and the mass beyond 2
    and beyond 3 standard deviations (four assertions per column)."""
    e = e.detach().double().cpu()
    n = e.shape[0]
    mean, var = e.mean(0), e.var(0)
    beyond2 = (e.abs() > 2).double().mean(0)
    beyond3 = (e.abs() > 3).double().mean(0)
    for j in range(e.shape[1]):
        # mean of n iid N(0,1): sd 1/sqrt(n); false failure P_ONE;
        # detects a shift of detectable(1/sqrt(n)) sd (0.027 at n = 1e5) at 0.999
        expect(
            abs(mean[j]) <= C / math.sqrt(n),
            f"{what}: column {j} has mean {mean[j]:.4f}, expected 0",
        )
        # sample variance: sd sqrt(2/(n-1)) (chi-square, skew sqrt(8/n) ~ 0.01); false failure
        # ~P_ONE; detects a variance off by detectable(sqrt(2/n)) (0.038 at n = 1e5: a scale off
        # by 1.9%) at 0.999
        expect(
            abs(var[j] - 1) <= C * math.sqrt(2 / (n - 1)),
            f"{what}: column {j} has variance {var[j]:.4f}, expected 1",
        )
        # fraction beyond 2 sd: binomial(n, TAIL_P)/n; false failure 4.0e-8 (exact binomial at
        # n = 1e5); detects a tail mass off by 0.0057 (12%) at 0.999: uniform noise of unit
        # variance has none
        expect(
            abs(beyond2[j] - TAIL_P) <= C * math.sqrt(TAIL_P * (1 - TAIL_P) / n),
            f"{what}: column {j} has {beyond2[j]:.4f} of its mass beyond 2 sd, a Gaussian has "
            f"{TAIL_P:.4f}",
        )
        # fraction beyond 3 sd: binomial(n, TAIL3_P)/n; false failure 7.6e-8 at n = 1e5 and
        # 1.3e-7 at n = TAIL3_ROWS (exact binomial: the Poisson-like right tail is heavier than
        # the normal one, so smaller samples skip it); detects a tail mass off by 0.0014 (52%)
        # at 0.999 at n = 1e5: noise clipped at 3 sd or less has none, which the variance
        # (0.978 when clipped at 2.5 sd) cannot reliably see
        expect(
            n < TAIL3_ROWS
            or abs(beyond3[j] - TAIL3_P) <= C * math.sqrt(TAIL3_P * (1 - TAIL3_P) / n),
            f"{what}: column {j} has {beyond3[j]:.4f} of its mass beyond 3 sd, a Gaussian has "
            f"{TAIL3_P:.4f}",
        )


def expect_uncorrelated(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Two standardised samples of length n are uncorrelated: |mean(a*b)| <= C/sqrt(n)."""
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    r = (a * b).mean()
    # for independent unit-variance a, b: sd of mean(a*b) is 1/sqrt(n); false failure P_ONE;
    # detects a correlation of detectable(1/sqrt(n)) (0.027 at n = 1e5) at 0.999
    expect(abs(r) <= C / math.sqrt(a.numel()), f"{what}: correlation {r:.4f}, expected 0")


# Power: a statistic with standard error sd, tested at C sd, is caught with probability >= 0.999
# when its true shift is at least (C + Z_POWER) sd, Z_POWER = Phi^-1(0.999). Every statistical
# assertion states this smallest detectable effect beside its false-failure bound (issue 10).
Z_POWER = 3.0902


def detectable(sd: float) -> float:
    """The smallest shift of a statistic with standard error `sd` that a C-sd test detects with
    probability at least 0.999: (C + Z_POWER) * sd = 8.59 sd."""
    return (C + Z_POWER) * sd
