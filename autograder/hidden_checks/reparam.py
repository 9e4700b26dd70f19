"""The hidden tests' checks of `dgmlab.checks.reparam`: the grader's, never the students'.

A hidden test cell imports this module inside its hidden region; the sandbox carries it
(the kernel collects), the student package does not (sandbox.KERNEL_PACKAGES).
"""

import torch

from dgmlab.checks import core
from dgmlab.checks.core import answer_tensor, collect, device_of, expect
from dgmlab.checks.reparam import (
    Sampler,
    _columns,
    _expect_z,
)


@collect
def check_reparameterization_gradients(reparameterize: Sampler, inputs: dict) -> dict:
    """d z / d mu = 1 and d z / d log_var = (z - mu) / 2, exactly (the sampler is differentiable)."""
    device = device_of(reparameterize)
    mu = inputs["mu"].to(device).requires_grad_()
    log_var = inputs["log_var"].to(device).requires_grad_()
    z = reparameterize(mu, log_var)
    if not (isinstance(z, torch.Tensor) and z.requires_grad):
        return {"z": z, "tracked": False}
    (z * inputs["g"].to(z.device)).sum().backward()
    return {"z": z, "tracked": True, "mu_grad": mu.grad, "log_var_grad": log_var.grad}


@check_reparameterization_gradients.inputs
def _gradient_inputs() -> dict:
    columns = _columns(64)
    return {**columns, "g": torch.randn(columns["mu"].shape)}


@check_reparameterization_gradients.judge
def _judge_gradients(inputs: dict, found: dict) -> None:
    mu, g = inputs["mu"], inputs["g"]
    z = answer_tensor(found, "z", "reparameterize(mu, log_var)")
    _expect_z(z, mu, "z")
    expect(found.get("tracked") is True, "z does not depend on mu and log_var through the graph")
    mu_grad = found.get("mu_grad")
    expect(
        isinstance(mu_grad, torch.Tensor)
        and mu_grad.shape == g.shape
        and core.allclose(mu_grad, g),
        "dz/dmu should be 1 everywhere",
    )
    log_var_grad = found.get("log_var_grad")
    expect(
        isinstance(log_var_grad, torch.Tensor),
        "z does not depend on log_var: sigma was detached or unused",
    )
    want = 0.5 * g * (z - mu)
    expect(
        log_var_grad.shape == want.shape
        and core.allclose(log_var_grad, want, rtol=1e-4, atol=1e-5),
        "dz/dlog_var should be (z - mu) / 2: sigma = exp(log_var / 2), not detached",
    )
