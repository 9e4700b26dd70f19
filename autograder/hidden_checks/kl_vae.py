"""The hidden tests' checks of `dgmlab.checks.kl_vae`: the grader's, never the students'.

A hidden test cell imports this module inside its hidden region; the sandbox carries it
(the kernel collects), the student package does not (sandbox.KERNEL_PACKAGES).
"""

from collections.abc import Callable

import torch

from autograder.hidden_checks.reparam import (  # noqa: F401  (the lab calls it as hidden_checks.*)
    check_reparameterization_gradients,
)
from dgmlab.checks import core
from dgmlab.checks.core import collect, expect
from dgmlab.checks.kl_vae import (
    DISAGREES,
    EXTREME_LOG_VAR,
    LATENT,
    _allclose,
    _copies,
    _expect_scalar,
    _kl_normal_reference,
    _kl_normal_result,
    _kl_reference,
    _normals,
    _random_normals,
)


@collect
def check_kl_normal_properties(kl_normal: Callable, inputs: dict) -> dict:
    """Non-negative, zero only for equal distributions, broadcasts a scalar p."""
    mu_q, sigma_q, mu_p, sigma_p = _normals(inputs)
    zero, one = torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)
    return {
        "got": kl_normal(*_copies(mu_q, sigma_q, mu_p, sigma_p)),
        "broadcast": kl_normal(*_copies(mu_q, sigma_q, zero, one)),
        "moved": kl_normal(*_copies(mu_q, sigma_q, mu_q + 0.1, sigma_q)),
    }


@check_kl_normal_properties.inputs
def _kl_normal_properties_inputs() -> dict:
    return _random_normals(10_000)


@check_kl_normal_properties.judge
def _judge_kl_normal_properties(inputs: dict, found: dict) -> None:
    mu_q, sigma_q, mu_p, sigma_p = _normals(inputs)
    got = _kl_normal_result(found, "got")
    expect(bool((got >= -1e-12).all()), "kl_normal returned a negative value: KL is never < 0")
    broadcast = _kl_normal_result(found, "broadcast")
    want = _kl_normal_reference(mu_q, sigma_q, torch.zeros((), dtype=torch.float64), 1.0)
    expect(
        _allclose(broadcast, want, 1e-6, 1e-6),
        "kl_normal(mu_q, sigma_q, 0, 1) with 0-dim tensors for p should broadcast elementwise",
    )
    moved = _kl_normal_result(found, "moved")
    expect(bool((moved > 0).all()), "KL of two different normals should be > 0")
    # the values themselves, so that evidence of made-up non-negative numbers cannot pass
    for values, want, atol in (
        (got, _kl_normal_reference(mu_q, sigma_q, mu_p, sigma_p), 1e-6),
        (moved, _kl_normal_reference(mu_q, sigma_q, mu_q + 0.1, sigma_q), 1e-9),
    ):
        off = ((values.double() - want).abs() / want.abs().clamp(min=1e-12)).max().item()
        expect(_allclose(values, want, 1e-6, atol), f"{DISAGREES} (off by up to {off:.2g} of it)")


@core.collect
def check_kl_divergence_details(kl: Callable, inputs: dict) -> dict:
    """Gradients, float64 agreement with torch.distributions, finite for log_var in [-30, 30]."""
    mu = inputs["mu"].clone().requires_grad_()
    log_var = inputs["log_var"].clone().requires_grad_()
    value = kl(mu, log_var)
    found = {"value": value, "tracked": isinstance(value, torch.Tensor) and value.requires_grad}
    if found["tracked"] and value.dim() == 0:
        value.backward()
        found.update(mu_grad=mu.grad, log_var_grad=log_var.grad)
    extreme = torch.tensor(EXTREME_LOG_VAR)
    return {**found, "extreme": kl(torch.zeros_like(extreme), extreme)}


@check_kl_divergence_details.inputs
def _kl_details_inputs() -> dict:
    return {
        "mu": torch.randn(16, LATENT, dtype=torch.float64),
        "log_var": 2 * torch.randn(16, LATENT, dtype=torch.float64),
    }


@check_kl_divergence_details.judge
def _judge_kl_details(inputs: dict, found: dict) -> None:
    mu, log_var = inputs["mu"], inputs["log_var"]
    got = _expect_scalar(found, "value", "KLDivergence()(mu, log_var)")
    want = _kl_reference(mu, log_var)
    off = abs(got.double().item() / want.item() - 1)
    expect(
        _allclose(got, want, 1e-9, 1e-9),
        f"KL of a random float64 batch disagrees with torch.distributions.kl_divergence by "
        f"{off:.2g} of its value (compute in the dtype of mu and log_var)",
    )
    expect(
        found.get("tracked") is True,
        "the KL is not connected to mu and log_var: do not detach them",
    )
    mu_grad, log_var_grad = found.get("mu_grad"), found.get("log_var_grad")
    expect(
        isinstance(mu_grad, torch.Tensor) and _allclose(mu_grad, mu / 16, 1e-6, 1e-9),
        "dKL/dmu should be mu / batch_size",
    )
    want = 0.5 * (log_var.exp() - 1) / 16
    expect(
        isinstance(log_var_grad, torch.Tensor) and _allclose(log_var_grad, want, 1e-6, 1e-9),
        "dKL/dlog_var should be (exp(log_var) - 1) / (2 batch_size)",
    )
    extreme = torch.tensor(EXTREME_LOG_VAR)
    value = _expect_scalar(found, "extreme", "KLDivergence()(0, log_var)")
    expect(core.isfinite(value).item(), "KL is not finite for log_var in [-30, 30]")
    expect(
        abs(value.item() / _kl_reference(torch.zeros_like(extreme), extreme).item() - 1) < 1e-5,
        "KL is wrong for log_var = -30 or 30: compute sigma^2 as exp(log_var)",
    )
