"""Checks of the lab 02-kl-vae: Gaussian KL divergences, an MLP VAE, KL annealing, interpolation.

Every check is a `core.Check`: the student's kernel only collects evidence (what the student's
functions return on inputs the grader drew, the networks exported as data-only programs) and the
judge decides in the grader's process. Exact checks compare with float64 references the judge
computes (pristine `core.allclose`); the VAE's methods run on a probe encoder and decoder whose
weights the grader drew; the encoder and decoder are judged by what their exported programs do on
wide inputs; the reparameterization checks are the shared ones of `reparam`; the trained model is
scored by the judge on the held-out MNIST test images, with its own sampling, never by a number
the student's code reports.

One module per lab, in the lab's order: every check of a lab in one place is why it runs past
the ~300 lines a module otherwise keeps to.
"""

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from dgmlab.checks import core, evidence, oracle, program
from dgmlab.checks.core import EXACT_KL, CheckFailed, collect, expect, expect_shape
from dgmlab.checks.reparam import (  # noqa: F401  (the lab calls them as checks.*)
    check_reparameterization,
)

PIXELS, LATENT = 784, 8

# The trained, annealed VAE on the 2000 held-out MNIST test images (dgmlab.heldout, which a
# graded kernel cannot see): the negative ELBO per image in nats of the lab's Gaussian decoder
# N(x_hat, I/2), i.e. the squared error of one sampled code, plus the KL, plus the decoder's
# normalising constant 392 ln(pi) = 448.73 (GAUSSIAN_CONSTANT), and the mean KL, computed by the
# judge on the exported encoder and decoder with its own z. Reference solution, lab schedule
# (warm-up 1, annealing 4, 8 epochs), training seeds 1..8 on CPU, each the mean over 20 judge
# seeds, squared error + KL: 30.95, 30.96, 30.71, 30.77, 31.36, 30.59, 30.96, 31.35 (mean 30.96,
# sd 0.28, worst single judge draw 31.50), so negative ELBO 479.32 to 480.09 nats (mean 479.69);
# KL 9.73, 10.18, 9.72, 9.90, 9.50, 10.03, 9.67, 10.72. For comparison (squared error + KL):
# weight 1 from the start for 8 epochs (seeds 1..3) 30.65-31.16 (KL 8.2-8.7); the lab's 2-epoch
# runs (seed 1) 40.1 (weight 1, KL 5.1) and 158 (weight 1/784, KL 136); decoding the average
# image with a collapsed posterior 55.5 (KL 0). The constant was added to the score after those
# measurements: model, training and sampling are unchanged, so every score moves by exactly it,
# and so do the bars (re-measure by training the reference with the lab's schedule under
# several seeds and scoring it with vae_scores under 20 judge seeds each).
GAUSSIAN_CONSTANT = PIXELS / 2 * math.log(math.pi)  # -log N(x | x_hat, I/2) - |x - x_hat|^2
MAX_LOSS = round(36.0 + GAUSSIAN_CONSTANT, 2)  # public: 4.6 nats (16 sd) above the worst seed
MIN_KL = 5.0  # a collapsed posterior has KL ~0-3 nats; the reference 9.5-10.7
# One z per held-out image: over 20 judge seeds the loss of one reference model varied with sd
# 0.04 to 0.10, small against the margins, so the bars bound the spread of training, not of the
# judge's sampling. The hidden bar is in autograder/hidden/kl_vae.py.
# Power of the bar as a statistical test of the judge's sampling (sd <= 0.10 nats): a model whose
# expected loss is C = 5.5 sd (0.55 nats) under the bar fails it by chance with probability below
# 3.8e-8, and one whose expected loss is stats.detectable(0.10) = 0.86 nats above it fails with
# probability at least 0.999 (tests/test_variants_02.py measures the sd of its trained reference).
JUDGE_SD = 0.10  # the largest sd of one model's loss over the judge's seeds, measured above
EXAMPLE = 20  # rows of the example batch the model is exported with (divides 1000)


def _allclose(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> bool:
    """Pristine allclose in float64 on the CPU, shapes first (no silent broadcasting)."""
    if tuple(got.shape) != tuple(want.shape):
        return False
    return core.allclose(got.detach().double().cpu(), want.detach().double().cpu(), rtol, atol)


def _tensor(value: Any, what: str) -> torch.Tensor:
    """A tensor of the evidence, or CheckFailed naming what the student's code returned."""
    return core.answer_tensor({"value": value}, "value", what)


def _tensors(value: Any, n: int, what: str) -> tuple[torch.Tensor, ...]:
    """A tuple of `n` tensors of the evidence (it travels as a list)."""
    if isinstance(value, dict) and evidence.OBJECT in value:
        raise CheckFailed(
            f"{what} should return a tuple of {n} tensors, got {value[evidence.OBJECT]}"
        )
    expect(
        isinstance(value, list) and len(value) == n,
        f"{what} should return a tuple of {n} tensors, got "
        + (f"{len(value)} values" if isinstance(value, list) else type(value).__name__),
    )
    return tuple(_tensor(v, f"{what}[{i}]") for i, v in enumerate(value))


def _copies(*tensors: torch.Tensor, device: Any = "cpu") -> tuple[torch.Tensor, ...]:
    """Copies on `device` for the student's code: nothing it does in place reaches the inputs."""
    return tuple(t.detach().clone().to(device) for t in tensors)


# ---------------------------------------------------------------- kl_normal


def _random_normals(n: int) -> dict:
    """float64 (mu_q, sigma_q, mu_p, sigma_p) of n random pairs of univariate normals."""
    mu_q, mu_p = 2 * torch.randn(n, dtype=torch.float64), 2 * torch.randn(n, dtype=torch.float64)
    sigma_q = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-2, 2))
    sigma_p = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-2, 2))
    return {"mu_q": mu_q, "sigma_q": sigma_q, "mu_p": mu_p, "sigma_p": sigma_p}


def _normals(inputs: dict) -> tuple[torch.Tensor, ...]:
    return tuple(inputs[k] for k in ("mu_q", "sigma_q", "mu_p", "sigma_p"))


def _kl_normal_reference(
    mu_q: torch.Tensor, sigma_q: torch.Tensor, mu_p: torch.Tensor, sigma_p: Any
) -> torch.Tensor:
    return kl_divergence(Normal(mu_q, sigma_q), Normal(mu_p, sigma_p))


def _kl_normal_result(found: dict, key: str) -> torch.Tensor:
    out = core.answer_tensor(found, key, "kl_normal(mu_q, sigma_q, mu_p, sigma_p)")
    expect(core.isfinite(out).all().item(), "kl_normal returned NaN or inf for valid inputs")
    return out


DISAGREES = (
    "kl_normal disagrees with log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) "
    "/ (2 sigma_p^2) - 1/2"
)


@collect
def check_kl_normal(kl_normal: Callable, inputs: dict) -> dict:
    """Elementwise KL(q || p) of univariate normals agrees with torch.distributions in float64."""
    mu_q, sigma_q, mu_p, sigma_p = _normals(inputs)
    return {
        "got": kl_normal(*_copies(mu_q, sigma_q, mu_p, sigma_p)),
        "same": kl_normal(*_copies(mu_q, sigma_q, mu_q, sigma_q)),
    }


@check_kl_normal.inputs
def _kl_normal_inputs() -> dict:
    return _random_normals(1000)


@check_kl_normal.judge
def _judge_kl_normal(inputs: dict, found: dict) -> None:
    mu_q, sigma_q, mu_p, sigma_p = _normals(inputs)
    got = _kl_normal_result(found, "got")
    expect_shape(got, mu_q.shape, "kl_normal of 1000 pairs (elementwise, nothing summed)")
    want = _kl_normal_reference(mu_q, sigma_q, mu_p, sigma_p)
    swapped = _kl_normal_reference(mu_p, sigma_p, mu_q, sigma_q)
    expect(
        not _allclose(got, swapped, 1e-6, 1e-6),
        "kl_normal computes KL(p || q): the expectation is over q, the first distribution",
    )
    if not _allclose(got, want, 1e-6, 1e-6):
        i = int((got.double() - want).abs().argmax())
        raise CheckFailed(
            f"{DISAGREES}: for mu_q = {mu_q[i]:.4f}, sigma_q = {sigma_q[i]:.4f}, mu_p = "
            f"{mu_p[i]:.4f}, sigma_p = {sigma_p[i]:.4f} it should be {want[i]:.6f}, got "
            f"{got[i].item():.6f}"
        )
    same = _kl_normal_result(found, "same")
    core.expect_close(
        same,
        torch.zeros_like(mu_q),
        f"KL(q || q) should be 0, got values up to {same.abs().max().item():.3g}",
        rtol=0,
        atol=1e-9,
    )


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


# ---------------------------------------------------------------- the VAE's methods


class _ProbeEncoder(nn.Module):
    """A linear encoder returning (mu, log_var), for checking the VAE's methods. It notes
    whether gradient tracking was on at each call: `.detach()` on a result hides a graph that
    was built all the same, which torch.no_grad() (what the lab asks for) never builds."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(PIXELS, 2 * LATENT)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.grad_modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.grad_modes.append(torch.is_grad_enabled())
        mu, log_var = self.linear(x).chunk(2, dim=-1)
        return mu, log_var


class _ProbeDecoder(nn.Module):
    """sigmoid(linear(z)), noting like _ProbeEncoder whether gradient tracking was on."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(LATENT, PIXELS)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.grad_modes: list[bool] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.grad_modes.append(torch.is_grad_enabled())
        return torch.sigmoid(self.linear(z))


def _grad_modes(probe: Any) -> list:
    """The grad modes a probe saw since the last call, then forgotten."""
    modes = list(getattr(probe, "grad_modes", []))
    probe.grad_modes.clear()
    return modes


def _requires_grad(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


@collect
def check_vae_methods(vae_class: type, device: Any, inputs: dict) -> dict:
    """forward, encode (mu, no gradient tracking) and reconstruct (decoder, no tracking)."""
    device = torch.device(device)
    encoder = _ProbeEncoder(inputs["encoder_weight"], inputs["encoder_bias"])
    decoder = _ProbeDecoder(inputs["decoder_weight"], inputs["decoder_bias"])
    vae = vae_class(encoder, decoder, device)
    (x,) = _copies(inputs["x"], device=device)
    out = vae(x)
    found = {
        "forward": out,
        "forward_tracked": _requires_grad(out[0]) if _indexable(out) else False,
    }
    # a stand-in sampler tells whether forward samples z through self.reparameterize
    vae.reparameterize = lambda mu, log_var: mu + log_var
    try:
        standin = vae(x)
    finally:
        del vae.reparameterize
    found["standin"] = standin
    g = inputs["g"]
    if _indexable(standin) and _requires_grad(standin[0]) and standin[0].shape == g.shape:
        encoder.zero_grad()
        (standin[0] * g.to(standin[0].device)).sum().backward()
        found["standin_grad"] = encoder.linear.weight.grad
    _grad_modes(encoder), _grad_modes(decoder)
    mu = vae.encode(x)
    found["encode_grad_modes"] = _grad_modes(encoder)
    if isinstance(mu, torch.Tensor):  # evidence travels on the CPU: the device is seen here
        expect(mu.device == x.device, f"encode(x) should stay on {x.device}, got {mu.device}")
    (z,) = _copies(inputs["z"], device=device)
    _grad_modes(decoder)
    x_hat = vae.reconstruct(z)
    found["reconstruct_grad_modes"] = _grad_modes(decoder)
    return {
        **found,
        "encode": mu,
        "encode_tracked": _requires_grad(mu),
        "reconstruct": x_hat,
        "reconstruct_tracked": _requires_grad(x_hat),
    }


def _indexable(value: Any) -> bool:
    return isinstance(value, tuple | list) and len(value) > 0


@check_vae_methods.inputs
def _vae_methods_inputs() -> dict:
    """The probe's weights, drawn as nn.Linear draws them, and its inputs."""
    encoder_bound, decoder_bound = 1 / math.sqrt(PIXELS), 1 / math.sqrt(LATENT)
    return {
        "encoder_weight": torch.empty(2 * LATENT, PIXELS).uniform_(-encoder_bound, encoder_bound),
        "encoder_bias": torch.empty(2 * LATENT).uniform_(-encoder_bound, encoder_bound),
        "decoder_weight": torch.empty(PIXELS, LATENT).uniform_(-decoder_bound, decoder_bound),
        "decoder_bias": torch.empty(PIXELS).uniform_(-decoder_bound, decoder_bound),
        "x": torch.rand(5, PIXELS),
        "z": torch.randn(5, LATENT),
        "g": torch.randn(5, PIXELS),
    }


def _probe_reference(inputs: dict) -> dict:
    """What the probe VAE gives, in float64: mu, log_var, the decoded stand-in z = mu + log_var
    with its gradient wrt the encoder's weight, and the decoded z."""
    weight = inputs["encoder_weight"].double().requires_grad_()
    mu, log_var = F.linear(inputs["x"].double(), weight, inputs["encoder_bias"].double()).chunk(
        2, -1
    )

    def decode(z: torch.Tensor) -> torch.Tensor:
        w, b = inputs["decoder_weight"].double(), inputs["decoder_bias"].double()
        return torch.sigmoid(F.linear(z, w, b))

    standin = decode(mu + log_var)
    (grad,) = torch.autograd.grad((standin * inputs["g"].double()).sum(), weight)
    return {
        "mu": mu.detach(),
        "log_var": log_var.detach(),
        "standin": standin.detach(),
        "grad": grad,
        "decoded": decode(inputs["z"].double()),
    }


@check_vae_methods.judge
def _judge_vae_methods(inputs: dict, found: dict) -> None:
    want = _probe_reference(inputs)
    x = inputs["x"]
    x_hat, mu, log_var = _tensors(found.get("forward"), 3, "forward(x)")
    expect_shape(x_hat, x.shape, "x_hat")
    core.expect_close(
        mu, want["mu"], "forward(x)[1] should be the encoder's mu", rtol=1e-5, atol=1e-5
    )
    core.expect_close(
        log_var,
        want["log_var"],
        "forward(x)[2] should be the encoder's log_var",
        rtol=1e-5,
        atol=1e-5,
    )
    keep_graph = "forward(x) should keep the graph: training needs gradients"
    expect(found.get("forward_tracked") is True, keep_graph)
    standin, _, _ = _tensors(found.get("standin"), 3, "forward(x)")
    core.expect_close(
        standin,
        want["standin"],
        "forward(x) should decode z = self.reparameterize(mu, log_var)",
        rtol=1e-5,
        atol=1e-5,
    )
    grad = found.get("standin_grad")
    expect(
        isinstance(grad, torch.Tensor) and _allclose(grad, want["grad"], 1e-4, 1e-5),
        f"{keep_graph} from the encoder's weights to x_hat (do not detach mu or log_var)",
    )
    mu = _tensor(found.get("encode"), "encode(x)")
    expect_shape(mu, (5, LATENT), "encode(x)")
    core.expect_close(mu, want["mu"], "encode(x) should return the mean mu", rtol=1e-5, atol=1e-5)
    expect(
        found.get("encode_tracked") is False,
        "encode(x) tracks gradients: compute it under torch.no_grad()",
    )
    _expect_no_graph(found.get("encode_grad_modes"), "encode(x)", "encoder")
    x_hat = _tensor(found.get("reconstruct"), "reconstruct(z)")
    expect_shape(x_hat, (5, PIXELS), "reconstruct(z)")
    core.expect_close(
        x_hat, want["decoded"], "reconstruct(z) should be decoder(z)", rtol=1e-5, atol=1e-5
    )
    expect(
        found.get("reconstruct_tracked") is False,
        "reconstruct(z) tracks gradients: compute it under torch.no_grad()",
    )
    _expect_no_graph(found.get("reconstruct_grad_modes"), "reconstruct(z)", "decoder")


def _expect_no_graph(modes: Any, what: str, network: str) -> None:
    """The probe network ran with gradient tracking off in every call `what` made."""
    expect(
        isinstance(modes, list) and all(type(m) is bool for m in modes),
        f"{what}: the check could not tell whether it tracked gradients",
    )
    expect(
        not any(modes),
        f"{what} ran the {network} with gradient tracking on, so a graph was built (.detach() "
        "only drops it afterwards): compute it under torch.no_grad()",
    )


# ---------------------------------------------------------------- the encoder and decoder

# The encoder is probed on N(0, I) inputs and on the same inputs WIDE times larger. A network of
# Linear layers and (Leaky)ReLUs is positively homogeneous up to its biases: a head that ends in
# a Linear layer grows about WIDE-fold on both sides, of both signs. A head that ends in an
# activation cannot: ReLU, Softplus (and Sigmoid) never go below 0, ELU, GELU, SiLU and friends
# are bounded below, Sigmoid, Tanh and a clamp bounded, and a LeakyReLU makes its negative side
# 100 times smaller than its positive one. Over 1500 fresh reference encoders (3000 heads,
# PROBES inputs each) the smaller side was at least 0.30 of the larger (BALANCE 0.1; LeakyReLU
# heads: at most 0.03 over 600 heads) and each side grew at least 2608-fold (GROWTH 100; a
# side bounded by 10, like log_var.clamp(-10, 10), grows at most about 30-fold). These are
# properties of fresh networks, not statistics of a sample: no seed of the grader moves them.
WIDE = 1e4
GROWTH = 100.0  # the least growth of either side from N(0, I) to WIDE-times larger inputs
BALANCE = 0.1  # the least ratio of the smaller to the larger of the two sides
# Without activations between its layers a network is affine: f((a + b) / 2) = (f(a) + f(b)) / 2
# up to float32 rounding (~1e-6 of its scale). The reference encoder's heads, and the logit of
# the reference decoder, missed that midpoint rule by at least 0.118 and 0.18 of their scale
# over 1500 fresh networks (AFFINE 1e-3).
AFFINE = 1e-3
# For codes WIDE times N(0, I) a sigmoid saturates: over 1500 fresh reference decoders at least
# 88% of the pixels came within EDGE of 0 for some of the PROBES codes and within EDGE of 1 for
# others (REACH 0.5). A Softmax over the pixels (at most 7% of them), a sigmoid of a sigmoid or
# of a ReLU (none) cannot.
EDGE, REACH = 0.01, 0.5
# The lab's layer sizes: a part has at least these weights (the elements of its matrices).
BODY, HEAD, DECODER = (PIXELS, 256, 64), (64, 32, LATENT), (LATENT, 32, 64, 256, PIXELS)
PROBES = 512


@contextlib.contextmanager
def _evaluating(module: Any) -> Iterator[None]:
    """`module` in eval mode without gradients; every submodule's mode given back afterwards."""
    modes = [(m, m.training) for m in module.modules()] if isinstance(module, nn.Module) else []
    try:
        for m, _ in modes:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.train(mode)


def _export(module: Any, example: tuple[torch.Tensor, ...]) -> dict:
    """`module` (or function) as a program, traced in eval mode without gradients."""
    with _evaluating(module):
        return program.export_program(module, example)


def _load(found: dict, key: str, what: str) -> program.Program:
    """The program the kernel exported, validated; CheckFailed if it is missing or invalid."""
    payload = found.get(key)
    expect(isinstance(payload, dict) and evidence.OBJECT not in payload, f"{what} was not exported")
    try:
        return program.load_program(payload)
    except program.ProgramError as exc:
        raise CheckFailed(f"{what} could not be read back: {exc}") from None


def _run(prog: program.Program, x: torch.Tensor, what: str) -> Any:
    """prog(x) without gradients, as evidence (a tuple becomes a list); a program exported with a
    fixed batch size runs on batches of that size."""
    if x.is_floating_point() and prog.inputs[0].dtype.is_floating_point:
        x = x.to(prog.inputs[0].dtype)  # a program exported in float64 runs on float64 inputs
    chunk = prog.inputs[0].shape[0] if prog.batch == "static" and prog.inputs[0].shape else len(x)
    expect(
        chunk > 0 and len(x) % chunk == 0,
        f"{what} only runs on batches of {chunk}: do not fix the batch size",
    )
    try:
        with torch.no_grad():
            outs = [evidence.to_evidence(prog(part)) for part in x.split(chunk)]
    except program.ProgramError as exc:
        raise CheckFailed(f"{what} failed on the grader's inputs: {exc}") from None
    if len(outs) == 1:
        return outs[0]
    if all(isinstance(o, torch.Tensor) for o in outs):
        return torch.cat(outs)
    if all(isinstance(o, list) and len(o) == len(outs[0]) for o in outs):
        return [_run_cat([o[i] for o in outs]) for i in range(len(outs[0]))]
    return outs[0]


def _run_cat(parts: list) -> Any:
    return torch.cat(parts) if all(isinstance(p, torch.Tensor) for p in parts) else parts[0]


def _encoded(prog: program.Program, x: torch.Tensor, what: str = "encoder(x)") -> tuple:
    """(mu, log_var) of the encoder's program on x, each (len(x), LATENT)."""
    mu, log_var = _tensors(_run(prog, x, what), 2, what)
    for name, head in (("mu", mu), ("log_var", log_var)):
        expect_shape(head, (len(x), LATENT), f"{what} {name}")
    return mu, log_var


def _expect_unconstrained(name: str, near: torch.Tensor, far: torch.Tensor) -> None:
    """The head `name` takes large values of both signs, in proportion, on wide inputs."""
    hint = "mu and log_var take any real value, so end each head with a Linear layer"
    expect(
        core.isfinite(far).all().item(),
        f"the {name} head returns NaN or inf on large inputs (an exp at its end?): {hint}",
    )
    high, low = far.max().item(), (-far).max().item()  # the largest output and -(the smallest)
    wide = f"even for inputs {WIDE:g} times larger than N(0, I)"
    expect(
        low > 0,
        f"the {name} head never outputs a negative value, {wide} (a ReLU, Softplus or Sigmoid at its end?): {hint}",
    )
    expect(high > 0, f"the {name} head never outputs a positive value, {wide}: {hint}")
    near_high, near_low = max(near.max().item(), 1e-30), max((-near).max().item(), 1e-30)
    expect(
        low >= GROWTH * near_low,
        f"the {name} head never goes below {-low:.3g}, {wide} (an ELU, GELU, SiLU, Sigmoid, "
        f"Tanh or a clamp at its end?): {hint}",
    )
    expect(
        high >= GROWTH * near_high,
        f"the {name} head never goes above {high:.3g}, {wide} (a Sigmoid, Tanh or a clamp at "
        f"its end?): {hint}",
    )
    expect(
        low >= BALANCE * high,
        f"the {name} head's negative values are about {high / low:.0f} times smaller than its "
        f"positive ones (a LeakyReLU at its end?): {hint}",
    )
    expect(
        high >= BALANCE * low,
        f"the {name} head's positive values are about {low / high:.0f} times smaller than its "
        f"negative ones: {hint}",
    )


@collect
def check_encoder_decoder(encoder: nn.Module, decoder: nn.Module, inputs: dict) -> dict:
    """Encoder: (mu, log_var) from unconstrained heads; decoder: pixels in [0, 1]."""
    (x,) = _copies(inputs["x"], device=core.device_of(encoder))
    with _evaluating(encoder):
        out = encoder(x)
    expect(
        isinstance(out, tuple | list) and len(out) == 2,
        f"encoder(x) should return a tuple of 2 tensors, got {type(out).__name__}",
    )
    (z,) = _copies(inputs["z"][: len(x)], device=core.device_of(decoder))
    return {"encoder": _export(encoder, (x,)), "decoder": _export(decoder, (z,))}


@check_encoder_decoder.inputs
def _encoder_decoder_inputs() -> dict:
    return {
        "x": torch.rand(32, PIXELS),
        "wide": torch.randn(PROBES, PIXELS),
        "z": torch.randn(PROBES, LATENT),
    }


@check_encoder_decoder.judge
def _judge_encoder_decoder(inputs: dict, found: dict) -> None:
    encoder = _load(found, "encoder", "the encoder")
    decoder = _load(found, "decoder", "the decoder")
    _encoded(encoder, inputs["x"])
    wide = inputs["wide"]
    near = _encoded(encoder, wide, "encoder(x) on N(0, I) inputs")
    far = _encoded(encoder, WIDE * wide, "encoder(x) on large inputs")
    for name, a, b in zip(("mu", "log_var"), near, far, strict=True):
        _expect_unconstrained(name, a, b)
    half = len(wide) // 2
    middle = _encoded(encoder, (wide[:half] + wide[half:]) / 2, "encoder(x) on N(0, I) inputs")
    for name, values, mid in zip(("mu", "log_var"), near, middle, strict=True):
        _expect_not_affine(
            values,
            mid,
            f"{name} is an affine function of x: follow the Linear layers by "
            "nn.LeakyReLU() as the lab says",
        )
    _expect_heads(encoder, inputs["x"])
    z = inputs["z"]
    for codes, what in ((z, "decoder(z)"), (WIDE * z, "decoder(z) for z far from 0")):
        x_hat = _tensor(_run(decoder, codes, what), what)
        expect_shape(x_hat, (len(codes), PIXELS), what)
        expect(
            bool(((x_hat >= 0) & (x_hat <= 1)).all()),
            f"{what} should be in [0, 1], got values from {x_hat.min().item():.3g} to "
            f"{x_hat.max().item():.3g}: end in Sigmoid",
        )
    reach = ((x_hat.amin(0) <= EDGE) & (x_hat.amax(0) >= 1 - EDGE)).double().mean().item()
    expect(
        reach >= REACH,
        "decoder(z) for z far from 0 should come close to 0 for some codes and to 1 for others "
        f"at each pixel, as a sigmoid does, but {reach:.0%} of the pixels did (a Softmax, or "
        "another activation before or after the Sigmoid?)",
    )
    x_hat = _tensor(_run(decoder, z, "decoder(z)"), "decoder(z)")
    mid = _tensor(_run(decoder, (z[:half] + z[half:]) / 2, "decoder(z)"), "decoder(z)")
    logit = lambda p: p.double().clamp(1e-6, 1 - 1e-6).logit()  # noqa: E731
    _expect_not_affine(
        logit(x_hat),
        logit(mid),
        "the decoder is a sigmoid of an affine function of z: put "
        "nn.LeakyReLU() between its Linear layers as the lab says",
    )
    weights = sum(_weight_counts(decoder, z[: len(inputs["x"])], 1)[0].values())
    expect(
        weights >= _weights(DECODER),
        f"the decoder has {weights} weights, the lab's {_arrows(DECODER)} has "
        f"{_weights(DECODER)}: a layer is missing",
    )


def _expect_not_affine(values: torch.Tensor, mid: torch.Tensor, message: str) -> None:
    """values = f(a ++ b) for two halves a, b; mid = f((a + b) / 2): f is not affine."""
    a, b = values.double().chunk(2)
    scale = max(a.abs().max().item(), b.abs().max().item(), 1e-30)
    expect((mid.double() - (a + b) / 2).abs().max().item() > AFFINE * scale, message)


def _weights(sizes: tuple[int, ...]) -> int:
    """The weights (matrix elements) of Linear layers of these sizes, one after the other."""
    return sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def _arrows(sizes: tuple[int, ...]) -> str:
    return " → ".join(str(n) for n in sizes)


def _weight_counts(prog: program.Program, x: torch.Tensor, outputs: int) -> list[dict]:
    """For each of the program's `outputs` tensor outputs on x: the weight matrices it depends
    on (name -> elements), found by the gradient of a random projection of that output."""
    weights = {
        name: t
        for name, t in prog.named_parameters().items()
        if t.is_floating_point() and t.dim() >= 2
    }
    prog.requires_grad_()
    try:
        with torch.enable_grad():
            out = prog(x)
        out = list(out) if isinstance(out, tuple | list) else [out]
        counts = []
        for value in out[:outputs]:
            if not (isinstance(value, torch.Tensor) and value.requires_grad and weights):
                counts.append({})
                continue
            grads = torch.autograd.grad(
                (value * torch.randn_like(value)).sum(),
                list(weights.values()),
                allow_unused=True,
                retain_graph=True,
            )
            counts.append(
                {
                    name: t.numel()
                    for (name, t), g in zip(weights.items(), grads, strict=True)
                    if g is not None and bool((g != 0).any())
                }
            )
    except program.ProgramError as exc:
        raise CheckFailed(f"the model failed on the grader's inputs: {exc}") from None
    finally:
        prog.requires_grad_(False)
    return counts + [{}] * (outputs - len(counts))


def _expect_heads(encoder: program.Program, x: torch.Tensor) -> None:
    """A shared body and two heads, each with its own weights, of the lab's sizes at least."""
    mu, log_var = _weight_counts(encoder, x, 2)
    shared = sum(n for name, n in mu.items() if name in log_var)
    own = {
        "mu": sum(n for name, n in mu.items() if name not in log_var),
        "log_var": sum(n for name, n in log_var.items() if name not in mu),
    }
    for name, n in own.items():
        expect(
            n > 0,
            f"mu and log_var should come from separate heads: every weight {name} depends on "
            f"also feeds the other (is one head used for both?)",
        )
    for name, n in own.items():
        expect(
            n >= _weights(HEAD),
            f"the {name} head has {n} weights of its own, the lab's {_arrows(HEAD)} head has "
            f"{_weights(HEAD)}: give each head its own Linear layers (the same shape as the "
            "mu head, with its own weights)",
        )
    expect(
        shared >= _weights(BODY),
        f"mu and log_var share {shared} weights, the lab's body {_arrows(BODY)} has "
        f"{_weights(BODY)}: compute both heads from one shared body",
    )


# ---------------------------------------------------------------- annealing, interpolation

EPOCHS = 21  # the weights of epochs 0..20
# A weight is a float or a one-element tensor: float32 rounds (epoch - warm_up) / annealing by
# at most 6e-8 (values in [0, 1]), far below the 1/annealing >= 0.05 of any shifted schedule.
WEIGHT_TOLERANCE = 1e-6


# The weights of the public schedule, epochs 0..20: its expected values, as a test case states
# them (the grader computes those of any schedule with autograder.references.kl_weight).
PUBLIC_SCHEDULE = {(5, 10): (0.0,) * 6 + tuple(k / 10 for k in range(1, 10)) + (1.0,) * 6}


def _expected_weights(warm_up: int, annealing: int) -> tuple[float, ...]:
    """The weights of epochs 0..EPOCHS-1 for this schedule: the grader's reference, or, in a
    self-check without it, the public schedule's stored values."""
    reference = oracle.grader_reference("kl_weight")
    if reference is not None:
        return tuple(reference(warm_up, annealing, epoch) for epoch in range(EPOCHS))
    if (warm_up, annealing) not in PUBLIC_SCHEDULE:
        raise CheckFailed(
            f"this self-check knows the weights of KLWeightManager(warm_up_rounds=5, "
            f"annealing_rounds=10) only; the grader checks warm_up={warm_up}, "
            f"annealing={annealing}"
        )
    return PUBLIC_SCHEDULE[warm_up, annealing]


@collect
def check_kl_weight_manager(
    manager_class: type, inputs: dict, warm_up: int = 5, annealing: int = 10
) -> dict:
    """Exact weights at epochs 0..20, asked in order and then again in the order of the
    inputs: 0 in warm-up, linear to 1 over the annealing rounds, then 1, whatever came before."""
    manager = manager_class(warm_up_rounds=warm_up, annealing_rounds=annealing)
    weights = []
    for epoch in inputs["order"]:
        w = manager(epoch)
        expect(
            (isinstance(w, int | float) and not isinstance(w, bool))
            or (isinstance(w, torch.Tensor) and w.numel() == 1),
            f"KLWeightManager(...)(epoch) should return a number, got {type(w).__name__}",
        )
        weights.append(float(w))
    return {"weights": weights}


@check_kl_weight_manager.inputs
def _kl_weight_manager_inputs(warm_up: int = 5, annealing: int = 10) -> dict:
    """Epochs 0..20 in order, then each again in a random order."""
    return {"order": list(range(EPOCHS)) + torch.randperm(EPOCHS).tolist()}


@check_kl_weight_manager.judge
def _judge_kl_weight_manager(
    inputs: dict, found: dict, warm_up: int = 5, annealing: int = 10
) -> None:
    order, got = inputs["order"], found.get("weights")
    expect(
        isinstance(got, list)
        and len(got) == len(order)
        and all(type(g) in (int, float) and math.isfinite(g) for g in got),
        f"KLWeightManager(...)(epoch) should return a number for each epoch 0..{EPOCHS - 1}",
    )
    call = f"KLWeightManager(warm_up_rounds={warm_up}, annealing_rounds={annealing})"
    expected = _expected_weights(warm_up, annealing)
    for index, (epoch, g) in enumerate(zip(order, got, strict=True)):
        w = expected[epoch]
        if index < EPOCHS:
            expect(
                abs(g - w) <= WEIGHT_TOLERANCE,
                f"{call}({epoch}) should be {w:g}, got {g:g} (epochs 0..{EPOCHS - 1} gave "
                f"{[round(v, 3) for v in got[:EPOCHS]]})",
            )
        expect(
            abs(g - w) <= WEIGHT_TOLERANCE,
            f"{call}({epoch}) gave {got[epoch]:g} when epochs 0..{EPOCHS - 1} were asked in "
            f"order, then {g:g} when asked again after other epochs; it should be {w:g} "
            "whenever it is asked: the weight depends only on the epoch it is given",
        )


PATHS = (((1, LATENT), 10), ((PIXELS,), 7), ((2, 3), 2))  # (shape of x and y, steps)


@collect
def check_interpolate_linear(interpolate_linear: Callable, device: Any, inputs: dict) -> dict:
    """Shape (steps, *x.shape), endpoints x and y, equal steps, on x's device."""
    device = torch.device(device)
    paths = []
    for x, y, (_, steps) in zip(inputs["x"], inputs["y"], PATHS, strict=True):
        x, y = _copies(x, y, device=device)
        path = interpolate_linear(x, y, steps)
        if isinstance(path, torch.Tensor):  # evidence travels on the CPU: the device is seen here
            expect(
                path.device == x.device, f"the path should stay on {x.device}, got {path.device}"
            )
        paths.append(path)
    return {"paths": paths}


@check_interpolate_linear.inputs
def _interpolate_inputs() -> dict:
    return {
        "x": [torch.randn(shape) for shape, _ in PATHS],
        "y": [torch.randn(shape) for shape, _ in PATHS],
    }


# Float32 rounding: a point of (1 - t) x + t y, x + t (y - x), torch.lerp or ((n - k) x + k y) / n
# is within a few units in the last place of |x| + |y|; PATH_ULPS of them bound each point and
# each step. Every mistake listed in tests/test_variants_02.py is off by at least |y - x| / steps.
PATH_ULPS = 16
EPS32 = torch.finfo(torch.float32).eps


@check_interpolate_linear.judge
def _judge_interpolate_linear(inputs: dict, found: dict) -> None:
    paths = found.get("paths")
    expect(isinstance(paths, list) and len(paths) == len(PATHS), "the paths were not computed")
    for path, x, y, (shape, steps) in zip(paths, inputs["x"], inputs["y"], PATHS, strict=True):
        path = _tensor(path, "interpolate_linear(x, y, steps)")
        expect_shape(path, (steps, *shape), f"interpolate_linear(x, y, {steps}) for x of {shape}")
        path, x, y = path.double(), x.double(), y.double()
        tolerance = PATH_ULPS * EPS32 * (x.abs() + y.abs())
        for point, end, name in ((path[0], x, "start at x"), (path[-1], y, "end at y")):
            off = (point - end).abs()
            expect(
                bool((off <= tolerance).all()),
                f"the path of {steps} points should {name}, but its "
                f"{'first' if end is x else 'last'} point is off by up to {off.max().item():.3g}",
            )
        step = (y - x) / (steps - 1)
        off = (path.diff(dim=0) - step).abs()
        expect(
            bool((off <= 2 * tolerance).all()),
            "the points should be equally spaced: x + t (y - x) for t = 0, 1/(steps-1), ..., 1; "
            f"a step of the path differs from (y - x) / (steps - 1) by {off.max().item():.3g}",
        )


# ---------------------------------------------------------------- the trained model


def vae_scores(
    encoder: Callable, decoder: Callable, x: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """(negative ELBO, KL) per image of x in nats: -log N(x | decoder(z), I/2) of one
    z ~ q(z|x) (the squared error plus GAUSSIAN_CONSTANT), plus the KL.

    `encoder` and `decoder` are exported programs (or modules); z is drawn here, from the
    caller's generator: the judge's, seeded by the grader."""
    squared_errors, kls = [], []
    for batch in x.split(batch_size):
        mu, log_var = _tensors(evidence.to_evidence(_call(encoder, batch)), 2, "encoder(x)")
        expect(
            mu.dim() == 2 and mu.shape[0] == len(batch) and log_var.shape == mu.shape,
            f"encoder(x) should return mu and log_var of shape ({len(batch)}, latent size), got "
            f"{tuple(mu.shape)} and {tuple(log_var.shape)}",
        )
        mu, scale = mu.double(), torch.exp(0.5 * log_var.double())
        z = oracle.posterior_sample(mu, scale)
        x_hat = _tensor(evidence.to_evidence(_call(decoder, z.float())), "decoder(z)")
        expect_shape(x_hat, tuple(batch.shape), "decoder(z)")
        squared_errors.append((x_hat.double() - batch.double()).pow(2).sum(1))
        kls.append(oracle.kl_to_prior(mu, scale).sum(1))
    rec, kl = torch.cat(squared_errors).mean().item(), torch.cat(kls).mean().item()
    return rec + kl + GAUSSIAN_CONSTANT, kl


def _float_dtype(module: Any) -> torch.dtype:
    """The dtype of a module's first floating-point parameter (float32 if it has none)."""
    if isinstance(module, nn.Module):
        for tensor in module.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
    return torch.float32


def _call(fn: Callable, x: torch.Tensor) -> Any:
    if isinstance(fn, program.Program):
        return _run(fn, x, "the exported model")
    with torch.no_grad():
        return fn(x)


def _max_loss(bar: str) -> float:
    """The bar a test cell names: `public` here, `hidden` in the grader's hidden module."""
    return core.named_bar(bar, MAX_LOSS, "kl_vae", "MAX_LOSS")


@collect
def check_trained_vae(
    vae: nn.Module,
    test_x: torch.Tensor,
    inputs: dict,
    bar: str = "public",
    max_loss: float | None = None,
    min_kl: float = MIN_KL,
) -> dict:
    """On the held-out test images: negative ELBO per image (squared error + KL + 392 ln pi,
    in nats) below the bar, KL above `min_kl`.

    The kernel exports the encoder and decoder; the judge scores them."""
    from dgmlab.data import mnist_test_images

    want_x = mnist_test_images().flatten(1)
    core.expect_test_set(
        test_x,
        want_x,
        "test_x",
        f"the {len(want_x)} MNIST test images as a ({len(want_x)}, {PIXELS}) tensor in [0, 1]",
    )
    (example,) = _copies(want_x[:EXAMPLE], device=core.device_of(vae))
    example = example.to(_float_dtype(vae))  # a model moved to float64 takes float64 images
    with _evaluating(vae):
        out = vae.encoder(example)
    expect(
        isinstance(out, tuple | list) and len(out) == 2 and isinstance(out[0], torch.Tensor),
        f"vae.encoder(x) should return a tuple (mu, log_var), got {type(out).__name__}",
    )
    z = out[0].detach().clone().as_subclass(torch.Tensor)  # a code of the model's latent size
    return {"encoder": _export(vae.encoder, (example,)), "decoder": _export(vae.decoder, (z,))}


@check_trained_vae.judge
def _judge_trained_vae(
    inputs: dict,
    found: dict,
    bar: str = "public",
    max_loss: float | None = None,
    min_kl: float = MIN_KL,
) -> str:
    from dgmlab.heldout import held_out_test_images

    threshold = _max_loss(bar) if max_loss is None else max_loss
    encoder = _load(found, "encoder", "the encoder")
    decoder = _load(found, "decoder", "the decoder")
    loss, kl = vae_scores(encoder, decoder, held_out_test_images().flatten(1))
    core.expect_test_scores(loss, kl, threshold, min_kl)
    # shown with the pass (a self-check's, a public call's feedback): where the model stands
    shown = f" (threshold {threshold})" if bar == "public" else ""  # a hidden bar stays hidden
    return f"held-out test images: negative ELBO {loss:.2f} nats per image{shown}, KL {kl:.2f} nats"


# ---------------------------------------------------------------- posterior-collapse diagnostics

# A batch of DIAGNOSTIC_ROWS encoder outputs whose columns are built so that every plausible
# mistake changes the answer: each column of mu is a mean plus a spread times a standardised
# normal vector (mean 0, variance exactly 1 over the rows), so its variance over the rows is the
# spread squared (times 50/49 with Bessel's correction: both are right, and no variance lies
# within a factor 2 of a threshold). Kinds: (mean, spread, log_var range).
DIAGNOSTIC_ROWS = 50
COLUMN_KINDS = {
    "active": (None, 1.0, (-3.0, -1.0)),  # variance 1: active; a random mean
    "constant": (3.0, 0.0, (-0.5, 0.5)),  # mu = +-3 on every row: inactive, but KL ~4.5, mu^2 9
    "small": (0.0, math.sqrt(1e-3), (-0.05, 0.05)),  # variance 0.001, sd 0.032: inactive
    "moderate": (0.2, math.sqrt(0.05), (-3.5, -2.5)),  # variance 0.05: active at 0.01, not at 0.3
    "collapsed": (0.0, 0.0, (0.0, 0.0)),  # the prior: KL 0, variance 0
    "wide": (None, math.sqrt(2.0), (-4.0, -2.0)),  # variance 2: active at every threshold
}
# Every batch holds each kind at least once, a second collapsed column (so that counting the
# inactive units never gives the right number) and up to three more columns of random kinds.
BASE_COLUMNS = ("active", "constant", "small", "moderate", "collapsed", "collapsed", "wide")
HIGH_THRESHOLD = 0.3  # the second threshold the check asks for: a hard-coded 0.01 is told apart
# Each known mistake counts differently at one threshold at least, and no two of them give the
# same pair of counts except by a coincidence of the random extra columns; the first whose pair
# matches the answer's names the mistake (tests/test_checks_kl_vae.py checks 200 batches).


def _diagnostic_batch() -> dict:
    """float64 (mu, log_var) of shape (DIAGNOSTIC_ROWS, columns), columns in a random order, and
    the variance of each column of mu over the rows, known by construction (its spread^2)."""
    kinds = list(BASE_COLUMNS) + [
        list(COLUMN_KINDS)[int(i)]
        for i in torch.randint(len(COLUMN_KINDS), (int(torch.randint(4, ())),))
    ]
    kinds = [kinds[int(i)] for i in torch.randperm(len(kinds))]
    mus, log_vars, variances = [], [], []
    for kind in kinds:
        mean, spread, (low, high) = COLUMN_KINDS[kind]
        if mean is None:
            mean = torch.randn((), dtype=torch.float64).item()
        elif kind == "constant" and torch.rand(()) < 0.5:
            mean = -mean
        noise = torch.randn(DIAGNOSTIC_ROWS, dtype=torch.float64)
        noise = (noise - noise.mean()) / noise.std(correction=0)
        mus.append(mean + spread * noise)
        log_vars.append(torch.empty(DIAGNOSTIC_ROWS, dtype=torch.float64).uniform_(low, high))
        variances.append(spread**2)
    return {
        "mu": torch.stack(mus, dim=1),
        "log_var": torch.stack(log_vars, dim=1),
        "variance": torch.tensor(variances, dtype=torch.float64),
    }


def _kl_per_dimension_reference(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """The mean over the rows of each dimension's KL, by torch.distributions in float64."""
    q = Normal(mu.double(), torch.exp(0.5 * log_var.double()))
    return kl_divergence(q, Normal(0.0, 1.0)).mean(0)


def _active_reference(inputs: dict, threshold: float) -> int:
    """Burda et al.'s count: the columns of mu whose variance over the rows exceeds threshold,
    from the variances the batch was built with (none lies within a factor 2 of a threshold,
    so the biased and the unbiased estimate agree)."""
    return int((inputs["variance"] > threshold).sum())


@collect
def check_collapse_diagnostics(
    kl_per_dimension: Callable, active_units: Callable, inputs: dict
) -> dict:
    """KL per latent dimension (mean over the images) and the count of active units, at the
    default threshold 0.01 and at another one."""
    mu, log_var = inputs["mu"], inputs["log_var"]
    return {
        "kl": kl_per_dimension(*_copies(mu, log_var)),
        "active": active_units(*_copies(mu)),
        "active_high": active_units(*_copies(mu), threshold=HIGH_THRESHOLD),
    }


@check_collapse_diagnostics.inputs
def _collapse_diagnostics_inputs() -> dict:
    return _diagnostic_batch()


def _count(value: Any, what: str) -> int:
    """The number of units the student's code returned: an int, or a one-element tensor."""
    if isinstance(value, dict) and value.get(evidence.OBJECT) == "ellipsis":
        raise CheckFailed(f"not implemented yet: {what} is still the stub `...`")
    if value is None:
        raise CheckFailed(f"not implemented yet: {what} is None (nothing was returned)")
    if isinstance(value, torch.Tensor):
        expect(
            value.numel() == 1,
            f"{what} should return one number, the count of active units, got a tensor of shape "
            f"{tuple(value.shape)} (sum the dimensions that pass the threshold)",
        )
        value = value.item()
    expect(
        type(value) in (int, float) and math.isfinite(value),
        f"{what} should return a number, got {type(value).__name__}",
    )
    expect(
        float(value).is_integer(),
        f"{what} should count the active units, got {value:g} (a fraction of the dimensions?)",
    )
    return int(value)


def _judge_kl_per_dimension(mu: torch.Tensor, log_var: torch.Tensor, got: Any) -> None:
    rows, dims = mu.shape
    what = f"kl_per_dimension(mu, log_var) for mu of shape ({rows}, {dims})"
    kl = core.answer_tensor({"kl": got}, "kl", what)
    expect(
        kl.dim() != 0,
        f"{what} is one number: keep one KL per latent dimension, shape ({dims},)",
    )
    expect(
        tuple(kl.shape) != (rows,),
        f"{what} has one value per image: average over the images (dim 0) instead, one value "
        f"per latent dimension (dim 1), shape ({dims},)",
    )
    expect_shape(kl, (dims,), what)
    expect(core.isfinite(kl).all().item(), f"{what} returned NaN or inf")
    want = _kl_per_dimension_reference(mu, log_var)
    for wrong, hint in (
        (rows * want, "summed over the images: average them"),
        (2 * want, "twice the KL: the factor 1/2 is missing"),
    ):
        expect(not _allclose(kl, wrong, 1e-6, 1e-9), f"{what} is {hint}")
    core.expect_close(
        kl,
        want,
        f"{what} should be the mean over the images of 1/2 (mu^2 + exp(log_var) - 1 - log_var)",
        rtol=1e-6,
        atol=1e-9,
    )


THRESHOLDS = (0.01, HIGH_THRESHOLD)


def _count_mistakes(inputs: dict) -> dict[str, list[int]]:
    """What each known mistake counts at THRESHOLDS, by what it does wrong."""
    mu, log_var = inputs["mu"].double(), inputs["log_var"]
    statistics = {
        "thresholds the standard deviation of mu: the activity is its variance": mu.std(0),
        "thresholds the mean of mu^2: the activity is the variance, mu minus its mean": mu.pow(
            2
        ).mean(0),
        "thresholds the KL of each dimension: the activity is the variance of mu": (
            _kl_per_dimension_reference(mu, log_var)
        ),
        "takes the variance over dim 1, the dimensions of one image: take it over dim 0, the "
        "images": mu.var(dim=1),
    }
    counts = {hint: [int((v > t).sum()) for t in THRESHOLDS] for hint, v in statistics.items()}
    want = [_active_reference(inputs, t) for t in THRESHOLDS]
    counts["counts the inactive units: active means a variance above the threshold"] = [
        mu.shape[1] - w for w in want
    ]
    counts["gives the count at 0.01 whatever the threshold: use the one it is given"] = [
        want[0]
    ] * 2
    return counts


@check_collapse_diagnostics.judge
def _judge_collapse_diagnostics(inputs: dict, found: dict) -> None:
    mu, log_var = inputs["mu"], inputs["log_var"]
    _judge_kl_per_dimension(mu, log_var, found.get("kl"))
    calls = ("active_units(mu)", f"active_units(mu, threshold={HIGH_THRESHOLD:g})")
    got = [
        _count(found.get(key), call)
        for key, call in zip(("active", "active_high"), calls, strict=True)
    ]
    want = [_active_reference(inputs, t) for t in THRESHOLDS]
    if got == want:
        return
    said = f"{calls[0]} is {got[0]} and {calls[1]} is {got[1]}, expected {want[0]} and {want[1]}"
    for hint, counts in _count_mistakes(inputs).items():
        expect(counts != got, f"{said}: it {hint}")
    raise CheckFailed(
        f"{said}: the number of the {mu.shape[1]} columns of mu whose variance over the "
        f"{len(mu)} rows (dim 0) exceeds the threshold"
    )
