"""The hidden tests' checks of `dgmlab.checks.elbo`: the grader's, never the students'.

A hidden test cell imports this module inside its hidden region; the sandbox carries it
(the kernel collects), the student package does not (sandbox.KERNEL_PACKAGES).
"""

from collections.abc import Callable

import torch

from autograder.hidden_checks.reparam import (  # noqa: F401  (the lab calls it as hidden_checks.*)
    check_reparameterization_gradients,
)
from dgmlab.checks.core import collect
from dgmlab.checks.elbo import (
    _expect_gradient,
    _random_latents,
    _scalar,
)


@collect
def check_mc_latent_loss_gradients(mc_latent_loss: Callable, inputs: dict) -> dict:
    """d/dz = z / B and d/dscale = -1 / (scale B), exactly (B the batch size)."""
    z, eps, scale = (inputs[k].clone().requires_grad_(True) for k in ("z", "eps", "scale"))
    value = mc_latent_loss(z, eps, scale)
    found: dict = {"value": value}
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.requires_grad:
        value.backward()
        found.update(z_grad=z.grad, scale_grad=scale.grad)
    return found


@check_mc_latent_loss_gradients.inputs
def _mc_gradient_inputs() -> dict:
    return _random_latents(4, 3)


@check_mc_latent_loss_gradients.judge
def _judge_mc_gradients(inputs: dict, found: dict) -> None:
    z, scale = inputs["z"], inputs["scale"]
    _scalar(found.get("value"), "mc_latent_loss")
    batch = z.shape[0]
    z_grad, scale_grad = found.get("z_grad"), found.get("scale_grad")
    _expect_gradient(z_grad, z.double() / batch, "d mc_latent_loss / d z should be z / batch_size")
    _expect_gradient(
        scale_grad,
        -1 / (scale.double() * batch),
        "d mc_latent_loss / d scale should be -1 / (scale * batch_size), from the -log(scale) term",
    )


@collect
def check_kl_latent_loss_gradients(kl_latent_loss: Callable, inputs: dict) -> dict:
    """d/dmean = mean / B and d/dscale = (scale - 1 / scale) / B, exactly."""
    mean = inputs["mean"].clone().requires_grad_(True)
    scale = inputs["scale"].clone().requires_grad_(True)
    value = kl_latent_loss(mean, scale)
    found: dict = {"value": value}
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.requires_grad:
        value.backward()
        found.update(mean_grad=mean.grad, scale_grad=scale.grad)
    return found


@check_kl_latent_loss_gradients.inputs
def _kl_gradient_inputs() -> dict:
    return {"mean": 2 * torch.randn(6, 3), "scale": torch.exp(torch.empty(6, 3).uniform_(-1, 1))}


@check_kl_latent_loss_gradients.judge
def _judge_kl_gradients(inputs: dict, found: dict) -> None:
    mean, s = inputs["mean"].double(), inputs["scale"].double()
    _scalar(found.get("value"), "kl_latent_loss")
    batch = mean.shape[0]
    mean_grad, scale_grad = found.get("mean_grad"), found.get("scale_grad")
    _expect_gradient(
        mean_grad, mean / batch, "d kl_latent_loss / d mean should be mean / batch_size"
    )
    _expect_gradient(
        scale_grad,
        (s - 1 / s) / batch,
        "d kl_latent_loss / d scale should be (scale - 1 / scale) / batch_size",
    )
