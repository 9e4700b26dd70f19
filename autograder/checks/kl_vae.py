"""Checks of the lab 02-kl-vae: Gaussian KL divergences, an MLP VAE, KL annealing, interpolation.

The test cells call these with the student's functions, classes and trained model. Exact checks
compare with float64 references computed here (pristine `core.allclose`); the reparameterization
checks are the shared ones of `reparam`; the trained model is scored on the real MNIST test set
by the check itself, with its own sampling, never by a number the student's code reports.
One module for the lab's nine automatic checks, hence longer than the usual 300 lines.

One module per lab, in the lab's order: every check of a lab in one place is why it runs past
the ~300 lines a module otherwise keeps to.
"""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from autograder.checks import core
from autograder.checks.core import EXACT_KL, check, device_of, expect, expect_shape, expect_tensor
from autograder.checks.reparam import (  # noqa: F401  (the lab calls them as checks.*)
    check_reparameterization,
    check_reparameterization_gradients,
)

PIXELS, LATENT = 784, 8

# The trained, annealed VAE on the 10 000 test images: the lab's loss per image (squared error
# of one sampled code plus the KL, i.e. the negative ELBO of its Gaussian decoder N(x_hat, I/2)
# less the constant 392 ln(pi)) and the mean KL. Reference solution, lab schedule (warm-up 1,
# annealing 4, 8 epochs), training seeds 1..5 on CPU: loss 31.18, 31.17, 31.00, 31.30, 30.99
# (mean 31.13, sd 0.13); KL 9.19, 9.52, 9.45, 9.25, 10.14. For comparison: weight 1 from the
# start for 8 epochs 31.2-32.9 (KL 6.7-8.3); the lab's 2-epoch runs 38.7 (weight 1) and ~137
# (weight 1/784, KL ~114); decoding the average image with a collapsed posterior 52.7 (KL 0).
MAX_LOSS = 36.0  # public: 4.7 nats (36 sd) above the worst reference seed
HIDDEN_MAX_LOSS = 32.5  # hidden: 1.2 nats (9 sd) above the worst reference seed
MIN_KL = 5.0  # a collapsed posterior has KL ~0-3 nats; the reference 9.2-10.1
# The check draws one z per test image, seeded by its name: over 20 other sampling seeds the
# loss of one reference model varied with sd 0.022 (31.09 to 31.17), negligible against the
# margins above, so the thresholds bound the spread of training, not of the check.


def _allclose(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> bool:
    """Pristine allclose in float64 on the CPU, shapes first (no silent broadcasting)."""
    if tuple(got.shape) != tuple(want.shape):
        return False
    return core.allclose(got.detach().double().cpu(), want.detach().double().cpu(), rtol, atol)


# ---------------------------------------------------------------- kl_normal


def _random_normals(n: int) -> tuple[torch.Tensor, ...]:
    """float64 (mu_q, sigma_q, mu_p, sigma_p) of n random pairs of univariate normals."""
    mu_q, mu_p = 2 * torch.randn(n, dtype=torch.float64), 2 * torch.randn(n, dtype=torch.float64)
    sigma_q = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-2, 2))
    sigma_p = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-2, 2))
    return mu_q, sigma_q, mu_p, sigma_p


def _call_kl_normal(kl_normal: Callable, *args: torch.Tensor) -> torch.Tensor:
    out = expect_tensor(kl_normal(*args), "kl_normal(mu_q, sigma_q, mu_p, sigma_p)")
    expect(core.isfinite(out).all().item(), "kl_normal returned NaN or inf for valid inputs")
    return out


@check
def check_kl_normal(kl_normal: Callable) -> None:
    """Elementwise KL(q || p) of univariate normals agrees with torch.distributions in float64."""
    mu_q, sigma_q, mu_p, sigma_p = _random_normals(1000)
    got = _call_kl_normal(kl_normal, mu_q, sigma_q, mu_p, sigma_p)
    expect_shape(got, mu_q.shape, "kl_normal of 1000 pairs (elementwise, nothing summed)")
    want = kl_divergence(Normal(mu_q, sigma_q), Normal(mu_p, sigma_p))
    swapped = kl_divergence(Normal(mu_p, sigma_p), Normal(mu_q, sigma_q))
    expect(
        not _allclose(got, swapped, 1e-6, 1e-6),
        "kl_normal computes KL(p || q): the expectation is over q, the first distribution",
    )
    expect(
        _allclose(got, want, 1e-6, 1e-6),
        "kl_normal disagrees with log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) "
        "/ (2 sigma_p^2) - 1/2",
    )
    same = _call_kl_normal(kl_normal, mu_q, sigma_q, mu_q.clone(), sigma_q.clone())
    expect(_allclose(same, torch.zeros_like(mu_q), 0, 1e-9), "KL(q || q) should be 0")


@check
def check_kl_normal_properties(kl_normal: Callable) -> None:
    """Non-negative, zero only for equal distributions, broadcasts a scalar p."""
    mu_q, sigma_q, mu_p, sigma_p = _random_normals(10_000)
    got = _call_kl_normal(kl_normal, mu_q, sigma_q, mu_p, sigma_p)
    expect(bool((got >= -1e-12).all()), "kl_normal returned a negative value: KL is never < 0")
    zero, one = torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)
    broadcast = _call_kl_normal(kl_normal, mu_q, sigma_q, zero, one)
    want = kl_divergence(Normal(mu_q, sigma_q), Normal(zero, one))
    expect(
        _allclose(broadcast, want, 1e-6, 1e-6),
        "kl_normal(mu_q, sigma_q, 0, 1) with 0-dim tensors for p should broadcast elementwise",
    )
    moved = _call_kl_normal(kl_normal, mu_q, sigma_q, mu_q + 0.1, sigma_q)
    expect(bool((moved > 0).all()), "KL of two different normals should be > 0")


# ---------------------------------------------------------------- KLDivergence


def _kl_reference(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Sum over latent dimensions, mean over the batch, in float64 by torch.distributions."""
    q = Normal(mu.detach().double(), torch.exp(0.5 * log_var.detach().double()))
    return kl_divergence(q, Normal(0.0, 1.0)).sum(-1).mean()


def _expect_scalar(found: dict, key: str, what: str) -> torch.Tensor:
    """The student's KL under `key`: a 0-dim tensor (sum over dimensions, mean over the batch)."""
    out = core.answer_tensor(found, key, what)
    expect(
        out.dim() == 0,
        f"{what} should be a scalar (sum over dimensions, mean over the batch), got shape "
        f"{tuple(out.shape)}",
    )
    return out


# a batch of 3 rows and 4 dimensions: a mean over dimensions gives 1/4 of the answer and a sum
# over the batch 3 times it, so each mistake is told apart by the message
BATCH_MU = [[0.0, 2.0, -1.0, 0.5], [1.0, 0.0, 0.0, -2.0], [0.3, -0.7, 1.5, 0.0]]
BATCH_LOG_VAR = [[2.0, 0.0, -1.0, 0.5], [math.log(0.25), 1.0, -2.0, 0.0], [0.0] * 4]


@core.collect
def check_kl_divergence(kl: Callable, inputs: dict) -> dict:
    """Exact values of KL(N(mu, sigma^2) || N(0, 1)); sum over dimensions, mean over the batch."""
    exact = [kl(torch.tensor([[mu]]), torch.tensor([[lv]])) for mu, lv, _ in EXACT_KL]
    return {"exact": exact, "batch": kl(inputs["mu"], inputs["log_var"])}


@check_kl_divergence.inputs
def _kl_divergence_inputs() -> dict:
    return {"mu": torch.tensor(BATCH_MU), "log_var": torch.tensor(BATCH_LOG_VAR)}


@check_kl_divergence.judge
def _judge_kl_divergence(inputs: dict, found: dict) -> None:
    exact = found.get("exact")
    expect(isinstance(exact, list) and len(exact) == len(EXACT_KL), "the KL was not computed")
    for index, (mu, log_var, want) in enumerate(EXACT_KL):
        got = _expect_scalar({"v": exact[index]}, "v", "KLDivergence()(mu, log_var)")
        expect(
            abs(got.item() - want) <= 1e-5,
            f"KL for mu = {mu}, log_var = {log_var:.4f} should be {want}, got {got.item():.6f}",
        )
    got = _expect_scalar(found, "batch", "KLDivergence()(mu, log_var)").item()
    want = _kl_reference(inputs["mu"], inputs["log_var"]).item()
    hints = {
        want / 4: "averaged over latent dimensions: sum them",
        3 * want: "summed over the batch: average it",
    }
    for wrong, hint in hints.items():
        expect(abs(got - wrong) > 1e-4, f"KL of a (3, 4) batch is {got:.5f}: {hint}")
    expect(abs(got - want) <= 1e-4, f"KL of a (3, 4) batch should be {want:.5f}, got {got:.5f}")


EXTREME_LOG_VAR = [[-30.0, 30.0, 0.0, -10.0]]


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
    expect(
        _allclose(got, _kl_reference(mu, log_var), 1e-9, 1e-9),
        "KL of a random float64 batch disagrees with torch.distributions.kl_divergence",
    )
    expect(found.get("tracked") is True, "the KL is not connected to mu and log_var: do not detach them")
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


# ---------------------------------------------------------------- the VAE's parts


class _ProbeEncoder(nn.Module):
    """A linear encoder returning (mu, log_var), for checking the VAE's methods."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(PIXELS, 2 * LATENT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.linear(x).chunk(2, dim=-1)
        return mu, log_var


def _tuple_of_tensors(value: Any, n: int, what: str) -> tuple[torch.Tensor, ...]:
    expect(
        isinstance(value, tuple | list) and len(value) == n,
        f"{what} should return a tuple of {n} tensors, got {type(value).__name__}",
    )
    return tuple(expect_tensor(v, f"{what}[{i}]") for i, v in enumerate(value))


def _check_forward(vae: nn.Module, x: torch.Tensor) -> None:
    """forward(x) -> (decoder(reparameterize(mu, log_var)), mu, log_var), mu, log_var exact."""
    want_mu, want_log_var = vae.encoder(x)
    x_hat, mu, log_var = _tuple_of_tensors(vae(x), 3, "forward(x)")
    expect_shape(x_hat, x.shape, "x_hat")
    expect(_allclose(mu, want_mu, 1e-6, 1e-6), "forward(x)[1] should be the encoder's mu")
    expect(
        _allclose(log_var, want_log_var, 1e-6, 1e-6),
        "forward(x)[2] should be the encoder's log_var",
    )
    expect(x_hat.requires_grad, "forward(x) should keep the graph: training needs gradients")
    # a stand-in sampler tells whether forward samples z through self.reparameterize
    vae.reparameterize = lambda mu, log_var: mu + log_var
    try:
        x_hat, _, _ = _tuple_of_tensors(vae(x), 3, "forward(x)")
    finally:
        del vae.reparameterize
    expect(
        _allclose(x_hat, vae.decoder(want_mu + want_log_var), 1e-5, 1e-6),
        "forward(x) should decode z = self.reparameterize(mu, log_var)",
    )


@check
def check_vae_methods(vae_class: type, device: torch.device) -> None:
    """forward, encode (mu, no gradient tracking) and reconstruct (decoder, no tracking)."""
    device = torch.device(device)
    encoder, decoder = _ProbeEncoder(), nn.Sequential(nn.Linear(LATENT, PIXELS), nn.Sigmoid())
    vae = vae_class(encoder, decoder, device)
    x = torch.rand(5, PIXELS, device=device)
    _check_forward(vae, x)
    mu = expect_tensor(vae.encode(x), "encode(x)")
    expect_shape(mu, (5, LATENT), "encode(x)")
    expect(mu.device == x.device, f"encode(x) should stay on {x.device}, got {mu.device}")
    expect(_allclose(mu, vae.encoder(x)[0], 1e-6, 1e-6), "encode(x) should return the mean mu")
    expect(not mu.requires_grad, "encode(x) tracks gradients: compute it under torch.no_grad()")
    z = torch.randn(5, LATENT, device=device)
    x_hat = expect_tensor(vae.reconstruct(z), "reconstruct(z)")
    expect_shape(x_hat, (5, PIXELS), "reconstruct(z)")
    expect(_allclose(x_hat, vae.decoder(z), 1e-6, 1e-6), "reconstruct(z) should be decoder(z)")
    expect(
        not x_hat.requires_grad, "reconstruct(z) tracks gradients: compute it under torch.no_grad()"
    )


ACTIVATIONS = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softplus,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.ReLU6, nn.Softsign, nn.Hardsigmoid, nn.Hardswish,
)  # fmt: skip


def _producers(module: nn.Module, x: torch.Tensor) -> tuple[Any, dict[int, list[nn.Module]]]:
    """module(x), and for each output tensor's id the submodules that returned it."""
    made: dict[int, list[nn.Module]] = {}

    def record(sub: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            made.setdefault(id(output), []).append(sub)

    hooks = [sub.register_forward_hook(record) for sub in module.modules()]
    try:
        out = module(x)
    finally:
        for hook in hooks:
            hook.remove()
    return out, made


@check
def check_encoder_decoder(encoder: nn.Module, decoder: nn.Module) -> None:
    """Encoder: (mu, log_var) from unconstrained heads; decoder: pixels in [0, 1]."""
    device = device_of(encoder)
    x = torch.rand(32, PIXELS, device=device)
    out, made = _producers(encoder, x)
    mu, log_var = _tuple_of_tensors(out, 2, "encoder(x)")
    for name, head in (("mu", mu), ("log_var", log_var)):
        expect_shape(head, (32, LATENT), f"encoder(x) {name}")
        squash = [type(m).__name__ for m in made.get(id(head), []) if isinstance(m, ACTIVATIONS)]
        expect(
            not squash,
            f"the {name} head ends in {squash[0] if squash else ''}: mu and log_var take any "
            f"real value, so end each head with a Linear layer",
        )
    expect(not _allclose(mu, log_var, 0, 0), "mu and log_var should come from separate heads")
    x_hat = expect_tensor(decoder(torch.randn(32, LATENT, device=device)), "decoder(z)")
    expect_shape(x_hat, (32, PIXELS), "decoder(z)")
    expect(
        bool(((x_hat >= 0) & (x_hat <= 1)).all()), "decoder(z) should be in [0, 1]: end in Sigmoid"
    )


# ---------------------------------------------------------------- annealing, interpolation


def _weights(manager_class: type, warm_up: int, annealing: int, epochs: int) -> list[float]:
    manager = manager_class(warm_up_rounds=warm_up, annealing_rounds=annealing)
    weights = [manager(epoch) for epoch in range(epochs)]
    for w in weights:
        expect(
            isinstance(w, int | float) or (isinstance(w, torch.Tensor) and w.numel() == 1),
            f"KLWeightManager(...)(epoch) should return a number, got {type(w).__name__}",
        )
    return [float(w) for w in weights]


def _annealing_reference(warm_up: int, annealing: int, epoch: int) -> float:
    if epoch < warm_up:
        return 0.0
    return min(1.0, (epoch - warm_up) / annealing) if annealing else 1.0


@check
def check_kl_weight_manager(manager_class: type, warm_up: int = 5, annealing: int = 10) -> None:
    """Exact weights at epochs 0..20: 0 in warm-up, linear to 1 over the annealing rounds, 1."""
    got = _weights(manager_class, warm_up, annealing, 21)
    want = [_annealing_reference(warm_up, annealing, e) for e in range(21)]
    for epoch, (g, w) in enumerate(zip(got, want, strict=True)):
        expect(
            abs(g - w) <= 1e-9,
            f"KLWeightManager(warm_up_rounds={warm_up}, annealing_rounds={annealing})({epoch}) "
            f"should be {w:g}, got {g:g} (epochs 0..20 gave {[round(v, 3) for v in got]})",
        )


@check
def check_interpolate_linear(interpolate_linear: Callable, device: torch.device) -> None:
    """Shape (steps, *x.shape), endpoints x and y, equal steps, on x's device."""
    device = torch.device(device)
    for shape, steps in (((1, LATENT), 10), ((PIXELS,), 7), ((2, 3), 2)):
        x, y = torch.randn(shape, device=device), torch.randn(shape, device=device)
        path = expect_tensor(interpolate_linear(x, y, steps), "interpolate_linear(x, y, steps)")
        expect_shape(path, (steps, *shape), f"interpolate_linear(x, y, {steps}) for x of {shape}")
        expect(path.device == x.device, f"the path should stay on {x.device}, got {path.device}")
        expect(_allclose(path[0], x, 0, 1e-6), "the path should start at x")
        expect(_allclose(path[-1], y, 0, 1e-6), "the path should end at y")
        step = (y - x) / (steps - 1)
        expect(
            _allclose(path.diff(dim=0), step.expand(steps - 1, *shape), 0, 1e-5),
            "the points should be equally spaced: x + t (y - x) for t = 0, 1/(steps-1), ..., 1",
        )


# ---------------------------------------------------------------- the trained model


def _mnist_test_images(device: torch.device) -> torch.Tensor:
    """The 10 000 MNIST test images, flattened, in [0, 1], read by the check itself."""
    from autograder.data import mnist_test_images

    return mnist_test_images().flatten(1).to(device)


@torch.no_grad()
def vae_scores(vae: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """(loss, KL) per image: sum of squared errors of one decoded z ~ q(z|x), plus the KL."""
    squared_errors, kls = [], []
    for batch in x.split(batch_size):
        mu, log_var = vae.encoder(batch)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        squared_errors.append((vae.decoder(z) - batch).pow(2).sum(1).double())
        kls.append((0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)).sum(1).double())
    rec, kl = torch.cat(squared_errors).mean().item(), torch.cat(kls).mean().item()
    return rec + kl, kl


@check
def check_trained_vae(
    vae: nn.Module, test_x: torch.Tensor, max_loss: float = MAX_LOSS, min_kl: float = MIN_KL
) -> None:
    """On the test set: loss (squared error + KL) per image below `max_loss`, KL above `min_kl`."""
    device = device_of(vae)
    want_x = _mnist_test_images(device)
    core.expect_test_set(
        test_x, want_x, "test_x", "the 10 000 MNIST test images as a (10000, 784) tensor in [0, 1]"
    )
    loss, kl = vae_scores(vae, want_x)
    print(f"test set: loss {loss:.2f} per image (threshold {max_loss}), KL {kl:.2f} nats")
    core.expect_test_scores(loss, kl, max_loss, min_kl)
