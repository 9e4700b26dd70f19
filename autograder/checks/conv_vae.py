"""Checks of the convolutional VAE lab (labs/03-conv-vae.md).

`vae_loss` is compared with exact values, the model with shapes and a zero-parameter VAE, the
interpolations with their closed form, and the trained model with a test negative ELBO that the
check computes itself: one posterior sample per image drawn by the check, never z = mu.
One section per graded answer; the module runs past 300 lines because its messages name the
likely mistake (a mean, a flipped sign, swapped arguments) rather than only the wrong number.

One module per lab, in the lab's order: every check of a lab in one place is why it runs past
the ~300 lines a module otherwise keeps to.
"""

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autograder.checks import core, stats
from autograder.checks.core import check, expect, expect_shape, expect_tensor
from autograder.checks.reparam import (
    check_reparameterization,
    check_reparameterization_gradients,
)
from autograder.data import mnist_test_images

__all__ = [
    "HIDDEN_MAX_NELBO",
    "PUBLIC_MAX_NELBO",
    "check_conv_vae",
    "check_conv_vae_sampling",
    "check_latent_linear_interpolation",
    "check_linear_interpolation",
    "check_linear_interpolation_batches",
    "check_reparameterization",
    "check_reparameterization_gradients",
    "check_trained_vae",
    "check_vae_loss",
    "check_vae_loss_gradients",
    "negative_elbo",
]

# Captured before any student code runs (the lab's locked first cell imports this module).
_bce = F.binary_cross_entropy

PIXELS = 28 * 28
NATS_ZERO_VAE = PIXELS * math.log(2)  # 543.427: Bernoulli means 0.5 cost ln 2 per pixel
STEPS = 11  # alpha = 0, 0.1, ..., 1
SAMPLING_IMAGES = 4096  # 4096 images x 16 latent columns = 65 536 standardised draws

# Test negative ELBO per image (nats), one posterior sample per image, as negative_elbo computes.
# Public bar from the issue: the seed's setting (Adam 1e-4, batch 64, 3 epochs) reaches 121.0.
PUBLIC_MAX_NELBO = 125.0
# Hidden bar, calibrated with the lab's budget (latent 16, Adam 1e-3, batch 128, 2 epochs) on the
# 2-core CPU: the notebook (seed 0) 109.25; seeds 1-5 of the same training 108.96, 110.99,
# 109.79, 109.68, 110.54. Mean 109.9, sd 0.75, worst 111.0: the bar leaves 4 nats (over 5 sd)
# above the worst seed. The seed's setting for 3 epochs (120-121) fails it.
HIDDEN_MAX_NELBO = 115.0


# ---------------------------------------------------------------------------------------------
# vae_loss


def _reference_terms(
    output: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, images: torch.Tensor
) -> tuple[float, float]:
    """(reconstruction, KL) in float64: Bernoulli negative log-likelihood and closed-form KL."""
    p, x = output.detach().double(), images.detach().double()
    mu, log_var = mu.detach().double(), log_var.detach().double()
    recon = -(x * p.log() + (1 - x) * (1 - p).log()).sum()
    kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum()
    return recon.item(), kl.item()


def _loss_terms(vae_loss: Callable, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Call vae_loss and check that it returns two one-number tensors."""
    result = vae_loss(*args)
    expect(
        not isinstance(result, torch.Tensor),
        "vae_loss returned one tensor: return the two terms (reconstruction, KL), not their sum",
    )
    expect(
        isinstance(result, tuple | list) and len(result) == 2,
        f"vae_loss should return two terms, (reconstruction, KL), got {type(result).__name__}",
    )
    recon = expect_tensor(result[0], "the reconstruction term")
    kl = expect_tensor(result[1], "the KL term")
    for term, name in ((recon, "reconstruction"), (kl, "KL")):
        expect(
            term.numel() == 1,
            f"the {name} term should be one number summed over the batch, got shape "
            f"{tuple(term.shape)}",
        )
    return recon, kl


def _close(value: float, want: float) -> bool:
    return math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-3)


def _diagnose(value: float, want: float, total: float, sizes: tuple[int, ...], name: str) -> str:
    """A message that names the likely mistake behind a wrong term."""
    hints = [
        (want / n, "it looks like a mean: sum over the batch (reduction='sum')") for n in sizes
    ]
    hints += [
        (-want, "its sign is flipped"),
        (total, "it is the sum of both terms: return them separately"),
    ]
    for other, hint in hints:
        if _close(value, other):
            return f"the {name} term is {value:.4f}, expected {want:.4f}: {hint}"
    return f"the {name} term is {value:.4f}, expected {want:.4f}"


def _expect_terms(vae_loss: Callable, output, mu, log_var, images) -> None:
    recon, kl = _loss_terms(vae_loss, output, mu, log_var, images)
    want_recon, want_kl = _reference_terms(output, mu, log_var, images)
    swapped, _ = _reference_terms(images.clamp(1e-12, 1 - 1e-12), mu, log_var, output)
    got_recon, got_kl = recon.item(), kl.item()
    if _close(got_recon, swapped) and not _close(got_recon, want_recon):
        raise core.CheckFailed(
            "the reconstruction term has input and target swapped: "
            "F.binary_cross_entropy(output, images), the prediction first"
        )
    total, batch = want_recon + want_kl, len(images)
    expect(
        _close(got_recon, want_recon),
        _diagnose(got_recon, want_recon, total, (output.numel(), batch), "reconstruction"),
    )
    expect(_close(got_kl, want_kl), _diagnose(got_kl, want_kl, total, (mu.numel(), batch), "KL"))


def _random_inputs(batch: int, latent: int) -> tuple[torch.Tensor, ...]:
    output = 0.01 + 0.98 * torch.rand(batch, 1, 28, 28)
    images = torch.rand(batch, 1, 28, 28)  # grey levels, as the lab feeds them
    return output, 1.5 * torch.randn(batch, latent), torch.randn(batch, latent), images


@check
def check_vae_loss(vae_loss: Callable) -> None:
    """Exact (reconstruction, KL) sums on fixed inputs, and 784 ln 2 nats for an all-zero VAE."""
    _expect_terms(vae_loss, *_random_inputs(4, 3))
    _expect_terms(vae_loss, *_random_inputs(1, 16))
    # A VAE whose parameters are all zero: Bernoulli means 0.5, mu = 0, log_var = 0.
    images = torch.rand(3, 1, 28, 28)
    half, zeros = torch.full_like(images, 0.5), torch.zeros(3, 16)
    recon, kl = _loss_terms(vae_loss, half, zeros, zeros, images)
    expect(
        _close(recon.item() / 3, NATS_ZERO_VAE),
        f"with all Bernoulli means 0.5 the reconstruction term should be 784 ln 2 = "
        f"{NATS_ZERO_VAE:.3f} nats per image, got {recon.item() / 3:.3f}",
    )
    expect(abs(kl.item()) < 1e-6, f"KL(N(0, I) || N(0, I)) should be 0, got {kl.item():.6f}")


@check
def check_vae_loss_gradients(vae_loss: Callable) -> None:
    """Binary images are handled; the gradients are those of the two sums."""
    output, mu, log_var, images = _random_inputs(4, 5)
    _expect_terms(vae_loss, output, mu, log_var, images.round())
    output, mu, log_var = (t.clone().requires_grad_() for t in (output, mu, log_var))
    recon, kl = _loss_terms(vae_loss, output, mu, log_var, images)
    expect(recon.requires_grad and kl.requires_grad, "both terms must be differentiable tensors")
    (recon + kl).backward()
    p = output.detach()
    want = (p - images) / (p * (1 - p))  # d BCE / d p, summed (not averaged) over pixels
    expect(
        output.grad is not None and core.allclose(output.grad, want, rtol=1e-3, atol=1e-4),
        "d reconstruction / d output should be (output - images) / (output (1 - output))",
    )
    expect(
        mu.grad is not None and core.allclose(mu.grad, mu.detach(), atol=1e-5),
        "d KL / d mu should be mu",
    )
    expect(
        log_var.grad is not None
        and core.allclose(log_var.grad, 0.5 * (log_var.detach().exp() - 1), atol=1e-5),
        "d KL / d log_var should be (exp(log_var) - 1) / 2",
    )


# ---------------------------------------------------------------------------------------------
# the model


def _build(model_class: Callable[..., Any], latent: int, device: Any) -> nn.Module:
    model = model_class(latent_features=latent)
    expect(isinstance(model, nn.Module), "ConvVAE(latent_features=...) should be an nn.Module")
    expect(len(list(model.parameters())) > 0, "ConvVAE has no parameters: define its layers")
    return model.to(device)


def _encode(model: nn.Module, x: torch.Tensor, latent: int) -> tuple[torch.Tensor, ...]:
    """model.encoder(x) as a checked (mu, log_var, z), each of shape (B, latent)."""
    result = model.encoder(x)
    expect(
        isinstance(result, tuple | list) and len(result) == 3,
        "encoder(x) should return (mu, log_var, z)",
    )
    for value, name in zip(result, ("mu", "log_var", "z"), strict=True):
        expect_shape(expect_tensor(value, name), (len(x), latent), f"encoder(x)'s {name}")
    return tuple(result)


def _decode(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """model.decoder(z), checked: (B, 1, 28, 28), finite, within [0, 1]."""
    x_hat = expect_tensor(model.decoder(z), "decoder(z)")
    expect_shape(x_hat, (len(z), 1, 28, 28), "decoder(z)")
    expect(core.isfinite(x_hat).all().item(), "decoder(z) contains NaN or inf")
    expect(
        x_hat.min().item() >= 0 and x_hat.max().item() <= 1,
        "decoder(z) should return Bernoulli means in [0, 1]: end with a sigmoid",
    )
    return x_hat


def _forward(model: nn.Module, x: torch.Tensor, latent: int) -> None:
    result = model(x)
    expect(
        isinstance(result, tuple | list) and len(result) == 3,
        "forward(x) should return (x_hat, mu, log_var)",
    )
    for value, name, shape in zip(
        result,
        ("x_hat", "mu", "log_var"),
        ((len(x), 1, 28, 28), (len(x), latent), (len(x), latent)),
        strict=True,
    ):
        expect_shape(expect_tensor(value, name), shape, f"forward(x)'s {name}")


@check
def check_conv_vae(model_class: Callable[..., Any], device: Any = "cpu") -> None:
    """Shapes of encoder, decoder and forward for latent sizes 2 and 16; decoder range [0, 1]."""
    for latent in (2, 16):
        model = _build(model_class, latent, device)
        expect(
            any(isinstance(m, nn.Conv2d) for m in model.modules()),
            "the encoder should be convolutional (nn.Conv2d layers)",
        )
        x = torch.rand(5, 1, 28, 28, device=device)
        for training in (True, False):
            model.train(training)
            _, _, z = _encode(model, x, latent)
            _decode(model, z)
            _forward(model, x, latent)
        _decode(model, 10 * torch.randn(5, latent, device=device))  # far from the prior's mass


def _expect_posterior_samples(model: nn.Module, images: torch.Tensor, latent: int) -> None:
    """encoder(images) in eval mode returns z ~ N(mu, sigma^2): fresh standard normal noise."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mu, log_var, z1 = _encode(model, images, latent)
            _, _, z2 = _encode(model, images, latent)
    finally:
        model.train(was_training)
    expect(
        not core.equal(z1, z2),
        "encoder(x) returned the same z twice in eval mode: evaluation must use a posterior "
        "sample z = mu + sigma * eps, never z = mu",
    )
    e = (z1.double() - mu.double()) / torch.exp(0.5 * log_var.double())
    # 3 assertions of stats.C = 5.5 standard errors: false failure <= 3 * 3.8e-8 = 1.1e-7
    stats.expect_standard_normal(
        e.reshape(-1, 1), "(z - mu) / exp(log_var / 2) from encoder(x) in eval mode"
    )


@check
def check_conv_vae_sampling(model_class: Callable[..., Any], device: Any = "cpu") -> None:
    """Eval mode still samples z; an all-zero VAE gives x_hat = 0.5, mu = 0, log_var = 0."""
    model = _build(model_class, 16, device)
    images = torch.rand(SAMPLING_IMAGES, 1, 28, 28, device=device)
    _expect_posterior_samples(model, images, 16)  # false failure <= 1.1e-7
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        x_hat, mu, log_var = model(images[:4])
    expect(
        core.allclose(x_hat, torch.full_like(x_hat, 0.5)),
        "with all parameters zero, x_hat should be sigmoid(0) = 0.5 everywhere",
    )
    expect(
        core.equal(mu, torch.zeros_like(mu)) and core.equal(log_var, torch.zeros_like(log_var)),
        "with all parameters zero, mu and log_var should be 0: no activation after the heads",
    )


# ---------------------------------------------------------------------------------------------
# interpolation


def _alphas(shape: tuple[int, ...]) -> torch.Tensor:
    return (torch.arange(STEPS, dtype=torch.float64) / (STEPS - 1)).view(-1, *[1] * len(shape))


def _expect_path(fn: Callable, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x0, x1 = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    path = expect_tensor(fn(x0.clone(), x1.clone()), "linear_interpolation(x0, x1)")
    expect_shape(path, (STEPS, *shape), "linear_interpolation(x0, x1)")
    expect(core.equal(path[0], x0), "the path should start at x0 (alpha = 0 gives x0 exactly)")
    expect(core.allclose(path[-1], x1, atol=1e-6), "the path should end at x1 (alpha = 1)")
    alpha = _alphas(shape)
    want = alpha * x1.double() + (1 - alpha) * x0.double()
    expect(
        core.allclose(path.double(), want, atol=1e-5),
        "point i should be alpha * x1 + (1 - alpha) * x0 with alpha = i / 10",
    )


@check
def check_linear_interpolation(fn: Callable) -> None:
    """11 points alpha x1 + (1 - alpha) x0, alpha = 0, 0.1, ..., 1, for images and latent codes."""
    grid = fn(torch.zeros(1), torch.ones(1))
    grid = expect_tensor(grid, "linear_interpolation(x0, x1)")
    expect_shape(grid, (STEPS, 1), "linear_interpolation of two 1-element tensors")
    expect(
        core.allclose(grid.double().flatten(), _alphas(()).flatten(), atol=1e-6),
        f"alpha should run 0, 0.1, ..., 1 (from x0 to x1), got {grid.flatten().tolist()}",
    )
    for shape in ((1, 28, 28), (16,), (2,)):
        _expect_path(fn, shape, torch.float32)


@check
def check_linear_interpolation_batches(fn: Callable) -> None:
    """Any shape and dtype: a batch of images, float64 codes."""
    _expect_path(fn, (4, 1, 28, 28), torch.float32)
    _expect_path(fn, (3, 5), torch.float64)


class _Decoder(nn.Module):
    """A stand-in VAE with a nonlinear decoder, so that the lab's ConvVAE is not needed here."""

    def __init__(self, latent_features: int):
        super().__init__()
        self.latent_features = latent_features
        self.linear = nn.Linear(latent_features, PIXELS)
        nn.init.normal_(self.linear.weight, std=1.5)  # saturating: the decoder is far from linear

    def decoder(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(z)).view(-1, 1, 28, 28)


@check
def check_latent_linear_interpolation(fn: Callable) -> None:
    """Shape (11, 1, 28, 28); the points decode alpha z1 + (1 - alpha) z0; the ends decode z0, z1."""
    for latent in (2, 16):
        vae = _Decoder(latent)
        z0, z1 = torch.randn(latent), torch.randn(latent)
        out = expect_tensor(fn(z0.clone(), z1.clone(), vae), "latent_linear_interpolation")
        expect_shape(out, (STEPS, 1, 28, 28), "latent_linear_interpolation(z0, z1, vae)")
        out = out.detach()
        with torch.no_grad():
            ends = vae.decoder(torch.stack([z0, z1]))
            alpha = _alphas((latent,)).float()
            want = vae.decoder(alpha * z1 + (1 - alpha) * z0)
        expect(core.allclose(out[0], ends[0], atol=1e-5), "the first image should decode z0")
        expect(core.allclose(out[-1], ends[1], atol=1e-5), "the last image should decode z1")
        expect(
            core.allclose(out, want, atol=1e-5),
            "image i should decode alpha * z1 + (1 - alpha) * z0 with alpha = i / 10: "
            "interpolate the codes, then decode (not the decoded images)",
        )


# ---------------------------------------------------------------------------------------------
# the trained model


def _mnist_test_images() -> torch.Tensor:
    """The MNIST test set as the notebook loads it: (10000, 1, 28, 28) in [0, 1]."""
    return mnist_test_images().unsqueeze(1)


def negative_elbo(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> float:
    """Mean negative ELBO per image, one posterior sample per image drawn here (never z = mu)."""
    total = torch.zeros((), dtype=torch.float64)
    for x in images.split(batch_size):
        result = model.encoder(x)
        mu, log_var = result[0], result[1]
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        recon = _bce(_decode(model, z), x, reduction="sum")
        kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum()
        total += (recon.double() + kl.double()).cpu()
    return total.item() / len(images)


def _latent_size(model: nn.Module, x: torch.Tensor) -> int:
    """The number of latent features, read off encoder(x)'s mu."""
    with torch.no_grad():
        result = model.encoder(x)
    expect(
        isinstance(result, tuple | list) and len(result) == 3,
        "encoder(x) should return (mu, log_var, z)",
    )
    mu = expect_tensor(result[0], "mu")
    expect(mu.dim() == 2 and len(mu) == len(x), "mu should have shape (B, latent_features)")
    return mu.shape[1]


@check
def check_trained_vae(
    model: nn.Module, images: torch.Tensor, max_nelbo: float = PUBLIC_MAX_NELBO
) -> None:
    """The MNIST test set's negative ELBO per image, computed here, is at most `max_nelbo`.

    The check draws its own posterior sample per image from the encoder's (mu, log_var) and
    decodes it: what the model's encoder samples, or whether it samples at all in eval mode, is
    graded by check_conv_vae_sampling, not here.
    """
    expect(isinstance(model, nn.Module), "pass the trained ConvVAE")
    core.expect_test_set(
        images, _mnist_test_images(), "test_x", "the whole MNIST test set as the notebook loads it"
    )
    images = images.to(core.device_of(model))
    _latent_size(model, images[:2])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            nelbo = negative_elbo(model, images)
    finally:
        model.train(was_training)
    expect(math.isfinite(nelbo), "the test negative ELBO is not finite")
    expect(
        nelbo <= max_nelbo,
        f"test negative ELBO {nelbo:.2f} nats per image, expected at most {max_nelbo}: "
        "check the model and the loss, or train longer",
    )
    print(f"test negative ELBO: {nelbo:.2f} nats per image (one posterior sample per image)")
