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

from autograder.checks import core, evidence, program
from autograder.checks.core import EXACT_KL, CheckFailed, collect, expect, expect_shape
from autograder.checks.reparam import (  # noqa: F401  (the lab calls them as checks.*)
    check_reparameterization,
    check_reparameterization_gradients,
)

PIXELS, LATENT = 784, 8

# The trained, annealed VAE on the 2000 held-out MNIST test images (autograder.heldout, which a
# graded kernel cannot see): the lab's loss per image (squared error of one sampled code plus
# the KL, i.e. the negative ELBO of its Gaussian decoder N(x_hat, I/2) less the constant
# 392 ln(pi)) and the mean KL, computed by the judge on the exported encoder and decoder with
# its own z. Reference solution, lab schedule (warm-up 1, annealing 4, 8 epochs), training seeds
# 1..8 on CPU, each the mean over 20 judge seeds: loss 30.95, 30.96, 30.71, 30.77, 31.36, 30.59,
# 30.96, 31.35 (mean 30.96, sd 0.28, worst single judge draw 31.50); KL 9.73, 10.18, 9.72, 9.90,
# 9.50, 10.03, 9.67, 10.72. For comparison: weight 1 from the start for 8 epochs (seeds 1..3)
# 30.65-31.16 (KL 8.2-8.7); the lab's 2-epoch runs (seed 1) 40.1 (weight 1, KL 5.1) and 158
# (weight 1/784, KL 136); decoding the average image with a collapsed posterior 55.5 (KL 0).
MAX_LOSS = 36.0  # public: 4.6 nats (16 sd) above the worst reference seed
MIN_KL = 5.0  # a collapsed posterior has KL ~0-3 nats; the reference 9.5-10.7
# One z per held-out image: over 20 judge seeds the loss of one reference model varied with sd
# 0.04 to 0.10, small against the margins, so the bars bound the spread of training, not of the
# judge's sampling. The hidden bar is in autograder/hidden/kl_vae.py.
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
    expect(_allclose(got, want, 1e-6, 1e-6), DISAGREES)
    same = _kl_normal_result(found, "same")
    expect(_allclose(same, torch.zeros_like(mu_q), 0, 1e-9), "KL(q || q) should be 0")


@collect
def check_kl_normal_properties(kl_normal: Callable, inputs: dict) -> dict:
    """Non-negative, zero only for equal distributions, broadcasts a scalar p."""
    mu_q, sigma_q, mu_p, sigma_p = _normals(inputs)
    zero, one = torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64)
    return {
        "got": kl_normal(*_copies(mu_q, sigma_q, mu_p, sigma_p)),
        "broadcast": kl_normal(*_copies(mu_q, sigma_q, zero, one)),
        "moved": kl_normal(*_copies(mu_q, sigma_q, mu_q + 0.1, sigma_q)),
    }


@check_kl_normal_properties.inputs
def _kl_normal_properties_inputs() -> dict:
    return _random_normals(10_000)


@check_kl_normal_properties.judge
def _judge_kl_normal_properties(inputs: dict, found: dict) -> None:
    mu_q, sigma_q, mu_p, sigma_p = _normals(inputs)
    got = _kl_normal_result(found, "got")
    expect(bool((got >= -1e-12).all()), "kl_normal returned a negative value: KL is never < 0")
    broadcast = _kl_normal_result(found, "broadcast")
    want = _kl_normal_reference(mu_q, sigma_q, torch.zeros((), dtype=torch.float64), 1.0)
    expect(
        _allclose(broadcast, want, 1e-6, 1e-6),
        "kl_normal(mu_q, sigma_q, 0, 1) with 0-dim tensors for p should broadcast elementwise",
    )
    moved = _kl_normal_result(found, "moved")
    expect(bool((moved > 0).all()), "KL of two different normals should be > 0")
    # the values themselves, so that evidence of made-up non-negative numbers cannot pass
    expect(
        _allclose(got, _kl_normal_reference(mu_q, sigma_q, mu_p, sigma_p), 1e-6, 1e-6), DISAGREES
    )
    expect(
        _allclose(moved, _kl_normal_reference(mu_q, sigma_q, mu_q + 0.1, sigma_q), 1e-6, 1e-9),
        DISAGREES,
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
    expect(
        found.get("tracked") is True,
        "the KL is not connected to mu and log_var: do not detach them",
    )
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


# ---------------------------------------------------------------- the VAE's methods


class _ProbeEncoder(nn.Module):
    """A linear encoder returning (mu, log_var), for checking the VAE's methods."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(PIXELS, 2 * LATENT)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.linear(x).chunk(2, dim=-1)
        return mu, log_var


def _probe_decoder(weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    decoder = nn.Sequential(nn.Linear(LATENT, PIXELS), nn.Sigmoid())
    with torch.no_grad():
        decoder[0].weight.copy_(weight)
        decoder[0].bias.copy_(bias)
    return decoder


def _requires_grad(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


@collect
def check_vae_methods(vae_class: type, device: Any, inputs: dict) -> dict:
    """forward, encode (mu, no gradient tracking) and reconstruct (decoder, no tracking)."""
    device = torch.device(device)
    encoder = _ProbeEncoder(inputs["encoder_weight"], inputs["encoder_bias"])
    decoder = _probe_decoder(inputs["decoder_weight"], inputs["decoder_bias"])
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
    mu = vae.encode(x)
    if isinstance(mu, torch.Tensor):  # evidence travels on the CPU: the device is seen here
        expect(mu.device == x.device, f"encode(x) should stay on {x.device}, got {mu.device}")
    (z,) = _copies(inputs["z"], device=device)
    x_hat = vae.reconstruct(z)
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
    expect(_allclose(mu, want["mu"], 1e-5, 1e-5), "forward(x)[1] should be the encoder's mu")
    expect(
        _allclose(log_var, want["log_var"], 1e-5, 1e-5),
        "forward(x)[2] should be the encoder's log_var",
    )
    keep_graph = "forward(x) should keep the graph: training needs gradients"
    expect(found.get("forward_tracked") is True, keep_graph)
    standin, _, _ = _tensors(found.get("standin"), 3, "forward(x)")
    expect(
        _allclose(standin, want["standin"], 1e-5, 1e-5),
        "forward(x) should decode z = self.reparameterize(mu, log_var)",
    )
    grad = found.get("standin_grad")
    expect(
        isinstance(grad, torch.Tensor) and _allclose(grad, want["grad"], 1e-4, 1e-5),
        f"{keep_graph} from the encoder's weights to x_hat (do not detach mu or log_var)",
    )
    mu = _tensor(found.get("encode"), "encode(x)")
    expect_shape(mu, (5, LATENT), "encode(x)")
    expect(_allclose(mu, want["mu"], 1e-5, 1e-5), "encode(x) should return the mean mu")
    expect(
        found.get("encode_tracked") is False,
        "encode(x) tracks gradients: compute it under torch.no_grad()",
    )
    x_hat = _tensor(found.get("reconstruct"), "reconstruct(z)")
    expect_shape(x_hat, (5, PIXELS), "reconstruct(z)")
    expect(_allclose(x_hat, want["decoded"], 1e-5, 1e-5), "reconstruct(z) should be decoder(z)")
    expect(
        found.get("reconstruct_tracked") is False,
        "reconstruct(z) tracks gradients: compute it under torch.no_grad()",
    )


# ---------------------------------------------------------------- the encoder and decoder

# The encoder is probed on N(0, I) inputs and on the same inputs WIDE times larger. A network of
# Linear layers and (Leaky)ReLUs is positively homogeneous up to its biases: a head that ends in
# a Linear layer grows about WIDE-fold on both sides, of both signs. A head that ends in an
# activation cannot: ReLU, Softplus (and Sigmoid) never go below 0, ELU, GELU, SiLU and friends
# are bounded below, Sigmoid and Tanh bounded, and a LeakyReLU makes its negative side 100 times
# smaller than its positive one. Over 3000 fresh reference encoders (6000 heads, PROBES inputs
# each) the smaller side was at least 0.33 of the larger (BALANCE 0.1; LeakyReLU heads: at most
# 0.03 over 600 heads) and each side grew at least 222-fold (GROWTH 10; a bounded side about 1).
WIDE = 1000.0
GROWTH = 10.0  # the least growth of either side from N(0, I) to WIDE-times larger inputs
BALANCE = 0.1  # the least ratio of the smaller to the larger of the two sides
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
    expect(core.isfinite(far).all().item(), f"the {name} head returns NaN or inf on large inputs")
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
        f"the {name} head never goes below {-low:.3g}, {wide} (an ELU, GELU, SiLU, Sigmoid or "
        f"Tanh at its end?): {hint}",
    )
    expect(
        high >= GROWTH * near_high,
        f"the {name} head never goes above {high:.3g}, {wide} (a Sigmoid or Tanh at its end?): "
        f"{hint}",
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
    mu, log_var = _encoded(encoder, inputs["x"])
    near = _encoded(encoder, inputs["wide"], "encoder(x) on N(0, I) inputs")
    far = _encoded(encoder, WIDE * inputs["wide"], "encoder(x) on large inputs")
    for name, a, b in zip(("mu", "log_var"), near, far, strict=True):
        _expect_unconstrained(name, a, b)
    expect(not _allclose(mu, log_var, 0, 0), "mu and log_var should come from separate heads")
    z = inputs["z"]
    for codes, what in ((z, "decoder(z)"), (WIDE * z, "decoder(z) for z far from 0")):
        x_hat = _tensor(_run(decoder, codes, what), what)
        expect_shape(x_hat, (len(codes), PIXELS), what)
        expect(
            bool(((x_hat >= 0) & (x_hat <= 1)).all()),
            f"{what} should be in [0, 1]: end in Sigmoid",
        )


# ---------------------------------------------------------------- annealing, interpolation

EPOCHS = 21  # the weights of epochs 0..20


def _annealing_reference(warm_up: int, annealing: int, epoch: int) -> float:
    if epoch < warm_up:
        return 0.0
    return min(1.0, (epoch - warm_up) / annealing) if annealing else 1.0


@collect
def check_kl_weight_manager(
    manager_class: type, inputs: dict, warm_up: int = 5, annealing: int = 10
) -> dict:
    """Exact weights at epochs 0..20: 0 in warm-up, linear to 1 over the annealing rounds, 1."""
    manager = manager_class(warm_up_rounds=warm_up, annealing_rounds=annealing)
    weights = []
    for epoch in range(EPOCHS):
        w = manager(epoch)
        expect(
            (isinstance(w, int | float) and not isinstance(w, bool))
            or (isinstance(w, torch.Tensor) and w.numel() == 1),
            f"KLWeightManager(...)(epoch) should return a number, got {type(w).__name__}",
        )
        weights.append(float(w))
    return {"weights": weights}


@check_kl_weight_manager.judge
def _judge_kl_weight_manager(
    inputs: dict, found: dict, warm_up: int = 5, annealing: int = 10
) -> None:
    got = found.get("weights")
    expect(
        isinstance(got, list)
        and len(got) == EPOCHS
        and all(type(g) in (int, float) and math.isfinite(g) for g in got),
        f"KLWeightManager(...)(epoch) should return a number for each epoch 0..{EPOCHS - 1}",
    )
    want = [_annealing_reference(warm_up, annealing, e) for e in range(EPOCHS)]
    for epoch, (g, w) in enumerate(zip(got, want, strict=True)):
        expect(
            abs(g - w) <= 1e-9,
            f"KLWeightManager(warm_up_rounds={warm_up}, annealing_rounds={annealing})({epoch}) "
            f"should be {w:g}, got {g:g} (epochs 0..20 gave {[round(v, 3) for v in got]})",
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


@check_interpolate_linear.judge
def _judge_interpolate_linear(inputs: dict, found: dict) -> None:
    paths = found.get("paths")
    expect(isinstance(paths, list) and len(paths) == len(PATHS), "the paths were not computed")
    for path, x, y, (shape, steps) in zip(paths, inputs["x"], inputs["y"], PATHS, strict=True):
        path = _tensor(path, "interpolate_linear(x, y, steps)")
        expect_shape(path, (steps, *shape), f"interpolate_linear(x, y, {steps}) for x of {shape}")
        expect(_allclose(path[0], x, 0, 1e-6), "the path should start at x")
        expect(_allclose(path[-1], y, 0, 1e-6), "the path should end at y")
        step = (y - x) / (steps - 1)
        expect(
            _allclose(path.diff(dim=0), step.expand(steps - 1, *shape), 0, 1e-5),
            "the points should be equally spaced: x + t (y - x) for t = 0, 1/(steps-1), ..., 1",
        )


# ---------------------------------------------------------------- the trained model


def vae_scores(
    encoder: Callable, decoder: Callable, x: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """(loss, KL) per image of x: the squared error of one decoded z ~ q(z|x), plus the KL.

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
        mu, log_var = mu.double(), log_var.double()
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        x_hat = _tensor(evidence.to_evidence(_call(decoder, z.float())), "decoder(z)")
        expect_shape(x_hat, tuple(batch.shape), "decoder(z)")
        squared_errors.append((x_hat.double() - batch.double()).pow(2).sum(1))
        kls.append((0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)).sum(1))
    rec, kl = torch.cat(squared_errors).mean().item(), torch.cat(kls).mean().item()
    return rec + kl, kl


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
    """On the held-out test images: loss (squared error + KL) per image below the bar, KL above
    `min_kl`. The kernel exports the encoder and decoder; the judge scores them."""
    from autograder.data import mnist_test_images

    want_x = mnist_test_images().flatten(1)
    core.expect_test_set(
        test_x,
        want_x,
        "test_x",
        f"the {len(want_x)} MNIST test images as a ({len(want_x)}, {PIXELS}) tensor in [0, 1]",
    )
    (example,) = _copies(want_x[:EXAMPLE], device=core.device_of(vae))
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
) -> None:
    from autograder.heldout import held_out_test_images

    threshold = _max_loss(bar) if max_loss is None else max_loss
    encoder = _load(found, "encoder", "the encoder")
    decoder = _load(found, "decoder", "the decoder")
    loss, kl = vae_scores(encoder, decoder, held_out_test_images().flatten(1))
    if bar == "public":  # a self-check shows the student where the model stands
        print(
            f"held-out test images: loss {loss:.2f} per image (threshold {threshold}), KL {kl:.2f} nats"
        )
    core.expect_test_scores(loss, kl, threshold, min_kl)
