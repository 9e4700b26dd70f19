"""Checks of the convolutional VAE lab (labs/03-conv-vae.md).

Every check is a `core.Check`: the student's kernel only collects evidence (what `vae_loss` and
the interpolations return on inputs the grader drew, the model's encoder and decoder exported as
data-only programs), and the judge decides in the grader's process. `vae_loss` is compared with
exact values that the judge computes; the model with shapes, ranges, the eval-mode sampler's
statistics and a zero-parameter VAE, all run by the judge on its exported encoder and decoder;
the interpolations with their closed form; the trained model with the negative ELBO per image on
the held-out test images, one posterior sample per image drawn by the judge, never z = mu.
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

from autograder.checks import core, evidence, program, stats
from autograder.checks.core import CheckFailed, collect, expect, expect_shape, expect_tensor
from autograder.checks.reparam import (
    check_reparameterization,
    check_reparameterization_gradients,
)
from autograder.data import mnist_test_images

__all__ = [
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
LATENTS = (2, 16)  # the latent sizes the model checks build
BATCH = 5  # images per batch in check_conv_vae

# Negative ELBO per image (nats) on the 2000 held-out MNIST test images, one posterior sample per
# image drawn by the judge, as negative_elbo computes. The public bar follows the issue's: the
# seed's setting (latent 16, Adam 1e-4, batch 64, 3 epochs) should pass it. On all 10 000 test
# images the reference in that setting scored 120.25, 120.45, 121.68 (training seeds 0-2, CPU)
# and the old bar was 125.0, 3.3 nats above the worst; on the held-out images, from the harder
# second half of MNIST's test set, the same models score 121.88, 122.12, 123.53, and the bar
# keeps 3.5 nats above the worst (the judge's sampling moves a score by sd 0.16). The lab's own
# training clears it by more than 10 nats; the hidden bar is in autograder.hidden.
PUBLIC_MAX_NELBO = 127.0


def _tensor(value: Any, what: str) -> torch.Tensor:
    """`value` if it is a tensor; an evidence placeholder of another object is named."""
    if isinstance(value, dict) and evidence.OBJECT in value:
        raise CheckFailed(f"{what} should be a torch.Tensor, got {value[evidence.OBJECT]}")
    return expect_tensor(value, what)


def _same(got: Any, want: torch.Tensor, rtol: float, atol: float) -> bool:
    """`got` is a tensor of want's shape, close to it in float64 (no silent broadcasting)."""
    return (
        isinstance(got, torch.Tensor)
        and tuple(got.shape) == tuple(want.shape)
        and core.allclose(got.detach().double(), want.double(), rtol=rtol, atol=atol)
    )


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


def _call_loss(vae_loss: Callable, *args: torch.Tensor) -> dict:
    """What vae_loss returns on copies of the arguments, with the name of its type."""
    result = vae_loss(*(a.clone() for a in args))
    return {"terms": result, "kind": type(result).__name__}


def _loss_terms(call: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The two one-number tensors of a vae_loss call's evidence, or why they are not."""
    expect(isinstance(call, dict) and "terms" in call, "vae_loss was not called")
    result, kind = call["terms"], call.get("kind")
    expect(
        not isinstance(result, torch.Tensor),
        "vae_loss returned one tensor: return the two terms (reconstruction, KL), not their sum",
    )
    expect(
        isinstance(result, list) and len(result) == 2,
        f"vae_loss should return two terms, (reconstruction, KL), got {kind}",
    )
    recon = _tensor(result[0], "the reconstruction term")
    kl = _tensor(result[1], "the KL term")
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


def _expect_terms(call: Any, output, mu, log_var, images) -> None:
    """The evidence of vae_loss(output, mu, log_var, images) holds the exact two sums."""
    recon, kl = _loss_terms(call)
    want_recon, want_kl = _reference_terms(output, mu, log_var, images)
    swapped, _ = _reference_terms(images.clamp(1e-12, 1 - 1e-12), mu, log_var, output)
    got_recon, got_kl = recon.item(), kl.item()
    if _close(got_recon, swapped) and not _close(got_recon, want_recon):
        raise CheckFailed(
            "the reconstruction term has input and target swapped: "
            "F.binary_cross_entropy(output, images), the prediction first"
        )
    total, batch = want_recon + want_kl, len(images)
    expect(
        _close(got_recon, want_recon),
        _diagnose(got_recon, want_recon, total, (output.numel(), batch), "reconstruction"),
    )
    expect(_close(got_kl, want_kl), _diagnose(got_kl, want_kl, total, (mu.numel(), batch), "KL"))


def _random_inputs(batch: int, latent: int) -> dict:
    return {
        "output": 0.01 + 0.98 * torch.rand(batch, 1, 28, 28),
        "mu": 1.5 * torch.randn(batch, latent),
        "log_var": torch.randn(batch, latent),
        "images": torch.rand(batch, 1, 28, 28),  # grey levels, as the lab feeds them
    }


def _args(case: dict) -> tuple[torch.Tensor, ...]:
    return tuple(case[k] for k in ("output", "mu", "log_var", "images"))


@collect
def check_vae_loss(vae_loss: Callable, inputs: dict) -> dict:
    """Exact (reconstruction, KL) sums on random inputs, and 784 ln 2 nats for an all-zero VAE."""
    found = {name: _call_loss(vae_loss, *_args(inputs[name])) for name in ("batch", "single")}
    # A VAE whose parameters are all zero: Bernoulli means 0.5, mu = 0, log_var = 0.
    images = inputs["zero_images"]
    zeros = torch.zeros(len(images), 16)
    found["zero"] = _call_loss(vae_loss, torch.full_like(images, 0.5), zeros, zeros, images)
    return found


@check_vae_loss.inputs
def _vae_loss_inputs() -> dict:
    return {
        "batch": _random_inputs(4, 3),
        "single": _random_inputs(1, 16),
        "zero_images": torch.rand(3, 1, 28, 28),
    }


@check_vae_loss.judge
def _judge_vae_loss(inputs: dict, found: dict) -> None:
    for name in ("batch", "single"):
        _expect_terms(found.get(name), *_args(inputs[name]))
    recon, kl = _loss_terms(found.get("zero"))
    n = len(inputs["zero_images"])
    expect(
        _close(recon.item() / n, NATS_ZERO_VAE),
        f"with all Bernoulli means 0.5 the reconstruction term should be 784 ln 2 = "
        f"{NATS_ZERO_VAE:.3f} nats per image, got {recon.item() / n:.3f}",
    )
    expect(abs(kl.item()) < 1e-6, f"KL(N(0, I) || N(0, I)) should be 0, got {kl.item():.6f}")


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
    expect(
        _same(found.get("output_grad"), want, rtol=1e-3, atol=1e-4),
        "d reconstruction / d output should be (output - images) / (output (1 - output))",
    )
    expect(_same(found.get("mu_grad"), mu, rtol=1e-5, atol=1e-5), "d KL / d mu should be mu")
    expect(
        _same(found.get("log_var_grad"), 0.5 * (log_var.exp() - 1), rtol=1e-5, atol=1e-5),
        "d KL / d log_var should be (exp(log_var) - 1) / 2",
    )


# ---------------------------------------------------------------------------------------------
# the model: the kernel runs it and exports its encoder and decoder; the judge runs the exports


def _build(model_class: Callable[..., Any], latent: int, device: Any) -> nn.Module:
    model = model_class(latent_features=latent)
    expect(isinstance(model, nn.Module), "ConvVAE(latent_features=...) should be an nn.Module")
    expect(len(list(model.parameters())) > 0, "ConvVAE has no parameters: define its layers")
    return model.to(device)


def _expect_encoded(result: Any, batch: int, latent: int | None) -> tuple[torch.Tensor, ...]:
    """encoder(x) as a checked (mu, log_var, z), each of shape (batch, latent)."""
    expect(
        isinstance(result, tuple | list) and len(result) == 3,
        "encoder(x) should return (mu, log_var, z)",
    )
    tensors = tuple(_tensor(v, n) for v, n in zip(result, ("mu", "log_var", "z"), strict=True))
    if latent is None:  # a trained model: any latent size, the same for all three
        latent = tensors[0].shape[-1] if tensors[0].dim() == 2 else -1
        expect(latent > 0, "mu should have shape (B, latent_features)")
    for value, name in zip(tensors, ("mu", "log_var", "z"), strict=True):
        expect_shape(value, (batch, latent), f"encoder(x)'s {name}")
    return tensors


def _expect_decoded(x_hat: Any, batch: int, bounded: bool = True) -> torch.Tensor:
    """decoder(z), checked: (batch, 1, 28, 28), and unless not `bounded` finite, in [0, 1]."""
    x_hat = _tensor(x_hat, "decoder(z)")
    expect_shape(x_hat, (batch, 1, 28, 28), "decoder(z)")
    if not bounded:
        return x_hat
    expect(core.isfinite(x_hat).all().item(), "decoder(z) contains NaN or inf")
    expect(
        x_hat.min().item() >= 0 and x_hat.max().item() <= 1,
        "decoder(z) should return Bernoulli means in [0, 1]: end with a sigmoid",
    )
    return x_hat


def _expect_forward(result: Any, batch: int, latent: int) -> None:
    expect(
        isinstance(result, tuple | list) and len(result) == 3,
        "forward(x) should return (x_hat, mu, log_var)",
    )
    for value, name, shape in zip(
        result,
        ("x_hat", "mu", "log_var"),
        ((batch, 1, 28, 28), (batch, latent), (batch, latent)),
        strict=True,
    ):
        expect_shape(_tensor(value, name), shape, f"forward(x)'s {name}")


def _export(model: nn.Module, x: torch.Tensor, z: torch.Tensor, forward: bool = False) -> dict:
    """The model's encoder and decoder (and forward) as programs, traced in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            programs = {
                "encoder": program.export_program(model.encoder, (x,)),
                "decoder": program.export_program(model.decoder, (z,)),
            }
            if forward:
                programs["forward"] = program.export_program(model, (x,))
    finally:
        model.train(was_training)
    return programs


def _load(payload: Any, what: str) -> program.Program:
    """The program the kernel exported, validated; CheckFailed if it is missing or invalid."""
    expect(payload is not None, f"{what} was not exported")
    try:
        return program.load_program(payload)
    except program.ProgramError as exc:
        raise CheckFailed(f"{what} could not be read back: {exc}") from None


def _run(prog: program.Program, what: str, x: torch.Tensor) -> Any:
    """Run an exported program here on the grader's batch `x`, without gradients. A model that
    reads len(x) exports with the fixed batch size it was traced with: it runs on pieces of that
    size, the last one padded with zeros, and its rows are put together again."""
    spec = prog.inputs[0] if len(prog.inputs) == 1 else None
    dynamic = spec is None or not spec.shape or 0 in spec.dynamic_dims
    size = len(x) if dynamic else spec.shape[0]
    pieces = []
    try:
        with torch.no_grad():
            for piece in x.split(max(size, 1)):
                rows = len(piece)
                if rows < size:
                    piece = torch.cat([piece, piece.new_zeros(size - rows, *piece.shape[1:])])
                pieces.append(_rows(prog(piece), rows))
    except program.ProgramError as exc:
        raise CheckFailed(f"{what} failed on the grader's inputs: {exc}") from None
    return pieces[0] if len(pieces) == 1 else _joined(pieces, what)


def _rows(output: Any, rows: int) -> Any:
    """The first `rows` rows of every tensor of a program's output (tuples kept as tuples)."""
    if isinstance(output, tuple | list):
        return type(output)(_rows(o, rows) for o in output)
    if isinstance(output, torch.Tensor) and output.dim() > 0:
        return output[:rows]
    return output


def _joined(pieces: list, what: str) -> Any:
    """The outputs of the pieces of a batch, concatenated row by row."""
    first = pieces[0]
    if isinstance(first, tuple | list):
        expect(
            all(isinstance(p, tuple | list) and len(p) == len(first) for p in pieces),
            f"{what} returned outputs of different structures",
        )
        return type(first)(_joined([p[i] for p in pieces], what) for i in range(len(first)))
    expect(
        all(isinstance(p, torch.Tensor) and p.dim() > 0 for p in pieces),
        f"{what} should return tensors with one row per image",
    )
    try:
        return torch.cat(pieces)
    except RuntimeError:
        raise CheckFailed(f"{what} returned rows of different shapes") from None


def _convolutional(payload: dict) -> bool:
    """Whether an (already validated) program payload holds a non-transposed convolution."""
    for node in payload["nodes"]:
        if node["op"] == "aten.convolution.default":
            args = node["args"]
            transposed = args[6] if len(args) > 6 else node["kwargs"].get("transposed")
            if transposed is False:
                return True
    return False


@collect
def check_conv_vae(model_class: Callable[..., Any], device: Any = "cpu", *, inputs: dict) -> dict:
    """Shapes of encoder, decoder and forward for latent sizes 2 and 16; decoder range [0, 1]."""
    found = {}
    for case in inputs["cases"]:
        latent, x, far = case["latent"], case["x"].to(device), case["far"].to(device)
        model = _build(model_class, latent, device)
        expect(
            any(isinstance(m, nn.Conv2d) for m in model.modules()),
            "the encoder should be convolutional (nn.Conv2d layers)",
        )
        record = {}
        for mode, training in (("train", True), ("eval", False)):
            model.train(training)
            encoded = _expect_encoded(model.encoder(x.clone()), len(x), latent)
            decoded = _expect_decoded(model.decoder(encoded[2]), len(x))
            result = model(x.clone())
            _expect_forward(result, len(x), latent)
            record[mode] = {"encoded": encoded, "decoded": decoded, "forward": result}
        record["far"] = _expect_decoded(model.decoder(far), len(far))  # far from the prior's mass
        found[f"latent {latent}"] = record
        # programs at the top of the evidence: a payload nests nearly evidence.MAX_DEPTH deep
        programs = _export(model, x, encoded[2], forward=True)
        found.update({f"{part} {latent}": payload for part, payload in programs.items()})
    return found


@check_conv_vae.inputs
def _conv_vae_inputs() -> dict:
    return {
        "cases": [
            {
                "latent": latent,
                "x": torch.rand(BATCH, 1, 28, 28),
                "far": 10 * torch.randn(BATCH, latent),
            }
            for latent in LATENTS
        ]
    }


@check_conv_vae.judge
def _judge_conv_vae(inputs: dict, found: dict) -> None:
    for case in inputs["cases"]:
        latent, x, far = case["latent"], case["x"], case["far"]
        record = found.get(f"latent {latent}")
        expect(isinstance(record, dict), f"ConvVAE(latent_features={latent}) was not built")
        for mode in ("train", "eval"):  # what the model returned in the kernel, in either mode
            seen = record.get(mode)
            expect(isinstance(seen, dict), f"ConvVAE was not run in {mode} mode")
            _expect_encoded(seen.get("encoded"), len(x), latent)
            _expect_decoded(seen.get("decoded"), len(x))
            _expect_forward(seen.get("forward"), len(x), latent)
        _expect_decoded(record.get("far"), len(far))
        # the exports, run here on the grader's inputs
        encoder = _load(found.get(f"encoder {latent}"), "the exported encoder")
        expect(
            _convolutional(found[f"encoder {latent}"]),
            "the encoder should be convolutional (nn.Conv2d layers)",
        )
        decoder = _load(found.get(f"decoder {latent}"), "the exported decoder")
        forward = _load(found.get(f"forward {latent}"), "the exported forward")
        _, _, z = _expect_encoded(_run(encoder, "encoder(x)", x), len(x), latent)
        _expect_decoded(_run(decoder, "decoder(z)", z), len(x))
        _expect_decoded(_run(decoder, "decoder(z)", far), len(far))
        _expect_forward(_run(forward, "forward(x)", x), len(x), latent)


@collect
def check_conv_vae_sampling(
    model_class: Callable[..., Any], device: Any = "cpu", *, inputs: dict
) -> dict:
    """Eval mode still samples z; an all-zero VAE gives x_hat = 0.5, mu = 0, log_var = 0."""
    model = _build(model_class, 16, device).eval()
    x = inputs["images"][:8].to(device)
    with torch.no_grad():
        _, _, z = _expect_encoded(model.encoder(x.clone()), len(x), 16)
        _expect_decoded(model.decoder(z), len(x), bounded=False)  # ranges: check_conv_vae's
    return _export(model, x, z)


@check_conv_vae_sampling.inputs
def _sampling_inputs() -> dict:
    return {"images": torch.rand(SAMPLING_IMAGES, 1, 28, 28)}


def _expect_posterior_samples(encoder: program.Program, images: torch.Tensor) -> None:
    """The eval-mode encoder returns z ~ N(mu, sigma^2): fresh standard normal noise, drawn here."""
    mu, log_var, z1 = _expect_encoded(_run(encoder, "encoder(x)", images), len(images), 16)
    again = images[:256]
    _, _, z2 = _expect_encoded(_run(encoder, "encoder(x)", again), len(again), 16)
    expect(
        not core.equal(z1[: len(again)], z2),
        "encoder(x) returned the same z twice in eval mode: evaluation must use a posterior "
        "sample z = mu + sigma * eps, never z = mu",
    )
    e = (z1.double() - mu.double()) / torch.exp(0.5 * log_var.double())
    # 3 assertions of stats.C = 5.5 standard errors: false failure <= 3 * 3.8e-8 = 1.1e-7
    stats.expect_standard_normal(
        e.reshape(-1, 1), "(z - mu) / exp(log_var / 2) from encoder(x) in eval mode"
    )


@check_conv_vae_sampling.judge
def _judge_sampling(inputs: dict, found: dict) -> None:
    images = inputs["images"]
    encoder = _load(found.get("encoder"), "the exported encoder")
    decoder = _load(found.get("decoder"), "the exported decoder")
    expect(
        encoder.num_parameters > 0 and decoder.num_parameters > 0,
        "ConvVAE has no parameters: define its layers",
    )
    _expect_posterior_samples(encoder, images)  # false failure <= 1.1e-7
    for prog in (encoder, decoder):  # a VAE whose parameters are all zero (the judge's copies)
        for tensor in prog.named_parameters().values():
            tensor.zero_()
    mu, log_var, z = _expect_encoded(_run(encoder, "encoder(x)", images[:8]), 8, 16)
    x_hat = _expect_decoded(_run(decoder, "decoder(z)", z), 8, bounded=False)
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


def _expect_path(path: Any, x0: torch.Tensor, x1: torch.Tensor) -> None:
    """The evidence `path` is linear_interpolation(x0, x1) for the grader's x0 and x1."""
    shape = tuple(x0.shape)
    path = _tensor(path, "linear_interpolation(x0, x1)")
    expect_shape(path, (STEPS, *shape), "linear_interpolation(x0, x1)")
    expect(core.equal(path[0], x0), "the path should start at x0 (alpha = 0 gives x0 exactly)")
    expect(
        core.allclose(path[-1].double(), x1.double(), atol=1e-6),
        "the path should end at x1 (alpha = 1)",
    )
    alpha = _alphas(shape)
    want = alpha * x1.double() + (1 - alpha) * x0.double()
    expect(
        core.allclose(path.double(), want, atol=1e-5),
        "point i should be alpha * x1 + (1 - alpha) * x0 with alpha = i / 10",
    )


def _paths(fn: Callable, pairs: list) -> list:
    """fn on copies of each (x0, x1) pair."""
    return [fn(x0.clone(), x1.clone()) for x0, x1 in pairs]


def _pairs(shapes: tuple, dtype: torch.dtype = torch.float32) -> list:
    return [[torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)] for shape in shapes]


@collect
def check_linear_interpolation(fn: Callable, inputs: dict) -> dict:
    """11 points alpha x1 + (1 - alpha) x0, alpha = 0, 0.1, ..., 1, for images and latent codes."""
    return {"grid": fn(torch.zeros(1), torch.ones(1)), "paths": _paths(fn, inputs["pairs"])}


@check_linear_interpolation.inputs
def _linear_interpolation_inputs() -> dict:
    return {"pairs": _pairs(((1, 28, 28), (16,), (2,)))}


def _judge_paths(pairs: list, found: dict) -> None:
    paths = found.get("paths")
    expect(isinstance(paths, list) and len(paths) == len(pairs), "the paths were not computed")
    for path, (x0, x1) in zip(paths, pairs, strict=True):
        _expect_path(path, x0, x1)


@check_linear_interpolation.judge
def _judge_linear_interpolation(inputs: dict, found: dict) -> None:
    grid = _tensor(found.get("grid"), "linear_interpolation(x0, x1)")
    expect_shape(grid, (STEPS, 1), "linear_interpolation of two 1-element tensors")
    expect(
        core.allclose(grid.double().flatten(), _alphas(()).flatten(), atol=1e-6),
        f"alpha should run 0, 0.1, ..., 1 (from x0 to x1), got {grid.flatten().tolist()}",
    )
    _judge_paths(inputs["pairs"], found)


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


class _Decoder(nn.Module):
    """A stand-in VAE with a nonlinear decoder, so that the lab's ConvVAE is not needed here."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.latent_features = weight.shape[1]
        self.linear = nn.Linear(self.latent_features, PIXELS)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def decoder(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(z)).view(-1, 1, 28, 28)


def _decode(case: dict, z: torch.Tensor) -> torch.Tensor:
    """The stand-in decoder of `case`, computed by the judge from its weights."""
    return torch.sigmoid(F.linear(z, case["weight"], case["bias"])).view(-1, 1, 28, 28)


@collect
def check_latent_linear_interpolation(fn: Callable, inputs: dict) -> dict:
    """Shape (11, 1, 28, 28); the points decode alpha z1 + (1 - alpha) z0; the ends decode z0, z1."""
    paths = []
    for case in inputs["cases"]:
        vae = _Decoder(case["weight"], case["bias"])
        paths.append(fn(case["z0"].clone(), case["z1"].clone(), vae))
    return {"paths": paths}


@check_latent_linear_interpolation.inputs
def _latent_inputs() -> dict:
    cases = []
    for latent in LATENTS:
        bound = 1 / math.sqrt(latent)  # nn.Linear's bias initialisation
        cases.append(
            {
                "weight": 1.5 * torch.randn(PIXELS, latent),  # saturating: far from linear
                "bias": torch.empty(PIXELS).uniform_(-bound, bound),
                "z0": torch.randn(latent),
                "z1": torch.randn(latent),
            }
        )
    return {"cases": cases}


@check_latent_linear_interpolation.judge
def _judge_latent(inputs: dict, found: dict) -> None:
    paths = found.get("paths")
    cases = inputs["cases"]
    expect(isinstance(paths, list) and len(paths) == len(cases), "the paths were not computed")
    for out, case in zip(paths, cases, strict=True):
        z0, z1 = case["z0"], case["z1"]
        out = _tensor(out, "latent_linear_interpolation")
        expect_shape(out, (STEPS, 1, 28, 28), "latent_linear_interpolation(z0, z1, vae)")
        ends = _decode(case, torch.stack([z0, z1]))
        alpha = _alphas(tuple(z0.shape)).float()
        want = _decode(case, alpha * z1 + (1 - alpha) * z0)
        out = out.float()
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
    """The MNIST test set as the notebook loads it: (N, 1, 28, 28) in [0, 1]. A graded kernel's
    data directory holds the first 8000 test images, a student's all 10 000."""
    return mnist_test_images().unsqueeze(1)


def _held_out_images() -> torch.Tensor:
    """The 2000 held-out test images, (2000, 1, 28, 28): only the grader (or a self-check) has
    them."""
    from autograder.heldout import held_out_test_images

    return held_out_test_images().unsqueeze(1)


def negative_elbo(
    encoder: Callable, decoder: Callable, images: torch.Tensor, batch_size: int = 1000
) -> float:
    """Mean negative ELBO per image, one posterior sample per image drawn here (never z = mu).

    `encoder(x)` must return (mu, log_var, ...), `decoder(z)` Bernoulli means; the sample z the
    encoder itself returns is not used."""
    total = torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for x in images.split(batch_size):
            result = encoder(x)
            expect(
                isinstance(result, tuple | list) and len(result) == 3,
                "encoder(x) should return (mu, log_var, z)",
            )
            mu, log_var = _tensor(result[0], "mu"), _tensor(result[1], "log_var")
            expect(
                mu.dim() == 2 and len(mu) == len(x) and mu.shape == log_var.shape,
                "mu and log_var should have shape (B, latent_features)",
            )
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            recon = _bce(_expect_decoded(decoder(z), len(x)), x, reduction="sum")
            kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum()
            total += (recon.double() + kl.double()).cpu()
    return total.item() / len(images)


@collect
def check_trained_vae(
    model: nn.Module, images: torch.Tensor, *, inputs: dict, bar: str = "public"
) -> dict:
    """The negative ELBO per image on the held-out test images, computed by the grader, is at
    most the bar (`bar="public"`: PUBLIC_MAX_NELBO; `"hidden"`: the grader's own).

    The kernel exports the encoder and the decoder; the judge draws its own posterior sample per
    image from the encoder's (mu, log_var) and decodes it: what the model's encoder samples, or
    whether it samples at all in eval mode, is graded by check_conv_vae_sampling, not here.
    """
    expect(isinstance(model, nn.Module), "pass the trained ConvVAE")
    core.expect_test_set(
        images, _mnist_test_images(), "test_x", "the whole MNIST test set as the notebook loads it"
    )
    x = images[:8].to(core.device_of(model))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            mu, _, _ = _expect_encoded(model.encoder(x.clone()), len(x), None)
    finally:
        model.train(was_training)
    return _export(model, x, mu)


def _max_nelbo(bar: str) -> float:
    """The bar a test cell names: `public` here, `hidden` in the grader's hidden module."""
    return core.named_bar(bar, PUBLIC_MAX_NELBO, "conv_vae", "HIDDEN_MAX_NELBO")


@check_trained_vae.judge
def _judge_trained_vae(inputs: dict, found: dict, bar: str = "public") -> None:
    max_nelbo = _max_nelbo(bar)
    encoder = _load(found.get("encoder"), "the exported encoder")
    decoder = _load(found.get("decoder"), "the exported decoder")
    nelbo = negative_elbo(
        lambda x: _run(encoder, "the exported encoder", x),
        lambda z: _run(decoder, "the exported decoder", z),
        _held_out_images(),
    )
    expect(math.isfinite(nelbo), "the negative ELBO on the held-out test images is not finite")
    expect(
        nelbo <= max_nelbo,
        f"negative ELBO {nelbo:.2f} nats per image on the grader's held-out test images, expected "
        f"at most {max_nelbo}: check the model and the loss, or train longer",
    )
