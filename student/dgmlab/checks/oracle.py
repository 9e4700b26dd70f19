"""Expected values from PyTorch's own API: what the labs' formulas must agree with.

This package ships to students, so no check holds a hand-written copy of an exercise's answer:
where a judge needs the value a formula gives, it asks torch.distributions or
torch.nn.functional (documented library calls, which a student may use too and which the
variant lists count as correct answers), in float64 (differentiable: a check may train through them). A judge that needs more than a library
gives (a schedule, a derived closed form) reads the expected values of its public inputs from
the check itself, and asks `grader_reference` for anything else: the instructor's package holds
those references, and only the grader has it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence


def _standard_normal(like: torch.Tensor) -> Normal:
    return Normal(torch.zeros((), dtype=like.dtype), torch.ones((), dtype=like.dtype))


def kl_to_prior(mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, scale^2) || N(0, 1)) per element, in float64."""
    mean, scale = mean.double(), scale.double()
    return kl_divergence(Normal(mean, scale), _standard_normal(mean))


def log_ratio(z: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log q(z) - log p(z) per element, q = N(mean, scale^2), p = N(0, 1), in float64: the
    one-sample Monte-Carlo estimate of the KL."""
    z, mean, scale = z.double(), mean.double(), scale.double()
    return Normal(mean, scale).log_prob(z) - _standard_normal(z).log_prob(z)


def posterior_sample(mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """One z ~ N(mean, scale^2) per element, from torch's (the caller's seeded) generator."""
    return Normal(mean, scale).sample()


def bernoulli_nll(probs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(images; probs) per pixel, in float64 (torch's binary cross-entropy)."""
    return F.binary_cross_entropy(probs.double(), images.double(), reduction="none")


def grader_reference(name: str) -> Callable | None:
    """The instructor's reference `name` (autograder.references), or None where only the
    student package is installed (a student's self-check): the caller then says that only
    the grader checks these inputs."""
    try:
        references = importlib.import_module("autograder.references")
    except ImportError:
        return None
    return getattr(references, name)
