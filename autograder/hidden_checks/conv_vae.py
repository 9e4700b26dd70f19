"""The hidden tests' checks of `dgmlab.checks.conv_vae`: the grader's, never the students'.

A hidden test cell imports this module inside its hidden region; the sandbox carries it
(the kernel collects), the student package does not (sandbox.KERNEL_PACKAGES).
"""

from collections.abc import Callable

import torch

from autograder.hidden_checks.reparam import (  # noqa: F401  (the lab calls it as hidden_checks.*)
    check_reparameterization_gradients,
)
from dgmlab.checks import core
from dgmlab.checks.conv_vae import (
    _args,
    _call_loss,
    _expect_terms,
    _judge_paths,
    _loss_terms,
    _pairs,
    _paths,
    _random_inputs,
)
from dgmlab.checks.core import collect, expect


@collect
def check_vae_loss_gradients(vae_loss: Callable, inputs: dict) -> dict:
    """Binary images are handled; the gradients are those of the two sums."""
    output, mu, log_var, images = _args(inputs)
    found = {"binary": _call_loss(vae_loss, output, mu, log_var, images.round())}
    leaves = [t.clone().requires_grad_() for t in (output, mu, log_var)]
    result = vae_loss(*leaves, images.clone())
    found["graded"] = {"terms": result, "kind": type(result).__name__}
    pair = isinstance(result, tuple | list) and len(result) == 2
    if pair and all(isinstance(t, torch.Tensor) for t in result):
        found["tracked"] = all(t.requires_grad for t in result)
        if found["tracked"]:
            (result[0].sum() + result[1].sum()).backward()
            names = ("output_grad", "mu_grad", "log_var_grad")
            found.update({name: leaf.grad for name, leaf in zip(names, leaves, strict=True)})
    return found


@check_vae_loss_gradients.inputs
def _vae_loss_gradient_inputs() -> dict:
    return _random_inputs(4, 5)


@check_vae_loss_gradients.judge
def _judge_vae_loss_gradients(inputs: dict, found: dict) -> None:
    output, mu, log_var, images = _args(inputs)
    _expect_terms(found.get("binary"), output, mu, log_var, images.round())
    _loss_terms(found.get("graded"))
    expect(found.get("tracked") is True, "both terms must be differentiable tensors")
    want = (output - images) / (output * (1 - output))  # d BCE / d p, summed over pixels
    core.expect_close(
        found.get("output_grad"),
        want,
        "d reconstruction / d output should be (output - images) / (output (1 - output))",
        {"output": output, "image": images},
        rtol=1e-3,
        atol=1e-4,
    )
    core.expect_close(
        found.get("mu_grad"), mu, "d KL / d mu should be mu", {"mu": mu}, rtol=1e-5, atol=1e-5
    )
    core.expect_close(
        found.get("log_var_grad"),
        0.5 * (log_var.exp() - 1),
        "d KL / d log_var should be (exp(log_var) - 1) / 2",
        {"log_var": log_var},
        rtol=1e-5,
        atol=1e-5,
    )


@collect
def check_linear_interpolation_batches(fn: Callable, inputs: dict) -> dict:
    """Any shape and dtype: a batch of images, float64 codes."""
    return {"paths": _paths(fn, inputs["pairs"])}


@check_linear_interpolation_batches.inputs
def _batches_inputs() -> dict:
    return {"pairs": _pairs(((4, 1, 28, 28),)) + _pairs(((3, 5),), torch.float64)}


@check_linear_interpolation_batches.judge
def _judge_batches(inputs: dict, found: dict) -> None:
    _judge_paths(inputs["pairs"], found)
