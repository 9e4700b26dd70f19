"""Checks of a VAE's reparameterization sampler z = mu + sigma * eps, shared by the VAE labs."""

import math
from collections.abc import Callable

import torch

from autograder.checks import core, stats
from autograder.checks.core import check, device_of, expect, expect_shape, expect_tensor

Sampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Columns with different (mu, log sigma^2); at log_var = 0 exp(log_var) and exp(log_var / 2)
# coincide and would hide the classic missing-1/2 bug, so most columns have log_var != 0.
MU = (0.0, 1.5, -2.0, 0.3)
LOG_VAR = (0.0, 1.2, -1.5, math.log(4.0))
ROWS = 100_000


def _inputs(
    device: torch.device, rows: int, grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    mu = torch.tensor(MU, device=device).repeat(rows, 1).requires_grad_(grad)
    log_var = torch.tensor(LOG_VAR, device=device).repeat(rows, 1).requires_grad_(grad)
    return mu, log_var


def _sample(reparameterize: Sampler, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    z = expect_tensor(reparameterize(mu, log_var), "reparameterize(mu, log_var)")
    expect_shape(z, mu.shape, "z")
    expect(z.device == mu.device, f"z should be on {mu.device} like mu, got {z.device}")
    return z


@check
def check_reparameterization(reparameterize: Sampler) -> None:
    """z ~ N(mu, exp(log_var)) per element, fresh noise per row, column and call."""
    device = device_of(reparameterize)
    with torch.no_grad():
        mu, log_var = _inputs(device, ROWS)
        z1 = _sample(reparameterize, mu, log_var)
        z2 = _sample(reparameterize, mu, log_var)
    expect(core.isfinite(z1).all().item(), "z contains NaN or inf")
    sigma = torch.exp(0.5 * log_var)
    e1, e2 = (z1 - mu) / sigma, (z2 - mu) / sigma
    stats.expect_standard_normal(e1, "(z - mu) / sigma")  # 12 assertions
    expect(not core.equal(z1, z2), "two calls returned the same z: draw fresh noise on every call")
    stats.expect_uncorrelated(e1[:, 1], e2[:, 1], "noise of two calls")
    stats.expect_uncorrelated(e1[1:, 1], e1[:-1, 1], "noise of neighbouring rows")
    stats.expect_uncorrelated(e1[:, 1], e1[:, 2], "noise of two latent columns")
    # 15 statistical assertions in all: false failure <= 15 * 3.8e-8 = 5.7e-7


@check
def check_reparameterization_gradients(reparameterize: Sampler) -> None:
    """d z / d mu = 1 and d z / d log_var = (z - mu) / 2, exactly (the sampler is differentiable)."""
    mu, log_var = _inputs(device_of(reparameterize), 64, grad=True)
    z = _sample(reparameterize, mu, log_var)
    expect(z.requires_grad, "z does not depend on mu and log_var through the graph")
    g = torch.randn_like(z)
    (z * g).sum().backward()
    expect(mu.grad is not None and core.allclose(mu.grad, g), "dz/dmu should be 1 everywhere")
    expect(log_var.grad is not None, "z does not depend on log_var: sigma was detached or unused")
    want = 0.5 * g * (z - mu).detach()
    expect(
        core.allclose(log_var.grad, want, rtol=1e-4, atol=1e-5),
        "dz/dlog_var should be (z - mu) / 2: sigma = exp(log_var / 2), not detached",
    )
