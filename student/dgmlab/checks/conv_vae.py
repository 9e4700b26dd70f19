"""Checks of the convolutional VAE lab (labs/03-conv-vae.md).

Every check is a `core.Check`: the student's kernel only collects evidence (what `vae_loss` and
the interpolations return on inputs the grader drew, the model's encoder and decoder exported as
data-only programs), and the judge decides in the grader's process. `vae_loss` is compared with
exact values that the judge computes; the model by what it computes, run by the judge on its
exported encoder and decoder: shapes, probabilities out of the decoder for codes far beyond the
prior, mu and log_var free to take any real value on inputs far beyond MNIST's, forward returning
the encoder's mu and log_var, the eval-mode sampler's statistics (with power stated), and a
zero-parameter VAE; the interpolations with their closed form, up to float32 rounding (derived,
never bit-exact); the trained model with the negative ELBO per image on
the held-out test images in their fixed binarisation, one posterior sample per image drawn by
the judge, never z = mu; the importance weights on stand-in VAEs the judge knows exactly (exact
where q is the prior and the decoder ignores z, else against the judge's own draws from
torch.distributions, with power stated), and their log-mean-exp against torch.logsumexp.
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
from torch.distributions import Bernoulli, Normal

from dgmlab.checks import core, evidence, oracle, program, stats
from dgmlab.checks.core import CheckFailed, collect, expect, expect_shape, expect_tensor
from dgmlab.checks.reparam import (
    check_reparameterization,
)
from dgmlab.data import BINARIZE_SEED, binarize, mnist_test_images

__all__ = [
    "PUBLIC_MAX_NELBO",
    "check_conv_vae",
    "check_iwae_bound",
    "check_latent_linear_interpolation",
    "check_linear_interpolation",
    "check_log_importance_weights",
    "check_reparameterization",
    "check_trained_vae",
    "check_vae_loss",
    "negative_elbo",
]

# Captured before any student code runs (the lab's locked first cell imports this module).
_bce = F.binary_cross_entropy

PIXELS = 28 * 28
NATS_ZERO_VAE = PIXELS * math.log(2)  # 543.427: Bernoulli means 0.5 cost ln 2 per pixel
STEPS = 11  # alpha = 0, 0.1, ..., 1
SAMPLING_IMAGES = 4096  # 4096 images x 16 latent columns = 65 536 standardised draws
SAMPLING_SCALES = (1.0, 3.0, 10.0, 30.0)  # the sampler's test images: grey levels times these
LATENTS = (2, 16)  # the latent sizes the model checks build
EXPORTED = 16  # the latent size whose encoder and decoder the judge runs itself
BATCH = 5  # images per batch in check_conv_vae
WIDE_SCALES = (1.0, 10.0, 100.0)  # the encoder's inputs beyond MNIST's images: these multiples
FAR_SCALES = (10.0, 100.0, 1000.0)  # codes far beyond the prior's mass: N(0, I) times these
HEAD_REACH = 3.0  # on those inputs mu and log_var both go below -3 and above 3 (tanh cannot)
ROUNDING = 16 * 2**-24  # float32 unit roundoffs a computed point may be off by, relative
NEAR = 0.01  # on those codes the decoder's outputs come within 0.01 of 0 and of 1

# Negative ELBO per image (nats) on the 2000 held-out MNIST test images in their fixed
# binarisation (dgmlab.heldout.held_out_binarized_images), one posterior sample per image drawn by
# the judge, as negative_elbo computes. The public bar follows the issue's: the seed's setting
# (latent 16, Adam 1e-4, batch 64, 3 epochs) should pass it. Re-measured for issue 14, with the
# lab's 16/32-channel model trained on dynamically binarised batches: in that setting the
# reference scores 133.43, 131.24, 136.02 on the held-out images (training seeds 0-2, CPU; on all
# 10 000 binarised test images 131.60, 129.27, 133.95), and the bar keeps 3.5 nats above the
# worst, as before (the judge's sampling moves a score by sd 0.11). The lab's own training clears
# it by more than 20 nats; the hidden bar is in autograder.hidden.
PUBLIC_MAX_NELBO = 139.5


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
    """(reconstruction, KL) in float64: Bernoulli negative log-likelihood and KL to the prior."""
    recon = oracle.bernoulli_nll(output, images).sum()
    kl = oracle.kl_to_prior(mu, torch.exp(0.5 * log_var.detach().double())).sum()
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
        "images": torch.rand(batch, 1, 28, 28),  # any targets in [0, 1]; the hidden check: 0/1
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


# ---------------------------------------------------------------------------------------------
# the model: the kernel runs it and exports its encoder and decoder; the judge runs the exports


def _build(model_class: Callable[..., Any], latent: int, device: Any) -> nn.Module:
    model = model_class(latent_features=latent)
    expect(
        isinstance(model, nn.Module),
        f"ConvVAE(latent_features=...) should be an nn.Module, got {type(model).__name__}",
    )
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


def _export(model: nn.Module, x: torch.Tensor, z: torch.Tensor | None = None) -> dict:
    """The model's encoder (traced on x) and, given z, its decoder as programs, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            programs = {"encoder": program.export_program(model.encoder, (x,))}
            if z is not None:
                programs["decoder"] = program.export_program(model.decoder, (z,))
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


def _far_codes(latent: int) -> torch.Tensor:
    """Codes far beyond the prior's mass, BATCH at each of FAR_SCALES."""
    return torch.cat([scale * torch.randn(BATCH, latent) for scale in FAR_SCALES])


def _wide_images() -> torch.Tensor:
    """Inputs of the encoder well beyond MNIST's: grey levels, sparse dots and signed noise, each
    at every one of WIDE_SCALES (BATCH of each)."""
    kinds = (
        torch.rand(BATCH, 1, 28, 28),
        (torch.rand(BATCH, 1, 28, 28) < 0.1).float(),
        torch.randn(BATCH, 1, 28, 28),
    )
    return torch.cat([scale * kind for scale in WIDE_SCALES for kind in kinds])


@collect
def check_conv_vae(model_class: Callable[..., Any], device: Any = "cpu", *, inputs: dict) -> dict:
    """Shapes of encoder, decoder and forward for latent sizes 2 and 16; forward returns the
    encoder's mu and log_var; the decoder's outputs are probabilities for every z; mu and log_var
    come from two separate heads and take any real value; eval mode still samples
    z ~ N(mu, exp(log_var)); a zero-parameter VAE gives x_hat = 0.5, mu = log_var = 0."""
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
            with torch.no_grad():
                encoded = _expect_encoded(model.encoder(x.clone()), len(x), latent)
                decoded = _expect_decoded(model.decoder(encoded[2]), len(x))
                result = model(x.clone())
            _expect_forward(result, len(x), latent)
            record[mode] = {"encoded": encoded, "decoded": decoded, "forward": result}
        with torch.no_grad():  # still in eval mode
            record["far"] = _expect_decoded(model.decoder(far), len(far))
        found[f"latent {latent}"] = record
        if latent == EXPORTED:  # its encoder and decoder as programs, at the top of the evidence
            # (a payload nests nearly evidence.MAX_DEPTH deep): the judge runs them on its inputs
            found.update(_export(model, x, encoded[2]))
    return found


@check_conv_vae.inputs
def _conv_vae_inputs() -> dict:
    return {
        "cases": [
            {"latent": latent, "x": torch.rand(BATCH, 1, 28, 28), "far": _far_codes(latent)}
            for latent in LATENTS
        ],
        "wide": _wide_images(),
    }


def _expect_probabilities(x_hat: torch.Tensor, what: str) -> None:
    """Decoded codes far beyond the prior: every output in [0, 1], some near 0 and some near 1."""
    low, high = x_hat.min().item(), x_hat.max().item()
    expect(
        low <= NEAR and high >= 1 - NEAR,
        f"{what} on codes far from the prior's mass lie in [{low:.3f}, {high:.3f}]: Bernoulli "
        "means must be able to come close to both 0 and 1 (end the decoder with a sigmoid)",
    )


def _expect_same_posterior(forward: Any, encoded: Any, what: str) -> None:
    """forward(x)'s mu and log_var are encoder(x)'s, unchanged (eval mode: no sampling in them)."""
    for i, name in ((1, "mu"), (2, "log_var")):
        got, want = _tensor(forward[i], name), _tensor(encoded[i - 1], name)
        core.expect_close(
            got,
            want,
            f"forward(x) should return the {name} that encoder(x) returns, unchanged, got "
            f"different values{what}: apply no function to the heads' outputs in forward",
            rtol=1e-5,
            atol=1e-6,
        )


def _expect_any_real(value: torch.Tensor, name: str, head: str) -> None:
    """`value` (the encoder's mu or log_var on the wide inputs) reaches beyond +-HEAD_REACH."""
    low, high = value.min().item(), value.max().item()
    expect(
        math.isfinite(low) and math.isfinite(high),
        f"encoder(x)'s {name} contains NaN or inf on inputs far from MNIST's images",
    )
    expect(
        low < -HEAD_REACH and high > HEAD_REACH,
        f"encoder(x)'s {name} should take any real value, large or small, of either sign, but on "
        f"inputs far from MNIST's images it stayed within [{low:.3f}, {high:.3f}]: the {head} "
        "head is a linear layer with no activation after it",
    )


def _judge_zero_vae(encoder: program.Program, decoder: program.Program, x: torch.Tensor) -> None:
    """With every parameter zero (the judge's copies) x_hat = sigmoid(0), mu = log_var = 0."""
    for prog in (encoder, decoder):
        for tensor in prog.named_parameters().values():
            tensor.zero_()
    mu, log_var, z = _expect_encoded(_run(encoder, "encoder(x)", x), len(x), 16)
    x_hat = _expect_decoded(_run(decoder, "decoder(z)", z), len(x), bounded=False)
    core.expect_close(
        x_hat,
        torch.full_like(x_hat, 0.5),
        "with all parameters zero, x_hat should be sigmoid(0) = 0.5 everywhere",
        rtol=1e-5,
        atol=1e-8,
    )
    for value, name in ((mu, "mu"), (log_var, "log_var")):
        core.expect_close(
            value,
            torch.zeros_like(value),
            f"with all parameters zero, {name} should be 0: no activation after the heads",
            rtol=0.0,
            atol=0.0,
        )


@check_conv_vae.judge
def _judge_conv_vae(inputs: dict, found: dict) -> None:
    for case in inputs["cases"]:  # what the model returned in the kernel
        latent, x, far = case["latent"], case["x"], case["far"]
        record = found.get(f"latent {latent}")
        expect(isinstance(record, dict), f"ConvVAE(latent_features={latent}) was not built")
        for mode in ("train", "eval"):
            seen = record.get(mode)
            expect(isinstance(seen, dict), f"ConvVAE was not run in {mode} mode")
            encoded = _expect_encoded(seen.get("encoded"), len(x), latent)
            _expect_decoded(seen.get("decoded"), len(x))
            _expect_forward(seen.get("forward"), len(x), latent)
        _expect_same_posterior(seen["forward"], encoded, " in eval mode")
        far_decoded = _expect_decoded(record.get("far"), len(far))
        _expect_probabilities(
            far_decoded, f"ConvVAE(latent_features={latent}).decoder(z)'s outputs"
        )
    # the 16-dimensional model's exports, run here on the grader's inputs
    x, far = inputs["cases"][-1]["x"], inputs["cases"][-1]["far"]
    encoder = _load(found.get("encoder"), "the exported encoder")
    expect(
        _convolutional(found["encoder"]), "the encoder should be convolutional (nn.Conv2d layers)"
    )
    decoder = _load(found.get("decoder"), "the exported decoder")
    mu, log_var, z = _expect_encoded(_run(encoder, "encoder(x)", x), len(x), 16)
    _expect_same_posterior(seen["forward"], (mu, log_var), " from the exported encoder")
    _expect_decoded(_run(decoder, "decoder(z)", z), len(x))
    _expect_probabilities(
        _expect_decoded(_run(decoder, "decoder(z)", far), len(far)), "decoder(z)'s outputs"
    )
    wide = inputs["wide"]
    mu, log_var, _ = _expect_encoded(_run(encoder, "encoder(x)", wide), len(wide), 16)
    expect(
        not core.allclose(mu, log_var, rtol=1e-6, atol=1e-6),
        "encoder(x) returned log_var equal to mu: log_var needs its own linear head "
        "(a second nn.Linear), not the mean head again",
    )
    _expect_any_real(mu, "mu", "mean")
    _expect_any_real(log_var, "log_var", "log-variance")
    _expect_posterior_samples(encoder, _sampling_images())  # false failure <= 3.8e-7
    _judge_zero_vae(encoder, decoder, x)  # last: it zeroes the judge's copies of the parameters


def _sampling_images() -> torch.Tensor:
    """The judge's own images for the sampler's statistics: grey levels scaled by 1, 3, 10 or 30,
    so that log_var spreads over several nats, where a sampler with the wrong sigma
    (exp(log_var), say) cannot hide behind log_var ~ 0."""
    base = torch.rand(SAMPLING_IMAGES // len(SAMPLING_SCALES), 1, 28, 28)  # each at every scale:
    return torch.cat([scale * base for scale in SAMPLING_SCALES])  # eps alone must be independent


def _standardised(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> tuple:
    """e = (z - mu) / sigma and log_var, flattened, in float64, where float32 can hold the noise:
    sigma at least 1e4 float32 epsilons of |mu| (z's rounding then moves e by at most 1e-4)."""
    z, mu, log_var = (t.detach().double().flatten() for t in (z, mu, log_var))
    sigma = torch.exp(0.5 * log_var)
    kept = torch.isfinite(z) & torch.isfinite(sigma) & (sigma >= 1e4 * 2**-24 * mu.abs())
    kept &= sigma > 0
    return ((z - mu) / sigma)[kept], log_var[kept]


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
    e, log_var = _standardised(z1, mu, log_var)
    what = "(z - mu) / exp(log_var / 2) from encoder(x) in eval mode"
    # All 65 536 draws (4096 images x 16 columns): 4 assertions of stats.C = 5.5 standard errors.
    # Power at 0.999 (stats.detectable): a mean of 0.034, a variance off by 0.047 (sigma off by
    # 2.4%), a mass beyond 2 sd off by 0.0070 (15%) or beyond 3 sd off by 0.0017 (64%).
    stats.expect_standard_normal(e.reshape(-1, 1), what)
    # The halves below and above the median log_var, 32 768 draws each, 3 assertions each (the
    # beyond-3-sd one needs stats.TAIL3_ROWS): a sigma that is a wrong function of log_var is off
    # in opposite directions there and cannot average out. Power at 0.999 per half: a variance
    # off by 0.067 (sigma off by 3.4%); exp(log_var) for sigma makes the halves' variances
    # exp(log_var) on average, off by 0.5 or more at the spread these inputs give log_var.
    # False failures: 10 assertions in all, <= 10 * 3.8e-8 = 3.8e-7.
    order = log_var.argsort()
    half = len(order) // 2
    for part, name in ((order[:half], "below"), (order[half:], "above")):
        stats.expect_standard_normal(e[part].reshape(-1, 1), f"{what}, log_var {name} its median")


# ---------------------------------------------------------------------------------------------
# interpolation


def _alphas(shape: tuple[int, ...]) -> torch.Tensor:
    return (torch.arange(STEPS, dtype=torch.float64) / (STEPS - 1)).view(-1, *[1] * len(shape))


def _rounding(*tensors: torch.Tensor) -> torch.Tensor:
    """What float32 arithmetic may move a point built from these tensors: ROUNDING unit
    roundoffs of the sum of their magnitudes, elementwise (float64 inputs get the same slack)."""
    return ROUNDING * sum(t.detach().double().abs() for t in tensors)


def _expect_points(got: torch.Tensor, want: torch.Tensor, slack: torch.Tensor, what: str) -> None:
    """Point i of `got` (dimension 0) is point i of `want` within `slack`, or the first point
    that is not is named, with its alpha."""
    off = (got.detach().double() - want).abs() - slack
    bad = [i for i in range(len(off)) if not (off[i] <= 0).all().item()]
    if not bad:
        return
    i = bad[0]
    alpha = f"alpha = {i / (STEPS - 1):.1f}"
    where = {
        0: f"the first point ({alpha}) should be x0",
        STEPS - 1: f"the last point ({alpha}) should be x1",
    }.get(i, f"point {i} should be alpha * x1 + (1 - alpha) * x0 with {alpha}")
    error = (got[i].detach().double() - want[i]).abs().max().item()
    raise CheckFailed(f"{what}: {where}, got values off by up to {error:.3g}")


def _expect_path(path: Any, x0: torch.Tensor, x1: torch.Tensor) -> None:
    """The evidence `path` is linear_interpolation(x0, x1) for the grader's x0 and x1: every
    point alpha * x1 + (1 - alpha) * x0 up to float32 rounding, alpha = i / 10."""
    shape = tuple(x0.shape)
    path = _tensor(path, "linear_interpolation(x0, x1)")
    expect_shape(path, (STEPS, *shape), "linear_interpolation(x0, x1)")
    alpha = _alphas(shape)
    want = alpha * x1.double() + (1 - alpha) * x0.double()
    _expect_points(path, want, _rounding(x0, x1).expand_as(want), "linear_interpolation(x0, x1)")


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
    alphas = _alphas(())
    expect(
        ((grid.double().flatten() - alphas.flatten()).abs() <= ROUNDING).all().item(),
        f"alpha should run 0, 0.1, ..., 1 (from x0 to x1), got {grid.flatten().tolist()}",
    )
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


def _decoded_path(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The stand-in decoder of `case` on alpha z1 + (1 - alpha) z0, in float64, and how far
    float32 arithmetic may move each pixel: the path's rounding through |weight| (a sigmoid
    moves by at most a quarter of its input's change), the decoder's own rounding, and the
    sigmoid's."""
    z0, z1 = case["z0"].double(), case["z1"].double()
    weight, bias = case["weight"].double(), case["bias"].double()
    alpha = _alphas(tuple(z0.shape))
    z = alpha * z1 + (1 - alpha) * z0
    want = torch.sigmoid(F.linear(z, weight, bias))
    logits = weight.abs() @ _rounding(z0, z1) + ROUNDING * (z.abs() @ weight.abs().T + bias.abs())
    slack = logits / 4 + ROUNDING
    return want.view(-1, 1, 28, 28), slack.view(-1, 1, 28, 28)


@check_latent_linear_interpolation.judge
def _judge_latent(inputs: dict, found: dict) -> None:
    paths = found.get("paths")
    cases = inputs["cases"]
    expect(isinstance(paths, list) and len(paths) == len(cases), "the paths were not computed")
    for out, case in zip(paths, cases, strict=True):
        out = _tensor(out, "latent_linear_interpolation")
        expect_shape(out, (STEPS, 1, 28, 28), "latent_linear_interpolation(z0, z1, vae)")
        want, slack = _decoded_path(case)
        off = (out.detach().double() - want).abs() <= slack
        good = [off[i].all().item() for i in range(STEPS)]
        expect(good[0], "the first image should decode z0 (vae.decoder of z0)")
        expect(good[-1], "the last image should decode z1 (vae.decoder of z1)")
        i = good.index(False) if False in good else None
        expect(
            i is None,
            f"image {i} should decode alpha * z1 + (1 - alpha) * z0 with alpha = "
            f"{(i or 0) / (STEPS - 1):.1f}: interpolate the codes, then decode (not the decoded "
            "images)",
        )


# ---------------------------------------------------------------------------------------------
# the trained model


def _mnist_test_images() -> torch.Tensor:
    """The MNIST test set's grey levels: (N, 1, 28, 28) in [0, 1]. A graded kernel's data
    directory holds the first 8000 test images, a student's all 10 000."""
    return mnist_test_images().unsqueeze(1)


def _binarized_test_images() -> torch.Tensor:
    """The MNIST test set as the notebook loads it: the grey levels binarised once, with
    dgmlab.data.BINARIZE_SEED (a Bernoulli likelihood is a probability of 0/1 pixels only)."""
    return binarize(_mnist_test_images(), seed=BINARIZE_SEED)


def _held_out_images() -> torch.Tensor:
    """The 2000 held-out test images in their fixed binarisation, (2000, 1, 28, 28): only the
    grader (or a self-check) has them."""
    from dgmlab.heldout import held_out_binarized_images

    return held_out_binarized_images().unsqueeze(1)


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
            scale = torch.exp(0.5 * log_var)
            z = oracle.posterior_sample(mu, scale)
            recon = _bce(_expect_decoded(decoder(z), len(x)), x, reduction="sum")
            kl = oracle.kl_to_prior(mu, scale).sum()
            total += (recon.double() + kl.double()).cpu()
    return total.item() / len(images)


@collect
def check_trained_vae(
    model: nn.Module, images: torch.Tensor, *, inputs: dict, bar: str = "public"
) -> dict:
    """The negative ELBO per image on the held-out test images (their fixed binarisation),
    computed by the grader, is at most the bar (`bar="public"`: PUBLIC_MAX_NELBO; `"hidden"`: the grader's own).

    The kernel exports the encoder and the decoder; the judge draws its own posterior sample per
    image from the encoder's (mu, log_var) and decodes it: what the model's encoder samples, or
    whether it samples at all in eval mode, is graded by check_conv_vae, not here.
    """
    expect(isinstance(model, nn.Module), "pass the trained ConvVAE")
    core.expect_test_set(
        images,
        _binarized_test_images(),
        "test_x",
        "the whole MNIST test set as the notebook loads it, binarised with BINARIZE_SEED",
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
def _judge_trained_vae(inputs: dict, found: dict, bar: str = "public") -> str:
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
    # shown with the pass (a self-check's, a public call's feedback): where the model stands
    shown = f" (threshold {max_nelbo})" if bar == "public" else ""  # a hidden bar stays hidden
    return f"negative ELBO {nelbo:.2f} nats per held-out test image{shown}"


# ---------------------------------------------------------------------------------------------
# importance sampling: the log-weights log p(x, z_k) - log q(z_k | x), and the IWAE bound

IWAE_LATENT = 3  # the stand-in models' latent size
ORACLE_SAMPLES = 2000  # the judge's own draws per image from torch.distributions
# The stand-in decoder's logits stay within +-6 (probabilities 0.0025 to 0.9975): a float32
# sigmoid saturates to 1 beyond logits of 16.6, where a student's binary cross-entropy of the
# probabilities (clamped at 100 nats) would no longer be the Bernoulli log-likelihood.
LOGIT_BOUND = 6.0


def _bounded(logits: torch.Tensor) -> torch.Tensor:
    return LOGIT_BOUND * torch.tanh(logits / LOGIT_BOUND)


class _StandIn(nn.Module):
    """A VAE the judge knows exactly: mu and log_var linear in the image's pixels, Bernoulli
    means sigmoid(LOGIT_BOUND tanh((z W + b) / LOGIT_BOUND)) (W = 0: probabilities that do not
    depend on z). Its decoder takes codes of shape (N, latent_features) only, as the lab's
    ConvVAE does."""

    def __init__(self, case: dict):
        super().__init__()
        for name in ("encoder_weight", "encoder_bias", "decoder_weight", "decoder_bias"):
            setattr(self, name, nn.Parameter(case[name].clone(), requires_grad=False))
        self.latent_features = case["decoder_weight"].shape[0]

    def reparameterize(self, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, log_var = (x.flatten(1) @ self.encoder_weight + self.encoder_bias).chunk(2, dim=1)
        return mu, log_var, self.reparameterize(mu, log_var)

    def decoder(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2:
            raise ValueError(
                f"decoder(z) takes codes of shape (N, {self.latent_features}), got "
                f"{tuple(z.shape)}: decode the K samples of every image as one batch of K * B "
                "codes (z.flatten(0, 1)), then reshape"
            )
        logits = _bounded(z @ self.decoder_weight + self.decoder_bias)
        return torch.sigmoid(logits).view(-1, 1, 28, 28)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The lab's interface, (x_hat, mu, log_var), for answers that call the VAE itself."""
        posterior = self.encoder(x)  # (mu, log_var, z)
        return (self.decoder(posterior[2]), *posterior[:2])


def _stand_in_case(images: int, samples: int, posterior: bool, decoded: bool) -> dict:
    """A stand-in VAE, its images (0/1 pixels) and K. Without `posterior` q(z | x) is the prior
    N(0, I) (mu = 0, log_var = 0); without `decoded` the decoder ignores z. The posterior's mu
    spreads over about +-2 and log_var over [-1.5, 1] (sigma 0.47 to 1.65), so that a sigma
    that is a wrong function of log_var, or log q taken anywhere but at z, moves the weights."""
    d = IWAE_LATENT
    encoder_weight, encoder_bias = torch.zeros(PIXELS, 2 * d), torch.zeros(2 * d)
    if posterior:
        encoder_weight = 0.03 * torch.randn(PIXELS, 2 * d)
        encoder_bias = torch.cat([torch.randn(d), torch.empty(d).uniform_(-1.5, 1.0)])
    decoder_weight = torch.randn(d, PIXELS) if decoded else torch.zeros(d, PIXELS)
    return {
        "encoder_weight": encoder_weight,
        "encoder_bias": encoder_bias,
        "decoder_weight": decoder_weight,
        "decoder_bias": torch.empty(PIXELS).uniform_(-2.0, 2.0),
        "x": torch.bernoulli(torch.full((images, 1, 28, 28), 0.2)),
        "K": samples,
    }


@collect
def check_log_importance_weights(fn: Callable, device: Any = "cpu", *, inputs: dict) -> dict:
    """log p(x | z_k) + log p(z_k) - log q(z_k | x) for K fresh z_k ~ q(z | x) per image, shape
    (K, B), on stand-in VAEs the judge knows exactly."""
    found = {}
    for name, case in inputs.items():
        vae = _StandIn(case).to(device)
        found[name] = fn(vae, case["x"].clone().to(device), case["K"])
    return found


@check_log_importance_weights.inputs
def _log_weights_inputs() -> dict:
    return {
        "prior one": _stand_in_case(3, 1, posterior=False, decoded=False),
        "prior": _stand_in_case(3, 6, posterior=False, decoded=False),
        "posterior": _stand_in_case(50, 200, posterior=True, decoded=False),
        "decoded": _stand_in_case(10, 400, posterior=True, decoded=True),
    }


def _posterior_of(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The stand-in's (mu, log_var) of its images, in float64."""
    h = case["x"].double().flatten(1) @ case["encoder_weight"].double()
    return (h + case["encoder_bias"].double()).chunk(2, dim=1)


def _likelihood(case: dict, z: torch.Tensor) -> torch.Tensor:
    """log p(x_b | z) of image b for codes z of shape (M, B, d): (M, B), by torch.distributions."""
    logits = _bounded(z @ case["decoder_weight"].double() + case["decoder_bias"].double())
    pixels = case["x"].double().flatten(1)
    return Bernoulli(logits=logits).log_prob(pixels.expand_as(logits)).sum(-1)


def _oracle_log_weights(case: dict, samples: int) -> torch.Tensor:
    """The judge's own log-weights, (samples, B): z ~ q(z | x) drawn by torch.distributions."""
    mu, log_var = _posterior_of(case)
    q = Normal(mu, torch.exp(0.5 * log_var))
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    fixed = not case["decoder_weight"].any()  # a decoder that ignores z: one p(x) per image
    rows = []
    for _ in range(samples // 500):  # (500, B, 784) logits at a time
        z = q.sample((500,))
        log_ratio = prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)
        rows.append(_likelihood(case, z[:1] if fixed else z) + log_ratio)
    return torch.cat(rows)


def _weights(found: dict, name: str, case: dict) -> torch.Tensor:
    K, B = case["K"], len(case["x"])
    log_w = core.answer_tensor(found, name, "log_importance_weights(vae, x, K)")
    expect_shape(log_w, (K, B), f"log_importance_weights(vae, x, K) for K = {K} and B = {B} images")
    log_w = log_w.detach().double().cpu()
    expect(core.isfinite(log_w).all().item(), "the log-weights contain NaN or inf")
    return log_w


def _expect_exact_prior(log_w: torch.Tensor, case: dict) -> None:
    """q(z | x) = p(z) and a decoder that ignores z: every weight is p(x), whatever z is."""
    want = _likelihood(case, torch.zeros(1, len(case["x"]), IWAE_LATENT, dtype=torch.float64))
    want = want.expand_as(log_w)
    if core.allclose(log_w, want, rtol=1e-4, atol=1e-3):
        return
    varies = (log_w.max(0).values - log_w.min(0).values).max().item() > 1e-3
    hint = (
        "they vary with z, though here log p(z) - log q(z | x) is 0 for every z: add log p(z) "
        "and subtract log q(z | x), both at the sample z"
        if varies
        else "log p(x | z) is the Bernoulli log-likelihood summed over the 784 pixels, "
        "-F.binary_cross_entropy(x_hat, x, reduction='none') summed per image"
    )
    core.expect_close(
        log_w,
        want,
        "with q(z | x) = p(z) = N(0, I) and a decoder that ignores z, every log-weight is "
        f"log p(x): {hint}",
        rtol=1e-4,
        atol=1e-3,
    )


def _expect_like_oracle(log_w: torch.Tensor, case: dict, what: str) -> None:
    """The K log-weights of each image look like the judge's own draws: mean and second moment
    of the weights standardised by the judge's per-image mean and sd (two assertions)."""
    oracle = _oracle_log_weights(case, ORACLE_SAMPLES)  # (M, B)
    m, s = oracle.mean(0), oracle.std(0)
    kurtosis = (((oracle - m) / s) ** 4).mean(0)
    e = (log_w - m) / s
    n, M = log_w.numel(), oracle.numel()  # K * B of the student's, M * B of the judge's
    offset = (log_w - m).mean().item()
    # mean of e: variance 1/n (the student's draws) + 1/M (the judge's means); false failure
    # P_ONE by the CLT (n >= 4000 sums of quadratic forms in Gaussians, or smooth functions of
    # them); detects a shift of stats.detectable(sd) = 0.09 sd (posterior case) or 0.15 sd
    # (decoded case) of the log-weights at 0.999
    sd = math.sqrt(1 / n + 1 / M)
    expect(
        abs(e.mean().item()) <= stats.C * sd,
        f"{what}: the log-weights average {offset:+.2f} nats away from the judge's own "
        "(E over q of log p(x | z) + log p(z) - log q(z | x), the ELBO): draw z ~ N(mu, "
        "exp(log_var)) with sigma = exp(log_var / 2), decode every sample, and take log p(z) "
        "and log q(z | x) of that sample, with torch.distributions.Normal(...).log_prob",
    )
    # mean of e^2: variance (kurtosis - 1) / n from the student's draws, the same / M from the
    # judge's variance; false failure P_ONE by the CLT; detects a variance off by
    # stats.detectable(sd), 0.16 of it (posterior case, kurtosis ~ 4) at 0.999
    sd = math.sqrt((kurtosis.mean().item() - 1) * (1 / n + 1 / M))
    ratio = (e**2).mean().item()
    expect(
        abs(ratio - 1) <= stats.C * sd,
        f"{what}: the log-weights of an image spread {math.sqrt(ratio):.2f} times as far as "
        "the judge's own: draw a fresh z for each of the K samples, and use the log-densities "
        "of that sample (log p(z) - log q(z | x), not the closed-form KL)",
    )


@check_log_importance_weights.judge
def _judge_log_weights(inputs: dict, found: dict) -> None:
    for name in ("prior", "prior one"):
        _expect_exact_prior(_weights(found, name, inputs[name]), inputs[name])
    log_w = _weights(found, "posterior", inputs["posterior"])
    same = (log_w.max(0).values - log_w.min(0).values) <= 1e-6 * (1 + log_w.abs().max(0).values)
    expect(
        not same.any().item(),
        "the K log-weights of an image are all the same number: draw K samples z_k, one "
        "for each k (noise of shape (K, B, latent_features)), not one z used K times, and take "
        "log p(z_k) - log q(z_k | x) of each (the closed-form KL is the same for every k)",
    )
    _expect_like_oracle(log_w, inputs["posterior"], "decoder ignoring z, q(z | x) != p(z)")
    _expect_like_oracle(
        _weights(found, "decoded", inputs["decoded"]), inputs["decoded"], "a decoder using z"
    )


def _bound_inputs_of(shape: tuple[int, int], centre: float, spread: float, dtype) -> torch.Tensor:
    return (centre + spread * torch.randn(shape, dtype=torch.float64)).to(dtype)


@collect
def check_iwae_bound(fn: Callable, *, inputs: dict) -> dict:
    """log (1/K) sum_k exp(log_w[k]) per image, for log-weights of shape (K, B)."""
    return {"bounds": [fn(log_w.clone()) for log_w in inputs["log_w"]]}


@check_iwae_bound.inputs
def _iwae_bound_inputs() -> dict:
    return {
        "log_w": [
            _bound_inputs_of((1, 4), -30.0, 5.0, torch.float32),  # K = 1: the log-weight itself
            _bound_inputs_of((10, 4), -400.0, 20.0, torch.float32),  # exp underflows float32
            _bound_inputs_of((1000, 3), -100.0, 3.0, torch.float32),  # many comparable weights
            _bound_inputs_of((6, 5), 800.0, 2.0, torch.float64),  # exp overflows float64
        ]
    }


def _diagnose_bound(got: torch.Tensor, given: torch.Tensor) -> str:
    """What a wrong bound computed instead, when it is one of the usual mistakes."""
    K, log_w = given.shape[0], given.double()
    naive = given.exp().mean(0).log().double()  # in the dtype the student was given
    mistakes = (
        (naive, "log(mean(exp(log_w))) computed as written: exp of log-weights this far from 0 "
         "under- or overflows, use torch.logsumexp (it subtracts the largest first)"),
        (log_w.mean(0), "the mean of the log-weights (the ELBO estimate): the bound is the "
         "log of the mean of the weights, torch.logsumexp(log_w, dim=0) - log K"),
        (log_w.logsumexp(0), "the log of the sum of the weights: subtract log K to average"),
        (log_w.logsumexp(0) + math.log(K), "log K added: subtract it"),
        (log_w.logsumexp(0) / K, "divided by K in log space: subtract log K instead"),
        (log_w.max(0).values - math.log(K), "the largest log-weight minus log K: logsumexp "
         "counts every weight"),
    )  # fmt: skip
    for value, hint in mistakes:
        if core.allclose(got, value, rtol=1e-5, atol=1e-4):
            return f": it is {hint}"
    return ""


@check_iwae_bound.judge
def _judge_iwae_bound(inputs: dict, found: dict) -> None:
    bounds = found.get("bounds")
    expect(isinstance(bounds, list), "iwae_bound was not called")
    for log_w, got in zip(inputs["log_w"], bounds, strict=True):
        K, B = log_w.shape
        got = _tensor(got, "iwae_bound(log_w)")
        expect_shape(got, (B,), f"iwae_bound(log_w) of log-weights of shape ({K}, {B})")
        got = got.detach().double()
        expect(
            core.isfinite(got).all().item(),
            f"iwae_bound(log_w) is {got.tolist()} for log-weights around "
            f"{log_w.double().mean().item():.0f}: exp of such numbers under- or overflows, "
            "use torch.logsumexp (it subtracts the largest log-weight first)",
        )
        want = log_w.double().logsumexp(0) - math.log(K)
        core.expect_close(
            got,
            want,
            f"iwae_bound(log_w) for K = {K}{_diagnose_bound(got, log_w)}",
            rtol=1e-6,
            atol=1e-4,
        )
