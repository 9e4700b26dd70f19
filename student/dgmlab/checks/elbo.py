"""Checks of the lab 04-elbo-estimators: the latent layer, the Monte-Carlo and the analytic latent
losses, the reshaping layer, the VAE, the conv architecture, the widget callbacks, trained models.

Every check is a `core.Check`: its inputs are drawn by the grader, the student's code runs on them
in the student's kernel only to collect evidence, and the judge decides from the inputs and that
evidence alone. Exact checks compare with float64 references computed by the judge (pristine
`core.allclose`). The statistical check of the Monte-Carlo loss bounds its false-failure
probability as `stats` does (C = 5.5 standard errors); the samplers inside the VAE are checked by
the shared checks of `reparam`, through the collect-side adapters `forward_sampler` and
`similar_sampler`. Stand-in modules (probe encoders, the tiny VAE of the widget callbacks) take
their weights from the inputs, so that the judge can compute what a correct answer gives. The
conv architecture and the trained models are exported (`program.export_program`) and run by the
judge; a trained model is scored on the held-out MNIST test images with the judge's own sampling,
never by a number the student's code reports. Hidden thresholds live in `autograder.hidden.elbo`.

One module per lab, in the lab's order: every check of a lab in one place is why it runs past
the ~300 lines a module otherwise keeps to.
"""

import contextlib
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from dgmlab.checks import core, evidence, oracle, program, stats
from dgmlab.checks.core import (
    EXACT_KL,
    CheckFailed,
    collect,
    device_of,
    expect,
    expect_shape,
    expect_tensor,
)
from dgmlab.checks.reparam import (  # noqa: F401  (the lab calls them as checks.*)
    LOG_VAR,
    MU,
    check_reparameterization,
)

ROWS = 100_000  # rows of the statistical checks (4 latent columns, MU and LOG_VAR of reparam)

# The lab's two trained VAEs (Gaussian decoder N(x_hat, I) on 32x32 padded MNIST, latent 16,
# 2500 Adam steps of 32 images, lr 1e-3) scored by `negative_elbo` on the 2000 held-out test
# images (dgmlab.heldout, padded as the lab pads): 1/2 ||x - x_hat||^2 of one code sampled by
# the judge plus the analytic KL, in nats per image, i.e. the negative ELBO less the constant
# 512 ln(2 pi). These are harder than the whole test set: a collapsed posterior (the decoder
# draws the average training image, KL 0) scores 27.75 there, 26.45 on the 10 000. Reference
# solution on CPU with one thread, as the lab and the grading sandbox run it: the lab's seeds
# (weights 1, batches 0), then training seeds 2..11 (weights and batches), 11 runs each:
#   loss='kl': 20.30, 20.68, 20.70, 20.56, 21.17, 20.59, 20.75, 20.78, 20.67, 21.59, 21.89
#              (mean 20.88, sd 0.48, worst 21.89); KL 3.70-5.26
#   loss='mc': 23.92, 24.16, 23.76, 23.03, 24.71, 24.42, 24.37, 23.97, 48.32, 25.09, 25.39
#              (the other 10: mean 24.28, sd 0.68, worst 25.39); KL 1.37-3.15, and 0.00
# (The same runs on the whole test set: 0.06-0.36 nats lower for 'kl', 0.55-1.15 for 'mc'.) The
# Monte-Carlo runs leave the collapsed plateau later and at a more random time, hence their
# spread; seed 9's never left it (its decoder draws a blank image, KL 0): it fails every bar, as
# it failed the old ones on the whole test set (44.67). The lab's own seeds reproduce exactly
# (the grading sandbox scored the same 20.3 and 23.9): the reference notebook, graded, passes.
# The 'mc' thresholds only ask that the model has left the plateau. One z per held-out image:
# over 20 judge seeds the loss of one reference model varied with sd 0.04-0.06, small against
# the margins, so the thresholds bound the spread of training, not of the judge's sampling.
PUBLIC_MAX_LOSS = {
    "kl": 23.5,  # 1.6 nats above the worst reference seed (mean + 5.5 sd); collapsed: 27.75
    "mc": 26.8,  # 1.4 nats above the worst seed that left the plateau (mean + 3.7 sd)
}
MIN_KL = {"kl": 2.0, "mc": 0.5}  # a collapsed posterior has KL ~0; the reference 1.37-5.26
ESTIMATORS = ("mc", "kl")
BARS = ("public", "hidden")
EXPORT_BATCH = 50  # the example batch of the exported encoder and decoder
SCORE_BATCH = 500  # the batch in which the judge runs them on the held-out images


def _allclose(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> bool:
    """Pristine allclose in float64 on the CPU, shapes first (no silent broadcasting)."""
    if tuple(got.shape) != tuple(want.shape):
        return False
    return core.allclose(got.detach().double().cpu(), want.detach().double().cpu(), rtol, atol)


def _answer(value: Any, what: str) -> torch.Tensor:
    """A tensor of the evidence, or CheckFailed naming what the student's code gave instead."""
    return core.answer_tensor({"value": value}, "value", what)


def _pair(value: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two tensors of a (a, b) result, or a failure saying what came back instead."""
    is_object = isinstance(value, dict) and evidence.OBJECT in value  # not data: its type name
    expect(
        isinstance(value, tuple | list) and len(value) == 2,
        f"{what} should return a pair (a tuple of two tensors), got "
        f"{value[evidence.OBJECT] if is_object else type(value).__name__}",
    )
    return _answer(value[0], f"{what}[0]"), _answer(value[1], f"{what}[1]")


def _seen_gradient(grad: Any, want: torch.Tensor) -> str:
    """What the student's gradient was, against `want`, in words."""
    if not isinstance(grad, torch.Tensor):
        return "no gradient reached it (detached, or unused)"
    if tuple(grad.shape) != tuple(want.shape):
        return f"got a gradient of shape {tuple(grad.shape)}"
    if not bool(grad.any()):
        return "got a gradient of 0"
    return core.worst_case(grad, want, {})  # where it is furthest off: expected, got


def _expect_gradient(grad: Any, want: torch.Tensor, expected: str) -> None:
    """Fail unless `grad` is `want` within float32 rounding, saying what it was instead."""
    expect(
        isinstance(grad, torch.Tensor) and _allclose(grad, want, 1e-5, 1e-6),
        f"{expected}; {_seen_gradient(grad, want)}",
    )


def _scalar(value: Any, what: str) -> torch.Tensor:
    """A 0-dimensional tensor: a loss averaged over the batch."""
    value = _answer(value, what)
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


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x W^T + b in float64."""
    out = x.double() @ weight.double().T
    return out if bias is None else out + bias.double()


# ---------------------------------------------------------------- the latent layer


LAYER_IN, LAYER_OUT, LAYER_BATCH = 6, 3, 5
# Features 20 times the size of N(0, 1) ones: with nn.Linear's weights the heads give values of
# sd ~11.5, so among the 64 x 3 values of each head some are beyond +10 and some beyond -10
# (each side missed with probability 0.81^192 < 1e-17), and none near the float32 overflow of
# exp(v) at 88 (7.6 sd). A head that is bounded, clamped or squashed shows there.
FAR_ROWS, FAR_SIZE = 64, 20.0


@collect
def check_latent_layer(layer_class: type, inputs: dict) -> dict:
    """LatentLayer(i, l)(h) -> (mean, scale): two linear heads, scale = exp(log_var_head / 2)."""
    layer = layer_class(LAYER_IN, LAYER_OUT)
    heads = [m for m in layer.modules() if isinstance(m, nn.Linear)]
    found: dict = {"heads": [[h.in_features, h.out_features] for h in heads]}
    if len(heads) != 2 or found["heads"] != [[LAYER_IN, LAYER_OUT]] * 2:
        return found  # the judge names the heads it found
    with torch.no_grad():  # the grader's weights: the judge knows what each head computes
        for head, weight, bias in zip(heads, inputs["weights"], inputs["biases"], strict=True):
            head.weight.copy_(weight)
            if head.bias is not None:
                head.bias.copy_(bias)
    found["biased"] = [h.bias is not None for h in heads]
    with torch.no_grad():
        found["far"] = layer(inputs["h_far"])
    out = layer(inputs["h"])
    found["out"] = out
    scale = out[1] if isinstance(out, tuple | list) and len(out) == 2 else None
    if isinstance(scale, torch.Tensor) and scale.requires_grad and scale.shape == inputs["g"].shape:
        scale.backward(inputs["g"])
        found["weight_grads"] = [h.weight.grad for h in heads]
    return found


@check_latent_layer.inputs
def _latent_layer_inputs() -> dict:
    bound = 1 / math.sqrt(LAYER_IN)  # nn.Linear's own initialisation range
    return {
        # large inputs: head outputs far from 0, where exp(v) != exp(v/2)
        "h": 3 * torch.randn(LAYER_BATCH, LAYER_IN),
        "h_far": FAR_SIZE * torch.randn(FAR_ROWS, LAYER_IN),
        "weights": torch.empty(2, LAYER_OUT, LAYER_IN).uniform_(-bound, bound),
        "biases": torch.empty(2, LAYER_OUT).uniform_(-bound, bound),
        "g": torch.randn(LAYER_BATCH, LAYER_OUT),
    }


@check_latent_layer.judge
def _judge_latent_layer(inputs: dict, found: dict) -> None:
    heads = found.get("heads")
    expect(
        heads == [[LAYER_IN, LAYER_OUT]] * 2,
        "LatentLayer(6, 3) should hold two nn.Linear(6, 3) heads, one for the mean and one for "
        f"the log-variance; found {heads if isinstance(heads, list) else []}",
    )
    mean, scale = _pair(found.get("out"), "LatentLayer(6, 3)(h)")
    expect_shape(mean, (LAYER_BATCH, LAYER_OUT), "mean")
    expect_shape(scale, (LAYER_BATCH, LAYER_OUT), "scale")
    expect(bool((scale > 0).all()), "scale should be positive: compute it as exp(log_var / 2)")
    biased = found.get("biased")
    biased = biased if isinstance(biased, list) and len(biased) == 2 else [True, True]
    h = inputs["h"]

    def heads_of(h: torch.Tensor) -> list[torch.Tensor]:
        return [
            _linear(h, inputs["weights"][i], inputs["biases"][i] if biased[i] is True else None)
            for i in range(2)
        ]

    outputs, far = heads_of(h), heads_of(inputs["h_far"])
    for mean_head in (0, 1):
        m, v = outputs[mean_head], outputs[1 - mean_head]
        if not _allclose(mean, m, 1e-5, 1e-6):
            continue
        expect(
            not _allclose(scale, v.exp(), 1e-5, 1e-6),
            "scale = exp(log_var) is the variance; the scale is exp(log_var / 2)",
        )
        core.expect_close(
            scale,
            torch.exp(0.5 * v),
            "scale should be exp(log_var / 2), with log_var the output of the other head",
            rtol=1e-5,
            atol=1e-6,
        )
        # d sum(g * scale) / d W = (g * scale / 2)^T h for the log-variance head
        want = (inputs["g"].double() * torch.exp(0.5 * v) / 2).T @ h.double()
        grads = found.get("weight_grads")
        grad = grads[1 - mean_head] if isinstance(grads, list) and len(grads) == 2 else None
        expect(
            isinstance(grad, torch.Tensor) and _allclose(grad, want, 1e-5, 1e-5),
            "the gradient of scale should reach the log-variance head's weights, as "
            f"exp(log_var / 2) gives it; {_seen_gradient(grad, want)}: is scale detached?",
        )
        far_mean, far_scale = _pair(found.get("far"), "LatentLayer(6, 3)(h) for large h")
        far_m, far_v = far[mean_head], far[1 - mean_head]
        # float32 heads on features of size 20: absolute error ~1e-5 in m and v, so a relative
        # error ~1e-5 in exp(v / 2); the tolerances leave a factor 10 and more
        core.expect_close(
            far_mean,
            far_m,
            f"for large features h, where the heads reach values of {far_m.abs().max().item():.0f}, "
            "mean should still be its head's output: no activation, clamp or bound on the mean "
            f"(it ranges over [{far_mean.min().item():.3g}, {far_mean.max().item():.3g}])",
            rtol=1e-5,
            atol=1e-3,
        )
        core.expect_close(
            far_scale,
            torch.exp(0.5 * far_v),
            f"for large features h, where the log-variance head reaches values from "
            f"{far_v.min().item():.0f} to {far_v.max().item():.0f}, scale should still be "
            "exp(log_var / 2): a log-variance takes any real value, so no activation, clamp or "
            "bound on its head",
            rtol=1e-4,
            atol=0.0,
        )
        return
    expect(False, "mean should be the output of one linear head, unchanged (no activation)")


# ---------------------------------------------------------------- the two latent losses


def _mc_reference(z: torch.Tensor, eps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log q(z) - log p(z) summed over dimensions, averaged over the batch (q's mean is
    z - scale * eps: the z was drawn as mean + scale * eps), by torch.distributions."""
    mean = z.double() - scale.double() * eps.double()
    return oracle.log_ratio(z, mean, scale).sum(1).mean()


def _kl_reference(mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return oracle.kl_to_prior(mean, scale).sum(1).mean()


def _random_latents(batch: int = 2, dims: int = 3, log_scales: tuple = (0.25, 1.25)) -> dict:
    """z, eps and scale of a small batch, z = mean + scale * eps, every log-scale in `log_scales`,
    an interval of one sign so that the -log(scale) mistakes cannot cancel out."""
    mean, eps = torch.randn(batch, dims), torch.randn(batch, dims)
    scale = torch.exp(torch.empty(batch, dims).uniform_(*log_scales))
    return {"z": mean + scale * eps, "eps": eps, "scale": scale}


SMALL_LOG_SCALES = (-4.5, -1.5)  # scales 0.011 to 0.22, as a trained encoder's active codes have


def _mc_mistake(got: float, z: torch.Tensor, eps: torch.Tensor, scale: torch.Tensor) -> str:
    """A hint naming a known mistake that gives `got` on these inputs, or ''. Each mistake is
    the reference moved by the term the mistake gets wrong."""
    want = _mc_reference(z, eps, scale)
    log_s = scale.double().log().sum(1).mean()
    mistakes = {
        "the -log(scale) term is missing": want + log_s,
        "the sign of eps^2 / 2 is flipped": want + eps.double().pow(2).sum(1).mean(),
        "it is summed over the batch, not averaged": want * len(z),
        "it uses log(scale^2) where log(scale) belongs": want - log_s,
    }
    for hint, value in mistakes.items():
        if abs(got - value.item()) < 1e-4:
            return f" ({hint})"
    return ""


def _large_batch(eps: torch.Tensor) -> dict:
    """z, eps and scale of the statistical batch: the columns MU, LOG_VAR of reparam, one row per
    row of eps, z computed in float32 exactly as the collector computes it."""
    mean, scale = _columns(len(eps))
    return {"z": mean + scale * eps, "eps": eps, "scale": scale}


@collect
def check_mc_latent_loss(mc_latent_loss: Callable, inputs: dict, rows: int = ROWS) -> dict:
    """Exact values (small batches, and a large one); zero for every draw when q = p; unbiased
    estimate of the KL."""
    large = _large_batch(inputs["eps"])
    return {
        "fixed": mc_latent_loss(*(inputs["fixed"][k] for k in ("z", "eps", "scale"))),
        "small": mc_latent_loss(*(inputs["small"][k] for k in ("z", "eps", "scale"))),
        # q = p = N(0, I): z = eps and scale = 1, so each estimate is exactly 0
        "prior": [mc_latent_loss(e.clone(), e, torch.ones_like(e)) for e in inputs["prior"]],
        "large": mc_latent_loss(large["z"], large["eps"], large["scale"]),
    }


@check_mc_latent_loss.inputs
def _mc_latent_loss_inputs(rows: int = ROWS) -> dict:
    return {
        "fixed": _random_latents(),
        "small": _random_latents(log_scales=SMALL_LOG_SCALES),
        "prior": [torch.randn(64, 4) for _ in range(3)],
        "eps": torch.randn(rows, 4),
    }


# The large batch's value against the reference on the same draws: the student's float32 sum of
# 4 terms per row and mean over 100 000 rows is within ~1e-6 of the float64 value (measured over
# 30 draws and the correct variants of tests/test_variants_04.py: the lab's, torch.distributions',
# (z - eps)(z + eps) / 2, ...: at most 6e-7); a tolerance of 1e-4 leaves a factor above 100. Any
# deviation of more than 1e-4 nats on the statistical batch fails here, whatever the draws.
LARGE_ATOL = 1e-4


@check_mc_latent_loss.judge
def _judge_mc_latent_loss(inputs: dict, found: dict, rows: int = ROWS) -> None:
    for key, what in (("fixed", "a batch of 2"), ("small", "a batch of 2 with scales below 0.25")):
        z, eps, scale = (inputs[key][k] for k in ("z", "eps", "scale"))
        got = _scalar(found.get(key), "mc_latent_loss(z, eps, scale)").item()
        want = _mc_reference(z, eps, scale).item()
        expect(
            abs(got - want) <= 1e-5 * max(1.0, abs(want)),
            f"mc_latent_loss on {what} gave {got:.5f}, expected {want:.5f}: the batch mean of "
            f"sum_j (z_j^2 / 2 - eps_j^2 / 2 - log scale_j){_mc_mistake(got, z, eps, scale)}",
        )
    prior = found.get("prior")
    expect(isinstance(prior, list) and len(prior) == 3, "mc_latent_loss was not computed at q = p")
    for value in prior:
        value = _scalar(value, "mc_latent_loss")
        expect(
            abs(value.item()) <= 1e-6,
            f"when q equals the prior (mean 0, scale 1, z = eps) every estimate should be 0, "
            f"got {value.item():.6f}",
        )
    value = _scalar(found.get("large"), "mc_latent_loss").item()
    mean, scale = _columns(1)
    kl = _kl_reference(mean, scale).item()
    # One row's estimate sum_j (mu_j^2/2 + mu_j s_j eps_j + (s_j^2 - 1) eps_j^2 / 2 - log s_j)
    # has mean KL and variance sum_j (mu_j^2 s_j^2 + (s_j^2 - 1)^2 / 2) = 16.2; the batch mean of
    # `rows` iid rows (eps drawn by the grader) has sd sqrt(16.2 / rows) = 0.0127 at 100 000
    # rows. The chi-square part is skewed (skew of the mean ~ sqrt(8 / rows) < 0.01), which moves
    # the 5.5-sd tail by a factor < 1.3: false failure < 1.3 * 3.8e-8 = 5e-8, the only
    # statistical assertion of this check. Power: a bias of stats.detectable(0.0127) = 0.109
    # nats is caught with probability 0.999; smaller ones are caught, whatever the draws, by
    # the comparison on the same draws that follows (any bias above LARGE_ATOL = 1e-4 nats).
    m, s2 = torch.tensor(MU).double(), torch.tensor(LOG_VAR).double().exp()
    sd = math.sqrt((m.pow(2) * s2 + (s2 - 1).pow(2) / 2).sum().item() / rows)
    expect(
        math.isfinite(value) and abs(value - kl) <= stats.C * sd,
        f"over {rows} draws mc_latent_loss averages {value:.4f}, but its expectation is the KL "
        f"{kl:.4f}: it is not an unbiased estimate",
    )
    large = _large_batch(inputs["eps"])
    want = _mc_reference(large["z"], large["eps"], large["scale"]).item()
    expect(
        abs(value - want) <= LARGE_ATOL,
        f"over {rows} draws mc_latent_loss gave {value:.5f}, but the batch mean of "
        f"sum_j (z_j^2 / 2 - eps_j^2 / 2 - log scale_j) on those draws is {want:.5f}",
    )


def _exact_kl_batches() -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, scale) of one row holding the five EXACT_KL pairs as its dimensions."""
    mean = torch.tensor([[p[0] for p in EXACT_KL]])
    scale = torch.exp(0.5 * torch.tensor([[p[1] for p in EXACT_KL]]))
    return mean, scale


@collect
def check_kl_latent_loss(kl_latent_loss: Callable, inputs: dict) -> dict:
    """Exact values, batch mean of sums over dimensions, agreement with torch.distributions."""
    exact = [
        kl_latent_loss(torch.tensor([[mu]]), torch.exp(0.5 * torch.tensor([[log_var]])))
        for mu, log_var, _ in EXACT_KL
    ]
    mean, scale = _exact_kl_batches()
    return {
        "exact": exact,
        "row": kl_latent_loss(mean, scale),
        "column": kl_latent_loss(mean.T.contiguous(), scale.T.contiguous()),
        "random": kl_latent_loss(inputs["mean"], inputs["scale"]),
    }


@check_kl_latent_loss.inputs
def _kl_latent_loss_inputs() -> dict:
    return {
        "mean": 2 * torch.randn(7, 4),
        "scale": torch.exp(torch.empty(7, 4).uniform_(-1.5, 1.5)),
    }


@check_kl_latent_loss.judge
def _judge_kl_latent_loss(inputs: dict, found: dict) -> None:
    exact = found.get("exact")
    expect(isinstance(exact, list) and len(exact) == len(EXACT_KL), "the KL was not computed")
    for value, (mu, log_var, want) in zip(exact, EXACT_KL, strict=True):
        got = _scalar(value, "kl_latent_loss(mean, scale)").item()
        expect(
            abs(got - want) <= 1e-5,
            f"KL(N({mu:g}, {math.exp(log_var):g}) || N(0, 1)) should be {want:.6f}, got {got:.6f}",
        )
    total = sum(p[2] for p in EXACT_KL)
    got = _scalar(found.get("row"), "kl_latent_loss").item()
    expect(
        abs(got - total) <= 1e-5,
        f"one row of 5 dimensions: want the sum {total:.6f}, got {got:.6f}",
    )
    got = _scalar(found.get("column"), "kl_latent_loss").item()
    expect(
        abs(got - total / 5) <= 1e-5,
        f"5 rows of 1 dimension: want the mean over the batch {total / 5:.6f}, got {got:.6f}",
    )
    mean, scale = inputs["mean"].double(), inputs["scale"].double()
    want = kl_divergence(Normal(mean, scale), Normal(0.0, 1.0)).sum(1).mean()
    got = _scalar(found.get("random"), "kl_latent_loss")
    core.expect_close(
        got,
        want,
        f"on a random batch: {got.item():.6f}, torch.distributions.kl_divergence gives {want:.6f}",
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------- the reshaping layer


RESHAPES = (((4, 2, 3), 5), ((4, 2, 3), 1), ((64, 4, 4), 3))  # (view shape, batch size)
BAD_SHAPE = (4, 2, 3)
# rows of 25 numbers, and rows of 12 or 48: x.view(-1, 4, 2, 3) would silently change the batch
BAD_BATCHES = ((5, 25), (6, 12), (2, 48))


@collect
def check_reshape_layer(layer_class: type, inputs: dict) -> dict:
    """(N, a*b*c) -> (N, a, b, c) as a view of the same numbers; ValueError otherwise."""
    good = [layer_class(shape)(x) for (shape, _), x in zip(RESHAPES, inputs["good"], strict=True)]
    layer, refused = layer_class(BAD_SHAPE), []
    for x in inputs["bad"]:
        try:
            refused.append({"returned": layer(x)})
        except Exception as exc:  # noqa: BLE001  (which error, and its message, is the answer)
            refused.append(
                {
                    "raised": type(exc).__name__,
                    "value_error": isinstance(exc, ValueError),
                    "message": str(exc)[:2000],
                }
            )
    return {"good": good, "bad": refused}


@check_reshape_layer.inputs
def _reshape_inputs() -> dict:
    return {
        "good": [torch.randn(batch, math.prod(shape)) for shape, batch in RESHAPES],
        "bad": [torch.randn(*shape) for shape in BAD_BATCHES],
    }


def _names_shape(message: str, shape: tuple[int, ...]) -> bool:
    """Whether the numbers of `shape` appear in `message` one after the other, in order."""
    numbers = [int(n) for n in re.findall(r"\d+", message)]
    return any(numbers[i : i + len(shape)] == list(shape) for i in range(len(numbers)))


@check_reshape_layer.judge
def _judge_reshape_layer(inputs: dict, found: dict) -> None:
    good = found.get("good")
    expect(isinstance(good, list) and len(good) == len(RESHAPES), "ReshapeLayer was not called")
    for (shape, batch), x, out in zip(RESHAPES, inputs["good"], good, strict=True):
        out = _answer(out, f"ReshapeLayer({shape})(x)")
        expect_shape(
            out, (batch, *shape), f"ReshapeLayer({shape}) of a ({batch}, {x.shape[1]}) batch"
        )
        expect(
            core.equal(out, x.reshape(batch, *shape)),
            f"ReshapeLayer({shape}) of a ({batch}, {x.shape[1]}) batch should keep the numbers in "
            "their order, as x.reshape(N, *view_shape) does; its output holds them otherwise",
        )
    bad = found.get("bad")
    expect(isinstance(bad, list) and len(bad) == len(BAD_BATCHES), "ReshapeLayer was not called")
    for x_shape, result in zip(BAD_BATCHES, bad, strict=True):
        what = f"ReshapeLayer({BAD_SHAPE}) on a batch of shape {x_shape}"
        expect(isinstance(result, dict), f"{what}: no outcome was recorded")
        if "raised" not in result:
            out = result.get("returned")
            got = (
                tuple(out.shape)
                if isinstance(out, torch.Tensor)
                else out.get(evidence.OBJECT, "dict")
                if isinstance(out, dict)
                else type(out).__name__
            )
            expect(False, f"{what} returned {got}: it should raise a ValueError naming both shapes")
        expect(
            result.get("value_error") is True,
            f"{what} raised {result.get('raised')}; raise a ValueError naming both shapes",
        )
        message = result.get("message")
        message = message.strip() if isinstance(message, str) else ""
        expect(bool(message), f"{what} raised a ValueError without a message")
        expect(
            _names_shape(message, x_shape) and _names_shape(message, BAD_SHAPE),
            f"{what} raised ValueError({message[:200]!r}): the message should name both shapes, "
            f"the batch's {x_shape} and the view's {BAD_SHAPE}",
        )


# ---------------------------------------------------------------- the VAE


class _ProbeEncoder(nn.Module):
    """(mean, scale): mean = the flattened 1x2x2 input through a fixed linear map, fixed scales.

    With the decoder nn.Unflatten(1, (1, 2, 2)) the decoded image is z itself."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.clone())
        self.register_buffer("bias", bias.clone())
        self.register_buffer("scale", scale.clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = F.linear(x.flatten(1), self.weight, self.bias)
        return mean, self.scale.expand_as(mean)


class _GivenEncoder(nn.Module):
    """Returns the given (mean, exp(log_var / 2)) whatever the input: the graph to them stays."""

    def __init__(self, mu: torch.Tensor, log_var: torch.Tensor) -> None:
        super().__init__()
        self.mu, self.log_var = mu, log_var

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu, torch.exp(0.5 * self.log_var)


def _probe(rows: int) -> dict:
    """A probe's weights and a batch of `rows` 1x2x2 'images', drawn by the grader."""
    return {
        "x": torch.randn(rows, 1, 2, 2),
        "weight": torch.randn(4, 4) / 2,
        "bias": torch.randn(4),
        "scale": torch.exp(torch.empty(4).uniform_(-1, 1)),
    }


def _probe_mean(probe: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The judge's (mean, scale) of the probe encoder on its batch, in float64."""
    mean = _linear(probe["x"].flatten(1), probe["weight"], probe["bias"])
    return mean, probe["scale"].double().expand_as(mean)


def _probe_vae(vae_class: type, loss: str, probe: dict) -> nn.Module:
    """The student's VAE around the probe encoder, whose z comes out of the decoder unchanged."""
    encoder = _ProbeEncoder(probe["weight"], probe["bias"], probe["scale"])
    vae = vae_class(encoder, nn.Unflatten(1, (1, 2, 2)), loss=loss)
    return vae.train()


def _forward(vae: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x_hat, latent = _pair(vae(x), "VAE.forward(x)")
    expect_shape(x_hat, x.shape, "the reconstruction of forward(x)")
    return x_hat, _scalar(latent, "the latent loss of forward(x)")


def forward_sampler(vae_class: type) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The z that VAE.forward decodes, as a sampler (mu, log_var) -> z for the `reparam` checks.

    Used in the student's kernel, in the collect step of those checks."""

    def sample(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        vae = vae_class(_GivenEncoder(mu, log_var), nn.Identity(), loss="kl").train()
        return _forward(vae, torch.zeros_like(mu))[0]

    return sample


def similar_sampler(vae_class: type) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The z that generate_similar(x, noise=True) decodes, as a sampler for the `reparam` checks.

    Used in the student's kernel, in the collect step of those checks."""

    def sample(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        vae = vae_class(_GivenEncoder(mu, log_var), nn.Identity(), loss="kl")
        return vae.generate_similar(torch.zeros_like(mu), noise=True)

    return sample


def _mc_loss(z: torch.Tensor, eps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The reference Monte-Carlo latent loss, in the dtype of z (what check_vae_forward lends)."""
    return _mc_reference(z, eps, scale).to(z.dtype)


def _kl_loss(mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The reference analytic latent loss, in the dtype of mean."""
    return _kl_reference(mean, scale).to(mean.dtype)


@contextlib.contextmanager
def _lent_losses(vae_class: type, mc: Callable | None, kl: Callable | None) -> Iterator[None]:
    """Within: the names the VAE's methods see bound to the student's loss functions `mc`, `kl`
    are bound to the references instead, so that a mistake in a loss function is not counted
    again by the VAE's check (that loss function's own check counts it)."""
    method = getattr(vae_class, "forward", None)
    namespace = getattr(method, "__globals__", None)
    lent: dict[str, Any] = {}
    if isinstance(namespace, dict):
        for given, reference in ((mc, _mc_loss), (kl, _kl_loss)):
            if given is None:
                continue
            for name, value in list(namespace.items()):
                if value is given:
                    lent[name] = value
                    namespace[name] = reference
    try:
        yield
    finally:
        if isinstance(namespace, dict):
            namespace.update(lent)


PROBES = 3  # repetitions of check_vae_forward, each with its own probe and batch


@collect
def check_vae_forward(
    vae_class: type,
    mc_latent_loss: Callable | None = None,
    kl_latent_loss: Callable | None = None,
    *,
    inputs: dict,
) -> dict:
    """forward returns (decoder(z), latent loss), the latent loss chosen by `loss`.

    Given the student's loss functions, forward runs with the references in their place, so that
    a mistake in a loss function is not counted again here. The distribution of z is the
    business of `reparam.check_reparameterization(forward_sampler(VAE))`.
    """
    runs = []
    with _lent_losses(vae_class, mc_latent_loss, kl_latent_loss):
        for probe in inputs["probes"]:
            runs.append(
                {kind: _probe_vae(vae_class, kind, probe)(probe["x"]) for kind in ("kl", "mc")}
            )
    return {"runs": runs}


@check_vae_forward.inputs
def _vae_forward_inputs() -> dict:
    # Small batches, where a Monte-Carlo value and the KL differ by O(1): on 100 000 rows they
    # agree to 0.01, and a loss of the wrong kind could pass by chance.
    return {"probes": [_probe(8) for _ in range(PROBES)]}


def _expect_latent(latent: torch.Tensor, want: torch.Tensor, kind: str, call: str) -> None:
    core.expect_close(
        latent,
        want,
        f"with loss={kind!r} the latent loss of forward should be {call} = {want.item():.5f}, "
        f"got {latent.item():.5f}",
        rtol=1e-4,
        atol=1e-4,
    )


@check_vae_forward.judge
def _judge_vae_forward(inputs: dict, found: dict) -> None:
    runs = found.get("runs")
    expect(isinstance(runs, list) and len(runs) == PROBES, "VAE.forward was not called")
    for probe, run in zip(inputs["probes"], runs, strict=True):
        expect(isinstance(run, dict), "VAE.forward was not called")
        x = probe["x"]
        mean, scale = _probe_mean(probe)
        for kind in ("kl", "mc"):
            x_hat, latent = _pair(run.get(kind), "VAE.forward(x)")
            expect_shape(x_hat, x.shape, "the reconstruction of forward(x)")
            latent = _scalar(latent, "the latent loss of forward(x)")
            if kind == "kl":
                want = _kl_reference(mean, scale)
                _expect_latent(latent, want, kind, "kl_latent_loss(mean, scale)")
            else:
                # the noise that forward drew, recovered from the decoded z
                z = x_hat.double().flatten(1)
                eps = (z - mean) / scale
                want = _mc_reference(z, eps, scale)
                _expect_latent(latent, want, kind, "mc_latent_loss(z, eps, scale) of the decoded z")


@collect
def check_generate_similar(vae_class: type, inputs: dict) -> dict:
    """noise=False decodes the mean, deterministically; noise=True decodes a fresh z.

    That the fresh z is N(mean, scale^2) is the business of
    `reparam.check_reparameterization(similar_sampler(VAE))`.
    """
    probe = inputs["probe"]
    vae, x = _probe_vae(vae_class, "kl", probe), probe["x"]
    return {
        "mean": [vae.generate_similar(x, noise=False), vae.generate_similar(x, noise=False)],
        "default": vae.generate_similar(x),
        "noisy": vae.generate_similar(x, noise=True),
    }


@check_generate_similar.inputs
def _generate_similar_inputs() -> dict:
    return {"probe": _probe(64)}


@check_generate_similar.judge
def _judge_generate_similar(inputs: dict, found: dict) -> None:
    probe = inputs["probe"]
    x = probe["x"]
    want = _probe_mean(probe)[0].view(x.shape)
    means = found.get("mean")
    expect(isinstance(means, list) and len(means) == 2, "generate_similar was not called")
    a = _answer(means[0], "generate_similar(x, noise=False)")
    b = _answer(means[1], "generate_similar(x, noise=False)")
    expect_shape(a, x.shape, "generate_similar(x, noise=False)")
    expect(
        _allclose(a, want, 1e-5, 1e-6) and _allclose(b, want, 1e-5, 1e-6),
        "generate_similar(x, noise=False) should decode z = mean, with no noise",
    )
    a = _answer(found.get("default"), "generate_similar(x)")
    b = _answer(found.get("noisy"), "generate_similar(x, noise=True)")
    expect_shape(a, x.shape, "generate_similar(x)")
    expect_shape(b, x.shape, "generate_similar(x, noise=True)")
    expect(
        not _allclose(a, want, 0, 1e-3),
        "generate_similar(x) should add noise: noise=True by default",
    )
    expect(not _allclose(a, b, 0, 0), "two calls with noise=True returned the same images")


# ---------------------------------------------------------------- the conv architecture


@contextlib.contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Modules in eval mode and no gradient tracking within; their modes restored afterwards."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def _load(found: dict, key: str, what: str) -> program.Program:
    """The exported program under `key`, or CheckFailed saying why it cannot run."""
    payload = found.get(key)
    expect(isinstance(payload, dict), f"the {what} was not exported")
    try:
        return program.load_program(payload)
    except program.ProgramError as exc:
        raise CheckFailed(f"the exported {what} cannot be run: {exc}") from None


def _run(prog: program.Program, x: torch.Tensor, what: str) -> Any:
    """prog(x), or CheckFailed naming the program."""
    try:
        return prog(x)
    except program.ProgramError as exc:
        raise CheckFailed(f"the {what} failed on inputs of shape {tuple(x.shape)}: {exc}") from None


def _convolutions(payload: dict, transposed: bool) -> list[tuple]:
    """(in, out, kernel, stride) of the program's (transposed) convolutions, in order."""
    layers = []
    for node in payload["nodes"]:
        if node["op"] != "aten.convolution.default":
            continue
        args = node["args"]
        if len(args) < 9 or bool(args[6]) != transposed:
            continue
        weight = args[1]
        name = weight.get("tensor") if isinstance(weight, dict) else None
        if name not in payload["tensors"]:
            layers.append(("a weight computed in the graph",))
            continue
        shape, groups = tuple(payload["tensors"][name].shape), int(args[8])
        if len(shape) != 4:
            layers.append(("a convolution of weight shape", shape))
            continue
        channels = (shape[0], shape[1] * groups) if transposed else (shape[1] * groups, shape[0])
        layers.append((*channels, shape[2:], tuple(args[3])))
    return layers


_LINEAR_OPS = {"aten.addmm.default": 2, "aten.mm.default": 1}  # op: the index of its weight
_TRANSPOSES = ("aten.permute.default", "aten.t.default", "aten.transpose.int")
# Ops that only reshape or copy: a ReLU after a reshape still follows the layer before it.
_SHAPE_OPS = (
    "aten.view.default",
    "aten.reshape.default",
    "aten._unsafe_view.default",
    "aten.clone.default",
    "aten.alias.default",
    "aten.flatten.using_ints",
    "aten.unflatten.int",
)
_RELU = "aten.relu.default"


def _linears(payload: dict) -> list[tuple]:
    """(in, out, node index) of the program's linear layers (x W^T + b), in order."""
    nodes, layers = payload["nodes"], []
    for index, node in enumerate(nodes):
        at = _LINEAR_OPS.get(node["op"])
        if at is None or len(node["args"]) <= at:
            continue
        weight, transposed = node["args"][at], False
        if isinstance(weight, dict) and isinstance(weight.get("ref"), int):
            source = nodes[weight["ref"]] if 0 <= weight["ref"] < index else {}
            if source.get("op") in _TRANSPOSES and source.get("args"):
                weight, transposed = source["args"][0], True
        name = weight.get("tensor") if isinstance(weight, dict) else None
        shape = tuple(payload["tensors"][name].shape) if name in payload["tensors"] else ()
        if len(shape) != 2:
            layers.append(("a weight computed in the graph", None, index))
            continue
        layers.append((shape[1], shape[0], index) if transposed else (*shape, index))
    return layers


def _convolution_nodes(payload: dict, transposed: bool) -> list[int]:
    """The node indices of the program's (transposed) convolutions, in order."""
    return [
        i
        for i, node in enumerate(payload["nodes"])
        if node["op"] == "aten.convolution.default"
        and len(node["args"]) >= 9
        and bool(node["args"][6]) == transposed
    ]


def _refers_to(value: Any, index: int) -> bool:
    if isinstance(value, dict):
        return value.get("ref") == index
    return isinstance(value, list) and any(_refers_to(v, index) for v in value)


def _followed_by_relu(payload: dict, index: int) -> bool:
    """Whether the result of node `index` goes into a ReLU, directly or through reshapes."""
    nodes, frontier, seen = payload["nodes"], [index], set()
    while frontier:
        k = frontier.pop()
        seen.add(k)
        for j in range(k + 1, len(nodes)):
            if j in seen or not _refers_to(nodes[j]["args"], k):
                continue
            if nodes[j]["op"] == _RELU:
                return True
            if nodes[j]["op"] in _SHAPE_OPS:
                frontier.append(j)
    return False


_ORDINALS = ("first", "second", "third", "fourth")


def _expect_relus(payload: dict, layers: list[int], what: str) -> None:
    """Each of the layers (node indices) feeds a ReLU."""
    for n, index in enumerate(layers):
        expect(
            _followed_by_relu(payload, index),
            f"the {_ORDINALS[n]} {what} should be followed by a ReLU, and is not",
        )


# Codes of growing size for the decoder: its pixels must stay in [0, 1] for every one, and
# reach near 0 and near 1 (a ReLU network's pre-activations grow with |z|, so a Sigmoid
# saturates both ways: at size 1000 the reference decoder at initialisation reaches below
# 1e-13 and 1.0 under each of 200 seeds; a doubled Sigmoid stays within [0.5, 0.74]).
CODE_SIZES = (1.0, 10.0, 100.0, 1000.0)
NEAR = 0.01  # 'near 0' is below NEAR, 'near 1' above 1 - NEAR


@collect
def check_encoder_decoder(encoder: nn.Module, decoder: nn.Module, inputs: dict) -> dict:
    """Conv 1-16-32-64 (4x4, stride 2) down, transposed convs back, the linear layers and ReLUs
    the lab asks for; shapes; pixels in [0, 1] for every code, able to reach 0 and 1."""
    device = device_of(encoder)
    x = inputs["x"].to(device)
    with _eval_mode(encoder, decoder):
        mean, _ = _pair(encoder(x), "encoder(x)")  # the latent size, for the decoder's example
        return {
            "encoder": program.export_program(encoder, (x,)),
            "decoder": program.export_program(
                decoder, (torch.zeros(2, mean.shape[-1], device=device_of(decoder)),)
            ),
        }


@check_encoder_decoder.inputs
def _encoder_decoder_inputs() -> dict:
    return {"x": torch.rand(3, 1, 32, 32)}


@check_encoder_decoder.judge
def _judge_encoder_decoder(inputs: dict, found: dict) -> None:
    encoder, decoder = _load(found, "encoder", "encoder"), _load(found, "decoder", "decoder")
    want = [(1, 16, (4, 4), (2, 2)), (16, 32, (4, 4), (2, 2)), (32, 64, (4, 4), (2, 2))]
    got = _convolutions(found["encoder"], transposed=False)
    expect(
        got == want,
        f"the encoder's Conv2d layers (in, out, kernel, stride) should be {want}, got {got}",
    )
    want = [(64, 32, (4, 4), (2, 2)), (32, 16, (4, 4), (2, 2)), (16, 1, (4, 4), (2, 2))]
    got = _convolutions(found["decoder"], transposed=True)
    expect(got == want, f"the decoder's ConvTranspose2d layers should be {want}, got {got}")
    mean, scale = _pair(_run(encoder, inputs["x"], "encoder"), "encoder(x)")
    expect(
        mean.dim() == 2, f"the mean of encoder(x) should be (3, latent), got {tuple(mean.shape)}"
    )
    latent = mean.shape[-1]
    expect_shape(mean, (3, latent), "the mean of encoder(x) for x of shape (3, 1, 32, 32)")
    expect_shape(scale, (3, latent), "the scale of encoder(x)")
    expect(bool((scale > 0).all()), "the encoder's scale should be positive")
    encoder_payload, decoder_payload = found["encoder"], found["decoder"]
    got = [layer[:2] for layer in _linears(encoder_payload)]
    want = [(1024, 128), (128, latent), (128, latent)]
    expect(
        got == want,
        f"the encoder's linear layers (in, out) should be {want}: Linear(1024, 128), then the two "
        f"heads of the LatentLayer; got {got}",
    )
    _expect_relus(
        encoder_payload, _convolution_nodes(encoder_payload, False), "Conv2d of the encoder"
    )
    _expect_relus(encoder_payload, [_linears(encoder_payload)[0][2]], "Linear of the encoder")
    got = [layer[:2] for layer in _linears(decoder_payload)]
    want = [(latent, 128), (128, 1024)]
    expect(got == want, f"the decoder's linear layers (in, out) should be {want}, got {got}")
    _expect_relus(
        decoder_payload, [layer[2] for layer in _linears(decoder_payload)], "Linear of the decoder"
    )
    _expect_relus(
        decoder_payload,
        _convolution_nodes(decoder_payload, True)[:2],
        "ConvTranspose2d of the decoder",
    )
    # codes of every size, drawn by the judge: an unbounded or a squeezed output shows
    z = torch.randn(16 * len(CODE_SIZES), latent)
    z = z * torch.tensor(CODE_SIZES).repeat_interleave(16)[:, None]
    x_hat = expect_tensor(_run(decoder, z, "decoder"), "decoder(z)")
    expect_shape(x_hat, (len(z), 1, 32, 32), f"decoder(z) for z of shape ({len(z)}, {latent})")
    inside = bool(((x_hat >= 0) & (x_hat <= 1)).all())
    low, high = x_hat.min().item(), x_hat.max().item()
    expect(
        inside,
        f"decoder(z) should be in [0, 1] for every code z: end in Sigmoid; for codes of size up to "
        f"{CODE_SIZES[-1]:g} its pixels range over [{low:.3g}, {high:.3g}]",
    )
    expect(
        low < NEAR and high > 1 - NEAR,
        f"decoder(z) should be able to reach both 0 and 1 (a Sigmoid of the last layer's output); "
        f"for codes of size up to {CODE_SIZES[-1]:g} its pixels stay within "
        f"[{low:.3g}, {high:.3g}]",
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
    """A tiny VAE on 1x4x4 images with a 3-d latent: `encoder`, `decoder`, `generate_similar`.

    `weights` (from `tiny_weights`) sets its parameters; without, they are drawn as usual."""

    def __init__(self, weights: dict | None = None) -> None:
        super().__init__()
        self.encoder = _TinyEncoder()
        self.decoder = nn.Sequential(nn.Linear(3, 16), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4)))
        self.loss = "kl"
        if weights is not None:
            with torch.no_grad():
                self.encoder.linear.weight.copy_(weights["encoder_weight"])
                self.encoder.linear.bias.copy_(weights["encoder_bias"])
                self.decoder[0].weight.copy_(weights["decoder_weight"])
                self.decoder[0].bias.copy_(weights["decoder_bias"])

    def generate_similar(self, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
        mean, scale = self.encoder(x)
        return self.decoder(mean + scale * torch.randn_like(mean) if noise else mean)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, scale = self.encoder(x)
        return self.decoder(mean + scale * torch.randn_like(mean)), _kl_reference(mean, scale)


def tiny_weights() -> dict:
    """Weights of a TinyVAE, drawn as nn.Linear draws them."""
    return {key: value.detach().clone() for key, value in _tiny_parameters(TinyVAE()).items()}


def _tiny_parameters(model: TinyVAE) -> dict:
    return {
        "encoder_weight": model.encoder.linear.weight,
        "encoder_bias": model.encoder.linear.bias,
        "decoder_weight": model.decoder[0].weight,
        "decoder_bias": model.decoder[0].bias,
    }


def _tiny_decode(weights: dict, z: torch.Tensor) -> torch.Tensor:
    """The judge's TinyVAE decoder, in float64: (n, 3) -> (n, 1, 4, 4)."""
    return torch.sigmoid(_linear(z, weights["decoder_weight"], weights["decoder_bias"])).view(
        -1, 1, 4, 4
    )


def _tiny_means(weights: dict, x: torch.Tensor) -> torch.Tensor:
    """The judge's TinyVAE mean codes of (n, 1, 4, 4) images, in float64."""
    return _linear(x.flatten(1), weights["encoder_weight"], weights["encoder_bias"])


def _images_out(value: Any, n: int, what: str) -> torch.Tensor:
    images = _answer(value, what)
    expect_shape(images, (n, 1, 4, 4), f"{what} for 1x4x4 images")
    return images


ALPHAS = (0.0, 1.0, 0.3)


@collect
def check_mix_images(mix_images: Callable, inputs: dict) -> dict:
    """[x1, decoded z1, decoded (1 - alpha) z1 + alpha z2, decoded z2, x2], z = the means."""
    model = TinyVAE(inputs["weights"])
    return {"images": [mix_images(model, inputs["x1"], inputs["x2"], a) for a in ALPHAS]}


@check_mix_images.inputs
def _mix_images_inputs() -> dict:
    return {"weights": tiny_weights(), "x1": torch.rand(1, 4, 4), "x2": torch.rand(1, 4, 4)}


@check_mix_images.judge
def _judge_mix_images(inputs: dict, found: dict) -> None:
    weights, x1, x2 = inputs["weights"], inputs["x1"], inputs["x2"]
    z1, z2 = _tiny_means(weights, torch.stack([x1, x2]))
    mixes = found.get("images")
    expect(isinstance(mixes, list) and len(mixes) == len(ALPHAS), "mix_images was not called")
    for alpha, images in zip(ALPHAS, mixes, strict=True):
        images = _images_out(images, 5, f"mix_images(alpha={alpha})")
        expect(
            core.equal(images[0], x1) and core.equal(images[4], x2),
            "images 0 and 4 should be x1 and x2",
        )
        want = _tiny_decode(weights, torch.stack([z1, (1 - alpha) * z1 + alpha * z2, z2]))
        for index, row in ((1, 0), (3, 2)):
            core.expect_close(
                images[index],
                want[row],
                f"mix_images(alpha={alpha}): image {index} should be the reconstruction of "
                f"x{1 + row // 2} from z = mean (no noise)",
                rtol=1e-5,
                atol=1e-6,
            )
        core.expect_close(
            images[2],
            want[1],
            f"with alpha = {alpha} the middle image should decode (1 - alpha) z1 + alpha z2: "
            "alpha = 0 gives the reconstruction of x1, alpha = 1 that of x2",
            rtol=1e-5,
            atol=1e-6,
        )


TRAVERSALS = ((0, 9), (2, 9), (1, 5))  # (dim, steps); steps 9 is the default, left out


@collect
def check_traverse(traverse: Callable, inputs: dict) -> dict:
    """Decoded mean code of x with coordinate `dim` set to each of `steps` values in [-1, 1]."""
    model, x = TinyVAE(inputs["weights"]), inputs["x"]
    images = []
    for dim, steps in TRAVERSALS:
        args = (model, x, dim) if steps == 9 else (model, x, dim, steps)
        images.append(traverse(*args))
    return {"images": images}


@check_traverse.inputs
def _traverse_inputs() -> dict:
    return {"weights": tiny_weights(), "x": torch.rand(1, 4, 4)}


@check_traverse.judge
def _judge_traverse(inputs: dict, found: dict) -> None:
    weights, x = inputs["weights"], inputs["x"]
    traversals = found.get("images")
    expect(
        isinstance(traversals, list) and len(traversals) == len(TRAVERSALS),
        "traverse was not called",
    )
    for (dim, steps), images in zip(TRAVERSALS, traversals, strict=True):
        images = _images_out(images, steps, f"traverse(model, x, dim={dim}, steps={steps})")
        z = _tiny_means(weights, x[None]).repeat(steps, 1)
        z[:, dim] = torch.linspace(-1, 1, steps, dtype=torch.float64)
        core.expect_close(
            images,
            _tiny_decode(weights, z),
            f"traverse(dim={dim}, steps={steps}) should decode the mean code of x with "
            f"coordinate {dim} replaced by each of torch.linspace(-1, 1, {steps}), the others kept",
            rtol=1e-5,
            atol=1e-6,
        )


# ---------------------------------------------------------------- the trained models


def pad_images(images: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) images in [0, 1] as the lab pads them: (N, 1, 32, 32), two zeros each side."""
    return F.pad(images, (2, 2, 2, 2)).unsqueeze(1)


def held_out_padded() -> torch.Tensor:
    """The 2000 held-out MNIST test images, padded as the lab pads them (the judge's test set)."""
    from dgmlab.heldout import held_out_test_images

    return pad_images(held_out_test_images())


def _batch_size(*programs: program.Program) -> int:
    """The batch the programs all take: SCORE_BATCH, or the fixed batch of a static export."""
    fixed = {p.inputs[0].shape[0] for p in programs if p.batch != "dynamic" and p.inputs}
    expect(len(fixed) <= 1, f"the exported encoder and decoder take different batches {fixed}")
    return fixed.pop() if fixed else SCORE_BATCH


def negative_elbo(
    encode: Callable[[torch.Tensor], Any],
    decode: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    batch_size: int = SCORE_BATCH,
) -> tuple[float, float]:
    """(loss, KL) per image: 1/2 ||x - decode(z)||^2 of one z ~ q(z|x), plus the analytic KL.

    `encode` returns (mean, scale); z is drawn here, from the caller's (seeded) generator."""
    squared, kls = [], []
    for batch in x.split(batch_size):
        mean, scale = _pair(encode(batch), "the encoder")
        expect(
            mean.dim() == 2 and mean.shape[0] == len(batch) and scale.shape == mean.shape,
            f"the encoder should return (mean, scale), each (batch, latent), got "
            f"{tuple(mean.shape)} and {tuple(scale.shape)}",
        )
        mean, scale = mean.float(), scale.float()
        z = oracle.posterior_sample(mean, scale)
        x_hat = expect_tensor(decode(z), "the decoder's output")
        expect_shape(x_hat, batch.shape, "the decoder's output")
        squared.append(0.5 * (x_hat.double() - batch.double()).pow(2).flatten(1).sum(1))
        kls.append(oracle.kl_to_prior(mean, scale).sum(1))
    rec, kl = torch.cat(squared).mean().item(), torch.cat(kls).mean().item()
    return rec + kl, kl


# Exports of the last few networks: the public and the hidden checks of one test cell export the
# same two trained networks, and an export takes a second or more.
_EXPORTS: list[tuple[tuple, nn.Module, dict]] = []  # (fingerprint, the module kept alive, payload)
EXPORT_CACHE = 4


def _fingerprint(module: nn.Module, example: torch.Tensor) -> tuple:
    """What an export of `module` on `example` depends on that can change between two calls: the
    submodules (replaced, or switched between train and eval mode), every parameter and buffer
    (an optimizer step or any in-place write bumps its version), the example's shape and type.
    A Python attribute that forward reads is not seen; within one test cell nothing runs between
    the calls but the checks."""
    tensors = [*module.parameters(), *module.buffers()]
    return (
        tuple((id(m), type(m), m.training) for m in module.modules()),
        tuple((id(t), t._version, t.data_ptr(), t.dtype, tuple(t.shape)) for t in tensors),
        (tuple(example.shape), example.dtype, example.device),
    )


def _exported(module: nn.Module, example: torch.Tensor) -> dict:
    """program.export_program(module, (example,)), reused while the module is unchanged (the
    cache holds the module, so that its id cannot be reused by another)."""
    key = _fingerprint(module, example)
    for cached, _, payload in _EXPORTS:
        if cached == key:
            return payload
    payload = program.export_program(module, (example,))
    _EXPORTS.insert(0, (key, module, payload))
    del _EXPORTS[EXPORT_CACHE:]
    return payload


def max_loss_of(estimator: str, bar: str) -> float:
    """The threshold of the named bar; the hidden one is known only where the grader runs."""
    return core.named_bar(bar, PUBLIC_MAX_LOSS, "elbo", "HIDDEN_MAX_LOSS")[estimator]


@collect
def check_trained_vae(
    model: nn.Module,
    x_test: torch.Tensor,
    inputs: dict,
    estimator: str | None = None,
    bar: str = "public",
    max_loss: float | None = None,
    min_kl: float | None = None,
) -> dict:
    """On the held-out test images: loss per image below the bar of `estimator`, KL above the floor.

    The encoder and the decoder are exported separately; the judge runs them on the held-out
    images, padded as the lab pads them, with its own sampling. `x_test`, the notebook's padded
    test images, only supplies the example batch of the export."""
    kind = getattr(model, "loss", None)
    expect(kind in ESTIMATORS, f"model.loss should be 'mc' or 'kl', got {kind!r}")
    expect(
        estimator is None or kind == estimator,
        f"this test wants the model trained with loss={estimator!r}, got model.loss={kind!r}",
    )
    x_test = expect_tensor(x_test, "x_test")
    expect(
        x_test.dim() == 4
        and tuple(x_test.shape[1:]) == (1, 32, 32)
        and len(x_test) >= EXPORT_BATCH,
        "x_test should be the MNIST test images padded to (N, 1, 32, 32)",
    )
    encoder, decoder = model.encoder, model.decoder
    example = x_test[:EXPORT_BATCH].detach().float().to(device_of(encoder))
    with _eval_mode(model):
        mean, _ = _pair(encoder(example), "model.encoder(x)")
        code = torch.zeros(EXPORT_BATCH, mean.shape[-1], device=device_of(decoder))
        return {
            "loss": kind,
            "encoder": _exported(encoder, example),
            "decoder": _exported(decoder, code),
        }


@check_trained_vae.judge
def _judge_trained_vae(
    inputs: dict,
    found: dict,
    estimator: str | None = None,
    bar: str = "public",
    max_loss: float | None = None,
    min_kl: float | None = None,
) -> str:
    expect(
        estimator in ESTIMATORS,
        f"check_trained_vae needs estimator='mc' or 'kl' (its latent loss), got {estimator!r}",
    )
    expect(bar in BARS, f"bar should be 'public' or 'hidden', got {bar!r}")
    max_loss = max_loss_of(estimator, bar) if max_loss is None else max_loss
    min_kl = MIN_KL[estimator] if min_kl is None else min_kl
    encoder, decoder = _load(found, "encoder", "encoder"), _load(found, "decoder", "decoder")
    loss, kl = negative_elbo(
        lambda x: _run(encoder, x, "exported encoder"),
        lambda z: _run(decoder, z, "exported decoder"),
        held_out_padded(),
        _batch_size(encoder, decoder),
    )
    core.expect_test_scores(loss, kl, max_loss, min_kl)
    # shown with the pass (a self-check's, a public call's feedback): where the model stands
    shown = f" (threshold {max_loss})" if bar == "public" else ""  # a hidden bar stays hidden
    return f"loss={estimator!r}: {loss:.2f} nats per held-out test image{shown}, KL {kl:.2f}"


# ---------------------------------------------------------------- per-example inference

# A decoder the judge can solve: linear, x | z ~ N(W z + b, I) on 1x2x3 images, z ~ N(0, I) in 3
# dimensions. Its posterior is Gaussian with precision I + W^T W, and the best diagonal Gaussian
# q (the highest ELBO) has the posterior's mean and the variances 1 / (I + W^T W)_jj; the exact
# ELBO of any (mean, log_var) is known in closed form (`_linear_negative_elbo`). The check judges
# what the student's fit reached, as a gap in nats to that optimum: a quadratic near it, so the
# noise of a one-sample stochastic fit costs little there, and a mistake costs nats.
FIT_PIXELS, FIT_LATENT, FIT_IMAGES = 6, 3, 16
FIT_SHAPE = (1, 2, 3)
FIT_STEPS, FIT_LR = 500, 0.02  # what the check asks of fit_per_example
FIT_STARTS = ("prior", "random")
FIT_COLUMN = 2.0  # the length of every column of W: the best variances are all 1 / (1 + 4)
# The gap of the batch, in nats per image, above the optimum. Measured with this check, 300 seeds
# (inputs and collection) per start: the reference solution (Adam on the one-sample negative
# ELBO) ends at most 0.114 above it from the random start (median 0.043; Adam's noise floor, which more steps at the
# same learning rate do not remove) and 0.073 from the prior (median 0.031); the start is 5-40
# nats away, and the closest mistakes of tests/test_variants_04.py (the KL left out, exp(log_var)
# as the scale, the KL weighed 1/N) end 0.56 or more away (60 secrets each). 0.25 leaves a factor
# 2.2 above the worst reference run and 2.3 below those mistakes' best; the slow tier re-runs
# them under 300 secrets. The last 50 losses were within 0.29 of the optimum's (LOSS_TOL 1.0).
FIT_TOL = 0.25
LOSS_TOL = 1.0  # the last 50 losses against the optimum's negative ELBO, nats per image


def _linear_decoder(inputs: dict) -> nn.Module:
    """The judge's decoder as a module: nn.Linear(3, 6) with the grader's weights, then 1x2x3."""
    decoder = nn.Sequential(nn.Linear(FIT_LATENT, FIT_PIXELS), nn.Unflatten(1, FIT_SHAPE))
    with torch.no_grad():
        decoder[0].weight.copy_(inputs["weight"])
        decoder[0].bias.copy_(inputs["bias"])
    return decoder


def _linear_negative_elbo(inputs: dict, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """The exact negative ELBO per image of q = N(mean, exp(log_var)) under the linear decoder,
    less the constant (pixels / 2) ln 2 pi: E_q 1/2 ||x - W z - b||^2 + KL(q || N(0, I))."""
    w, b = inputs["weight"].double(), inputs["bias"].double()
    x, mean, log_var = inputs["x"].flatten(1).double(), mean.double(), log_var.double()
    residual = x - mean @ w.T - b
    var = log_var.exp()
    expected_squares = 0.5 * residual.pow(2).sum(1) + 0.5 * (var * w.pow(2).sum(0)).sum(1)
    return expected_squares + oracle.kl_to_prior(mean, var.sqrt()).sum(1)


def _linear_optimum(inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, log_var) of the best diagonal Gaussian q of every image, in float64."""
    w, b, x = inputs["weight"].double(), inputs["bias"].double(), inputs["x"].flatten(1).double()
    precision = torch.eye(FIT_LATENT, dtype=torch.float64) + w.T @ w
    mean = torch.linalg.solve(precision, w.T @ (x - b).T).T
    return mean, -torch.diagonal(precision).log().expand_as(mean)


@contextlib.contextmanager
def _lent_kl(fn: Callable, kl: Callable | None) -> Iterator[None]:
    """Within: the names `fn` sees bound to the student's `kl` bound to the reference instead, so
    that a mistake in kl_latent_loss is counted by its own check only."""
    namespace = getattr(fn, "__globals__", None)
    lent = {}
    if isinstance(namespace, dict) and kl is not None:
        lent = {name: value for name, value in namespace.items() if value is kl}
        namespace.update(dict.fromkeys(lent, _kl_loss))
    try:
        yield
    finally:
        if isinstance(namespace, dict):
            namespace.update(lent)


@collect
def check_fit_per_example(
    fit_per_example: Callable,
    kl_latent_loss: Callable | None = None,
    *,
    inputs: dict,
    start: str = "prior",
) -> dict:
    """fit_per_example(decoder, x, mean, log_var, steps, lr) -> (mean, log_var, losses): free
    parameters of q per image, fitted on the ELBO with the decoder frozen. Given the student's
    kl_latent_loss, the fit runs with the reference in its place."""
    decoder = _linear_decoder(inputs)
    mean, log_var = inputs["starts"][start]
    with _lent_kl(fit_per_example, kl_latent_loss):
        result = fit_per_example(
            decoder, inputs["x"], mean.clone(), log_var.clone(), steps=FIT_STEPS, lr=FIT_LR
        )
    return {
        "result": result,
        "weight": decoder[0].weight.detach().clone(),
        "bias": decoder[0].bias.detach().clone(),
    }


@check_fit_per_example.inputs
def _fit_inputs(start: str = "prior") -> dict:
    weight = torch.randn(FIT_PIXELS, FIT_LATENT)
    weight = FIT_COLUMN * weight / weight.norm(dim=0)  # columns of one length: no ill-posed draw
    bias = 0.3 * torch.randn(FIT_PIXELS)
    codes = torch.randn(FIT_IMAGES, FIT_LATENT)
    x = codes @ weight.T + bias + torch.randn(FIT_IMAGES, FIT_PIXELS)  # drawn from the model
    shape = (FIT_IMAGES, FIT_LATENT)
    return {
        "weight": weight,
        "bias": bias,
        "x": x.view(FIT_IMAGES, *FIT_SHAPE),
        "starts": {
            "prior": (torch.zeros(shape), torch.zeros(shape)),
            "random": (torch.randn(shape), torch.empty(shape).uniform_(-2, 1)),
        },
    }


def _fit_hint(inputs: dict, mean: torch.Tensor, log_var: torch.Tensor, start: str) -> str:
    """What a known mistake looks like in the fitted parameters, in words, or ''."""
    start_mean, start_log_var = (t.double() for t in inputs["starts"][start])
    best_mean, best_log_var = _linear_optimum(inputs)
    if _allclose(log_var, start_log_var, 0, 1e-6):
        if _allclose(mean, start_mean, 0, 1e-6):
            return "; neither mean nor log_var moved from where they started"
        return "; log_var never moved from where it started: is it optimised, with the noise in z?"
    if bool((log_var > 0).all()):
        gap = _linear_negative_elbo(inputs, mean, 2 * log_var.double().log()) - (
            _linear_negative_elbo(inputs, best_mean, best_log_var)
        )
        if gap.mean().item() <= FIT_TOL:
            return "; the second value looks like the scale: return the log-variance"
    if _allclose(mean, best_mean, 0, 0.3) and bool((log_var.double() - best_log_var > 1).all()):
        return "; the means fit but the variances stay too large: is there noise in z at all?"
    return ""


@check_fit_per_example.judge
def _judge_fit(inputs: dict, found: dict, start: str = "prior") -> None:
    expect(start in FIT_STARTS, f"start should be one of {FIT_STARTS}, got {start!r}")
    result = found.get("result")
    call = "fit_per_example(decoder, x, mean, log_var, steps, lr)"
    if result is None:
        raise CheckFailed(f"not implemented yet: {call} returned None")
    expect(
        isinstance(result, list) and len(result) == 3,
        f"{call} should return (mean, log_var, losses), three values",
    )
    mean = _answer(result[0], "the fitted mean")
    log_var = _answer(result[1], "the fitted log_var")
    shape = (FIT_IMAGES, FIT_LATENT)
    expect_shape(mean, shape, f"the fitted mean of {FIT_IMAGES} images with a 3-d latent")
    expect_shape(log_var, shape, "the fitted log_var")
    losses = result[2]
    if isinstance(losses, list) and all(isinstance(v, float | int) for v in losses):
        losses = torch.tensor(losses, dtype=torch.float64)
    losses = _answer(losses, "the losses").double().flatten()
    unchanged = [
        isinstance(found.get(k), torch.Tensor) and core.equal(found[k], inputs[k])
        for k in ("weight", "bias")
    ]
    expect(
        all(unchanged),
        "the decoder's weights changed: keep the decoder frozen and optimise only the per-image "
        "mean and log_var",
    )
    expect(
        bool(torch.isfinite(mean).all() and torch.isfinite(log_var).all()),
        "the fitted mean and log_var should be finite",
    )
    best = _linear_negative_elbo(inputs, *_linear_optimum(inputs))
    gap = _linear_negative_elbo(inputs, mean, log_var) - best
    at_start = _linear_negative_elbo(inputs, *inputs["starts"][start]) - best
    expect(
        gap.mean().item() <= FIT_TOL,
        f"after {FIT_STEPS} steps of lr {FIT_LR} the fitted q is {gap.mean().item():.2f} nats per "
        f"image below the best ELBO of a diagonal Gaussian (it started {at_start.mean().item():.2f} "
        f"below; expected within {FIT_TOL}): each image's q should climb the ELBO, one-sample "
        f"z = mean + exp(log_var / 2) * eps, with the decoder frozen"
        f"{_fit_hint(inputs, mean, log_var, start)}",
    )
    expect(
        losses.numel() == FIT_STEPS and bool(torch.isfinite(losses).all()),
        f"the losses should hold one finite number per step, {FIT_STEPS}; got {losses.numel()}",
    )
    # the loss the fit minimised, the batch mean of the one-sample negative ELBO, with or without
    # the Gaussian's constant (pixels / 2) ln 2 pi: near the optimum's at the end
    last = losses[-50:].mean().item()
    constant = FIT_PIXELS / 2 * math.log(2 * math.pi)
    want = best.mean().item()
    expect(
        min(abs(last - want), abs(last - constant - want)) <= LOSS_TOL,
        f"the last 50 losses average {last:.2f}, but the batch mean of the negative ELBO at the "
        f"end is about {want:.2f} ({want + constant:.2f} with the Gaussian's constant): the losses "
        "should be the batch mean of the loss minimised at each step",
    )
