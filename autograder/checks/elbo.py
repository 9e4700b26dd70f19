"""Checks of the lab 04-elbo-estimators: the latent layer, the Monte-Carlo and the analytic latent
losses, the reshaping layer, the VAE, the conv architecture, the widget callbacks, trained models.

Exact checks compare with float64 references computed here (pristine `core.allclose`). The
statistical check of the Monte-Carlo loss bounds its false-failure probability as `stats` does
(C = 5.5 standard errors); the samplers inside the VAE are checked by the shared checks of
`reparam`, through the adapters `forward_sampler` and `similar_sampler`. The widget
callbacks are checked on a tiny model of this module, so a wrong VAE does not fail them too.
The trained models are scored on the real MNIST test set by the check itself, with its own
sampling, never by a number the student's code reports.

One module per lab, in the lab's order: every check of a lab in one place is why it runs past
the ~300 lines a module otherwise keeps to.
"""

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from autograder.checks import core, stats
from autograder.checks.core import EXACT_KL, check, device_of, expect, expect_shape, expect_tensor
from autograder.checks.reparam import (  # noqa: F401  (the lab calls them as checks.*)
    LOG_VAR,
    MU,
    check_reparameterization,
    check_reparameterization_gradients,
)

ROWS = 100_000  # rows of the statistical checks (4 latent columns, MU and LOG_VAR of reparam)

# The lab's two trained VAEs (Gaussian decoder N(x_hat, I) on 32x32 padded MNIST, latent 16,
# 2500 Adam steps of 32 images, lr 1e-3) scored by `negative_elbo` on the 10 000 test images:
# 1/2 ||x - x_hat||^2 of one sampled code plus the analytic KL, in nats per image, i.e. the
# negative ELBO less the constant 512 ln(2 pi). A collapsed posterior (the decoder draws the
# average training image, KL 0) scores 26.45. Reference solution on CPU with one thread, as
# the lab sets: the lab's seeds (weights 1, batches 0), then training seeds 2..6 (weights and
# batches):
#   loss='kl': 20.27, 20.64, 20.64, 20.40, 20.93, 20.36 (mean 20.54, sd 0.24); KL 4.26-4.94
#   loss='mc': 23.25, 22.81, 21.79, 24.21, 22.26, 23.15 (mean 22.91, sd 0.84); KL 1.44-3.23
# (Two threads give other rounding and so other runs: the lab's seeds then gave 20.28 and 23.76.)
# The Monte-Carlo runs leave the collapsed plateau later and at a more random time, hence their
# spread; their thresholds only ask that the model has left it.
PUBLIC_MAX_LOSS = {
    "kl": 23.0,  # 2.1 nats (9 sd) above the worst reference seed
    "mc": 25.8,  # 1.6 nats (3.4 sd above the mean) above the worst seed; collapsed: 26.45
}
HIDDEN_MAX_LOSS = {
    "kl": 22.0,  # 1.1 nats (4.5 sd) above the worst reference seed
    "mc": 25.5,  # 1.3 nats above the worst seed, 3.1 sd above the mean (normal tail ~1e-3)
}
MIN_KL = {"kl": 2.0, "mc": 0.5}  # a collapsed posterior has KL ~0


def _allclose(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> bool:
    """Pristine allclose in float64 on the CPU, shapes first (no silent broadcasting)."""
    if tuple(got.shape) != tuple(want.shape):
        return False
    return core.allclose(got.detach().double().cpu(), want.detach().double().cpu(), rtol, atol)


def _pair(value: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two tensors of a (a, b) result, or a failure saying what came back instead."""
    expect(
        isinstance(value, tuple | list) and len(value) == 2,
        f"{what} should return a pair (a tuple of two tensors), got {type(value).__name__}",
    )
    return expect_tensor(value[0], f"{what}[0]"), expect_tensor(value[1], f"{what}[1]")


def _scalar(value: Any, what: str) -> torch.Tensor:
    """A 0-dimensional tensor: a loss averaged over the batch."""
    value = expect_tensor(value, what)
    expect(
        value.dim() == 0,
        f"{what} should be one number (a 0-dim tensor, averaged over the batch), "
        f"got shape {tuple(value.shape)}",
    )
    return value


def _columns(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, scale), each (rows, 4): the columns of reparam, three with log sigma^2 != 0."""
    mean = torch.tensor(MU).repeat(rows, 1)
    scale = torch.exp(0.5 * torch.tensor(LOG_VAR)).repeat(rows, 1)
    return mean, scale


# ---------------------------------------------------------------- the latent layer


@check
def check_latent_layer(layer_class: type) -> None:
    """LatentLayer(i, l)(h) -> (mean, scale): two linear heads, scale = exp(log_var_head / 2)."""
    layer = layer_class(6, 3)
    heads = [m for m in layer.modules() if isinstance(m, nn.Linear)]
    expect(
        len(heads) == 2 and all((h.in_features, h.out_features) == (6, 3) for h in heads),
        "LatentLayer(6, 3) should hold two nn.Linear(6, 3) heads, one for the mean and one for "
        f"the log-variance; found {[(h.in_features, h.out_features) for h in heads]}",
    )
    h = 3 * torch.randn(5, 6)  # large inputs: head outputs far from 0, where exp(v) != exp(v/2)
    mean, scale = _pair(layer(h), "LatentLayer(6, 3)(h)")
    expect_shape(mean, (5, 3), "mean")
    expect_shape(scale, (5, 3), "scale")
    expect(bool((scale > 0).all()), "scale should be positive: compute it as exp(log_var / 2)")
    with torch.no_grad():
        a, b = heads[0](h), heads[1](h)
    for m, v in ((a, b), (b, a)):
        if _allclose(mean, m, 1e-5, 1e-6):
            expect(
                not _allclose(scale, v.exp(), 1e-5, 1e-6),
                "scale = exp(log_var) is the variance; the scale is exp(log_var / 2)",
            )
            expect(
                _allclose(scale, torch.exp(0.5 * v), 1e-5, 1e-6),
                "scale should be exp(log_var / 2), with log_var the output of the second head",
            )
            expect(scale.requires_grad, "scale is detached: training cannot reach its head")
            return
    expect(False, "mean should be the output of one linear head, unchanged (no activation)")


# ---------------------------------------------------------------- the two latent losses


def _mc_reference(z: torch.Tensor, eps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    z, eps, scale = z.double(), eps.double(), scale.double()
    return (z.pow(2) / 2 - eps.pow(2) / 2 - scale.log()).sum(1).mean()


def _kl_reference(mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    mean, var = mean.double(), scale.double().pow(2)
    return (0.5 * (var + mean.pow(2) - var.log() - 1)).sum(1).mean()


def _fixed_latents() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z, eps, scale) of a batch of 2 with 3 latent dimensions, z = mean + scale * eps."""
    mean = torch.tensor([[0.2, -1.0, 0.5], [1.0, 0.0, -2.0]])
    eps = torch.tensor([[1.0, -0.5, 2.0], [0.3, -1.2, 0.0]])
    scale = torch.tensor([[0.5, 2.0, 1.0], [1.5, 0.25, 3.0]])
    return mean + scale * eps, eps, scale


def _mc_mistake(got: float, z: torch.Tensor, eps: torch.Tensor, scale: torch.Tensor) -> str:
    """A hint naming a known mistake that gives `got` on these inputs, or ''."""
    z, eps, log_s = z.double(), eps.double(), scale.double().log()
    mistakes = {
        "the -log(scale) term is missing": (z.pow(2) / 2 - eps.pow(2) / 2).sum(1).mean(),
        "the sign of eps^2 / 2 is flipped": (z.pow(2) / 2 + eps.pow(2) / 2 - log_s).sum(1).mean(),
        "it is summed over the batch, not averaged": (z.pow(2) / 2 - eps.pow(2) / 2 - log_s).sum(),
        "it uses log(scale^2) where log(scale) belongs": (z.pow(2) / 2 - eps.pow(2) / 2 - 2 * log_s)
        .sum(1)
        .mean(),
    }
    for hint, value in mistakes.items():
        if abs(got - value.item()) < 1e-4:
            return f" ({hint})"
    return ""


@check
def check_mc_latent_loss(mc_latent_loss: Callable, rows: int = ROWS) -> None:
    """Exact value; zero for every draw when q = p; unbiased estimate of the KL."""
    z, eps, scale = _fixed_latents()
    got = _scalar(mc_latent_loss(z, eps, scale), "mc_latent_loss(z, eps, scale)").item()
    want = _mc_reference(z, eps, scale).item()
    expect(
        abs(got - want) <= 1e-5 * max(1.0, abs(want)),
        f"mc_latent_loss on a fixed batch gave {got:.5f}, expected {want:.5f}: the batch mean of "
        f"sum_j (z_j^2 / 2 - eps_j^2 / 2 - log scale_j){_mc_mistake(got, z, eps, scale)}",
    )
    for _ in range(3):  # q = p = N(0, I): z = eps and scale = 1, so each estimate is exactly 0
        eps = torch.randn(64, 4)
        value = _scalar(mc_latent_loss(eps.clone(), eps, torch.ones(64, 4)), "mc_latent_loss")
        expect(
            abs(value.item()) <= 1e-6,
            f"when q equals the prior (mean 0, scale 1, z = eps) every estimate should be 0, "
            f"got {value.item():.6f}",
        )
    mean, scale = _columns(rows)
    eps = torch.randn_like(mean)
    value = _scalar(mc_latent_loss(mean + scale * eps, eps, scale), "mc_latent_loss").item()
    kl = _kl_reference(mean[:1], scale[:1]).item()
    # One row's estimate sum_j (mu_j^2/2 + mu_j s_j eps_j + (s_j^2 - 1) eps_j^2 / 2 - log s_j)
    # has mean KL and variance sum_j (mu_j^2 s_j^2 + (s_j^2 - 1)^2 / 2); the batch mean of `rows`
    # iid rows has sd sqrt(var / rows). The chi-square part is skewed (skew of the mean
    # ~ sqrt(8 / rows) < 0.01), which moves the 5.5-sd tail by a factor < 1.3: false failure
    # < 1.3 * 3.8e-8 = 5e-8, the only statistical assertion of this check.
    m, s2 = torch.tensor(MU).double(), torch.tensor(LOG_VAR).double().exp()
    sd = math.sqrt((m.pow(2) * s2 + (s2 - 1).pow(2) / 2).sum().item() / rows)
    expect(
        abs(value - kl) <= stats.C * sd,
        f"over {rows} draws mc_latent_loss averages {value:.4f}, but its expectation is the KL "
        f"{kl:.4f} (allowed error {stats.C * sd:.4f}): it is not an unbiased estimate",
    )


@check
def check_mc_latent_loss_gradients(mc_latent_loss: Callable) -> None:
    """d/dz = z / B and d/dscale = -1 / (scale B), exactly (B the batch size)."""
    z, eps, scale = (t.clone().requires_grad_(True) for t in _fixed_latents())
    _scalar(mc_latent_loss(z, eps, scale), "mc_latent_loss").backward()
    batch = z.shape[0]
    expect(
        z.grad is not None and _allclose(z.grad, z.detach() / batch, 1e-5, 1e-6),
        "d loss / d z should be z / batch_size",
    )
    expect(
        scale.grad is not None and _allclose(scale.grad, -1 / (scale.detach() * batch), 1e-5, 1e-6),
        "d loss / d scale should be -1 / (scale * batch_size): the -log(scale) term",
    )


@check
def check_kl_latent_loss(kl_latent_loss: Callable) -> None:
    """Exact values, batch mean of sums over dimensions, agreement with torch.distributions."""
    for mu, log_var, want in EXACT_KL:
        mean, scale = torch.tensor([[mu]]), torch.exp(0.5 * torch.tensor([[log_var]]))
        got = _scalar(kl_latent_loss(mean, scale), "kl_latent_loss(mean, scale)").item()
        expect(
            abs(got - want) <= 1e-5,
            f"KL(N({mu:g}, {math.exp(log_var):g}) || N(0, 1)) should be {want:.6f}, got {got:.6f}",
        )
    mean = torch.tensor([[p[0] for p in EXACT_KL]])
    scale = torch.exp(0.5 * torch.tensor([[p[1] for p in EXACT_KL]]))
    total = sum(p[2] for p in EXACT_KL)
    got = kl_latent_loss(mean, scale).item()
    expect(
        abs(got - total) <= 1e-5,
        f"one row of 5 dimensions: want the sum {total:.6f}, got {got:.6f}",
    )
    got = kl_latent_loss(mean.T.contiguous(), scale.T.contiguous()).item()
    expect(
        abs(got - total / 5) <= 1e-5,
        f"5 rows of 1 dimension: want the mean over the batch {total / 5:.6f}, got {got:.6f}",
    )
    mean, scale = 2 * torch.randn(7, 4), torch.exp(torch.empty(7, 4).uniform_(-1.5, 1.5))
    want = kl_divergence(Normal(mean.double(), scale.double()), Normal(0.0, 1.0)).sum(1).mean()
    got = _scalar(kl_latent_loss(mean, scale), "kl_latent_loss")
    expect(
        _allclose(got, want, 1e-5, 1e-6),
        f"on a random batch: {got.item():.6f}, torch.distributions.kl_divergence gives {want:.6f}",
    )


@check
def check_kl_latent_loss_gradients(kl_latent_loss: Callable) -> None:
    """d/dmean = mean / B and d/dscale = (scale - 1 / scale) / B, exactly."""
    mean = (2 * torch.randn(6, 3)).requires_grad_(True)
    scale = torch.exp(torch.empty(6, 3).uniform_(-1, 1)).requires_grad_(True)
    _scalar(kl_latent_loss(mean, scale), "kl_latent_loss").backward()
    expect(
        mean.grad is not None and _allclose(mean.grad, mean.detach() / 6, 1e-5, 1e-6),
        "d KL / d mean should be mean / batch_size",
    )
    s = scale.detach()
    expect(
        scale.grad is not None and _allclose(scale.grad, (s - 1 / s) / 6, 1e-5, 1e-6),
        "d KL / d scale should be (scale - 1 / scale) / batch_size",
    )


# ---------------------------------------------------------------- the reshaping layer


def _expect_value_error(layer: nn.Module, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """layer(x) raises ValueError: the rows of x do not hold prod(shape) numbers."""
    what = f"ReshapeLayer({shape}) on a batch of shape {tuple(x.shape)}"
    try:
        out = layer(x)
    except ValueError as exc:
        expect(bool(str(exc).strip()), f"{what} raised a ValueError without a message")
        return
    except Exception as exc:  # noqa: BLE001  (any other error is the wrong kind)
        expect(False, f"{what} raised {type(exc).__name__}; raise a ValueError naming both shapes")
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    expect(False, f"{what} returned {got}: it should raise a ValueError naming both shapes")


@check
def check_reshape_layer(layer_class: type) -> None:
    """(N, a*b*c) -> (N, a, b, c) as a view of the same numbers; ValueError otherwise."""
    for shape, batch in (((4, 2, 3), 5), ((4, 2, 3), 1), ((64, 4, 4), 3)):
        layer = layer_class(shape)
        x = torch.randn(batch, math.prod(shape))
        out = expect_tensor(layer(x), f"ReshapeLayer({shape})(x)")
        expect_shape(
            out, (batch, *shape), f"ReshapeLayer({shape}) of a ({batch}, {x.shape[1]}) batch"
        )
        expect(core.equal(out, x.reshape(batch, *shape)), "the numbers should keep their order")
    layer = layer_class((4, 2, 3))
    _expect_value_error(layer, torch.randn(5, 25), (4, 2, 3))
    # rows of 12 or 48 numbers: x.view(-1, 4, 2, 3) would silently change the batch size
    _expect_value_error(layer, torch.randn(6, 12), (4, 2, 3))
    _expect_value_error(layer, torch.randn(2, 48), (4, 2, 3))


# ---------------------------------------------------------------- the VAE


class _MeanEncoder(nn.Module):
    """(mean, scale) with mean = the flattened input and fixed scales: z shows in the output."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.exp(0.5 * torch.tensor(LOG_VAR)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.flatten(1)
        return mean, self.scale.expand_as(mean)


class _GivenEncoder(nn.Module):
    """Returns the given (mean, exp(log_var / 2)) whatever the input: the graph to them stays."""

    def __init__(self, mu: torch.Tensor, log_var: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.log_var = mu, log_var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu, torch.exp(0.5 * self.log_var)


def _probe_vae(vae_class: type, loss: str) -> nn.Module:
    """The student's VAE around an encoder whose z comes out of the decoder unchanged."""
    vae = vae_class(_MeanEncoder(), nn.Unflatten(1, (1, 2, 2)), loss=loss)
    return vae.train()


def _images(rows: int) -> torch.Tensor:
    """rows copies of a 1x2x2 'image' whose flattened pixels are the means MU."""
    return torch.tensor(MU).repeat(rows, 1).view(rows, 1, 2, 2)


def _forward(vae: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x_hat, latent = _pair(vae(x), "VAE.forward(x)")
    expect_shape(x_hat, x.shape, "the reconstruction of forward(x)")
    return x_hat, _scalar(latent, "the latent loss of forward(x)")


def forward_sampler(vae_class: type) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The z that VAE.forward decodes, as a sampler (mu, log_var) -> z for the `reparam` checks."""

    def sample(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        vae = vae_class(_GivenEncoder(mu, log_var), nn.Identity(), loss="kl").train()
        return _forward(vae, torch.zeros_like(mu))[0]

    return sample


def similar_sampler(vae_class: type) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The z that generate_similar(x, noise=True) decodes, as a sampler for the `reparam` checks."""

    def sample(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        vae = vae_class(_GivenEncoder(mu, log_var), nn.Identity(), loss="kl")
        return vae.generate_similar(torch.zeros_like(mu), noise=True)

    return sample


def _expect_latent(latent: torch.Tensor, wants: list[torch.Tensor], kind: str, call: str) -> None:
    """The latent loss of forward equals one of `wants`: the reference, or the student's own."""
    expect(
        any(_allclose(latent, want, 1e-4, 1e-4) for want in wants),
        f"with loss={kind!r} the latent loss of forward should be {call} = {wants[0].item():.5f}, "
        f"got {latent.item():.5f}",
    )


@check
def check_vae_forward(
    vae_class: type, mc_latent_loss: Callable | None = None, kl_latent_loss: Callable | None = None
) -> None:
    """forward returns (decoder(z), latent loss), the latent loss chosen by `loss`.

    The latent loss may equal the reference or the student's own loss function, when given, so
    that a mistake in a loss function is not counted again here. The distribution of z is the
    business of `reparam.check_reparameterization(forward_sampler(VAE))`.
    """
    # Small batches, where a Monte-Carlo value and the KL differ by O(1): on 100 000 rows they
    # agree to 0.01, and a loss of the wrong kind could pass by chance.
    for _ in range(3):
        x = _images(8)
        mean, scale = _MeanEncoder()(x)
        _, latent = _forward(_probe_vae(vae_class, "kl"), x)
        wants = [_kl_reference(mean, scale)]
        if kl_latent_loss is not None:
            wants.append(expect_tensor(kl_latent_loss(mean, scale), "kl_latent_loss(mean, scale)"))
        _expect_latent(latent, wants, "kl", "kl_latent_loss(mean, scale)")
        x_hat, latent = _forward(_probe_vae(vae_class, "mc"), x)
        z = x_hat.detach().flatten(1)
        eps = (z - mean) / scale  # the noise that forward drew, recovered from the decoded z
        wants = [_mc_reference(z, eps, scale)]
        if mc_latent_loss is not None:
            wants.append(
                expect_tensor(mc_latent_loss(z, eps, scale), "mc_latent_loss(z, eps, scale)")
            )
        _expect_latent(latent, wants, "mc", "mc_latent_loss(z, eps, scale) of the decoded z")


@check
def check_generate_similar(vae_class: type) -> None:
    """noise=False decodes the mean, deterministically; noise=True decodes a fresh z.

    That the fresh z is N(mean, scale^2) is the business of
    `reparam.check_reparameterization(similar_sampler(VAE))`.
    """
    vae, x = _probe_vae(vae_class, "kl"), _images(64)
    a = expect_tensor(vae.generate_similar(x, noise=False), "generate_similar(x, noise=False)")
    b = vae.generate_similar(x, noise=False)
    expect_shape(a, x.shape, "generate_similar(x, noise=False)")
    expect(
        _allclose(a, x, 0, 0) and _allclose(b, x, 0, 0),
        "generate_similar(x, noise=False) should decode z = mean, with no noise",
    )
    a = expect_tensor(vae.generate_similar(x), "generate_similar(x)")
    b = expect_tensor(vae.generate_similar(x, noise=True), "generate_similar(x, noise=True)")
    expect_shape(a, x.shape, "generate_similar(x)")
    expect(not _allclose(a, x, 0, 0), "generate_similar(x) should add noise: noise=True by default")
    expect(not _allclose(a, b, 0, 0), "two calls with noise=True returned the same images")


# ---------------------------------------------------------------- the conv architecture


def _layers(module: nn.Module, kind: type) -> list[tuple]:
    return [
        (m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride))
        for m in module.modules()
        if type(m) is kind
    ]


@check
def check_encoder_decoder(encoder: nn.Module, decoder: nn.Module) -> None:
    """Conv 1-16-32-64 (4x4, stride 2) down, transposed convs back; shapes; pixels in [0, 1]."""
    want = [(1, 16, (4, 4), (2, 2)), (16, 32, (4, 4), (2, 2)), (32, 64, (4, 4), (2, 2))]
    got = _layers(encoder, nn.Conv2d)
    expect(
        got == want,
        f"the encoder's Conv2d layers (in, out, kernel, stride) should be {want}, got {got}",
    )
    want = [(64, 32, (4, 4), (2, 2)), (32, 16, (4, 4), (2, 2)), (16, 1, (4, 4), (2, 2))]
    got = _layers(decoder, nn.ConvTranspose2d)
    expect(got == want, f"the decoder's ConvTranspose2d layers should be {want}, got {got}")
    device = device_of(encoder)
    mean, scale = _pair(encoder(torch.rand(3, 1, 32, 32, device=device)), "encoder(x)")
    latent = mean.shape[-1]
    expect_shape(mean, (3, latent), "the mean of encoder(x) for x of shape (3, 1, 32, 32)")
    expect_shape(scale, (3, latent), "the scale of encoder(x)")
    expect(bool((scale > 0).all()), "the encoder's scale should be positive")
    z = 10 * torch.randn(64, latent, device=device)  # far-out codes: unbounded outputs show
    x_hat = expect_tensor(decoder(z), "decoder(z)")
    expect_shape(x_hat, (64, 1, 32, 32), f"decoder(z) for z of shape (64, {latent})")
    expect(
        bool(((x_hat >= 0) & (x_hat <= 1)).all()), "decoder(z) should be in [0, 1]: end in Sigmoid"
    )


# ---------------------------------------------------------------- the widget callbacks


class _TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.linear(x.flatten(1))
        return mean, torch.full_like(mean, 0.5)


class TinyVAE(nn.Module):
    """A tiny VAE on 1x4x4 images with a 3-d latent: `encoder`, `decoder`, `generate_similar`."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _TinyEncoder()
        self.decoder = nn.Sequential(nn.Linear(3, 16), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4)))
        self.loss = "kl"

    def generate_similar(self, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
        mean, scale = self.encoder(x)
        return self.decoder(mean + scale * torch.randn_like(mean) if noise else mean)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, scale = self.encoder(x)
        return self.decoder(mean + scale * torch.randn_like(mean)), _kl_reference(mean, scale)


def _images_out(value: Any, n: int, what: str) -> torch.Tensor:
    images = expect_tensor(value, what)
    expect_shape(images, (n, 1, 4, 4), f"{what} for 1x4x4 images")
    return images.detach().cpu()


@check
def check_mix_images(mix_images: Callable) -> None:
    """[x1, decoded z1, decoded (1 - alpha) z1 + alpha z2, decoded z2, x2], z = the means."""
    model = TinyVAE()
    x1, x2 = torch.rand(1, 4, 4), torch.rand(1, 4, 4)
    with torch.no_grad():
        z1, z2 = model.encoder(torch.stack([x1, x2]))[0]
    for alpha in (0.0, 1.0, 0.3):
        images = _images_out(mix_images(model, x1, x2, alpha), 5, f"mix_images(alpha={alpha})")
        expect(
            core.equal(images[0], x1) and core.equal(images[4], x2),
            "images 0 and 4 should be x1 and x2",
        )
        with torch.no_grad():
            want = model.decoder(torch.stack([z1, (1 - alpha) * z1 + alpha * z2, z2]))
        expect(
            _allclose(images[1], want[0], 1e-5, 1e-6) and _allclose(images[3], want[2], 1e-5, 1e-6),
            "images 1 and 3 should be the reconstructions of x1 and x2 from z = mean (no noise)",
        )
        expect(
            _allclose(images[2], want[1], 1e-5, 1e-6),
            f"with alpha = {alpha} the middle image should decode (1 - alpha) z1 + alpha z2: "
            "alpha = 0 gives the reconstruction of x1, alpha = 1 that of x2",
        )


@check
def check_traverse(traverse: Callable) -> None:
    """Decoded mean code of x with coordinate `dim` set to each of `steps` values in [-1, 1]."""
    model, x = TinyVAE(), torch.rand(1, 4, 4)
    for dim, steps in ((0, 9), (2, 9), (1, 5)):
        args = (model, x, dim) if steps == 9 else (model, x, dim, steps)
        images = _images_out(
            traverse(*args), steps, f"traverse(model, x, dim={dim}, steps={steps})"
        )
        with torch.no_grad():
            z = model.encoder(x[None])[0].repeat(steps, 1)
            z[:, dim] = torch.linspace(-1, 1, steps)
            want = model.decoder(z)
        expect(
            _allclose(images, want, 1e-5, 1e-6),
            f"traverse(dim={dim}, steps={steps}) should decode the mean code of x with "
            f"coordinate {dim} replaced by each of torch.linspace(-1, 1, {steps}), the others kept",
        )


# ---------------------------------------------------------------- the trained models


def mnist_test_padded(device: torch.device) -> torch.Tensor:
    """The 10 000 MNIST test images as (10000, 1, 32, 32) in [0, 1], zero-padded, read here."""
    from autograder.data import mnist_test_images

    return F.pad(mnist_test_images(), (2, 2, 2, 2)).unsqueeze(1).to(device)


@torch.no_grad()
def negative_elbo(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """(loss, KL) per image: 1/2 ||x - decoder(z)||^2 of one z ~ q(z|x), plus the analytic KL."""
    squared, kls = [], []
    for batch in x.split(batch_size):
        mean, scale = model.encoder(batch)
        z = mean + scale * torch.randn_like(mean)
        squared.append(0.5 * (model.decoder(z) - batch).pow(2).flatten(1).sum(1).double())
        var = scale.double().pow(2)
        kls.append(0.5 * (var + mean.double().pow(2) - var.log() - 1).sum(1))
    rec, kl = torch.cat(squared).mean().item(), torch.cat(kls).mean().item()
    return rec + kl, kl


@check
def check_trained_vae(
    model: nn.Module,
    x_test: torch.Tensor,
    max_loss: float | None = None,
    min_kl: float | None = None,
) -> None:
    """On the test set: loss per image below `max_loss` (default by `model.loss`), KL above `min_kl`."""
    kind = getattr(model, "loss", None)
    expect(kind in ("mc", "kl"), f"model.loss should be 'mc' or 'kl', got {kind!r}")
    max_loss = PUBLIC_MAX_LOSS[kind] if max_loss is None else max_loss
    min_kl = MIN_KL[kind] if min_kl is None else min_kl
    device = device_of(model)
    want_x = mnist_test_padded(device)
    core.expect_test_set(
        x_test,
        want_x,
        "x_test",
        "the 10 000 MNIST test images, padded to (10000, 1, 32, 32), in [0, 1]",
    )
    model.eval()
    loss, kl = negative_elbo(model, want_x)
    print(f"loss={kind!r}: {loss:.2f} nats per test image (threshold {max_loss}), KL {kl:.2f}")
    core.expect_test_scores(loss, kl, max_loss, min_kl)
