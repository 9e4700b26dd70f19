"""Checks of lab 01: the fully connected and convolutional autoencoders, the Gaussian noise
transform, the denoising wrapper, the trained convolutional denoiser and the fully connected
denoiser run on images.

Every check is a `core.Check`: its collector runs the student's code in the student's kernel
and returns plain data (outputs on the grader's inputs, or the models exported with
`program.export_program`); its judge decides from that evidence alone, in the grader's process.
The judges of the models rebuild the exported graphs with `program.load_program` and run them
on inputs of their own: layer sizes come from the parameters' shapes in the order the graph runs
them, never from class names or the order of registration, and the activations from what the
layers compute with weights the judge puts in them.

Statistical assertions use the threshold of `stats` (C = 5.5 standard errors, false failure
P_ONE = 3.8e-8 each under a normal approximation); each check states its total next to them.
One module for the lab's six checks, in the lab's order.
"""

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dgmlab.checks import core, program, stats
from dgmlab.checks.core import answer_tensor, collect, device_of, expect, expect_shape

SIDE = 28
PIXELS = SIDE * SIDE
CODE = 64
AE_LAYERS = [(PIXELS, 128), (128, CODE), (CODE, 128), (128, PIXELS)]
AE_PARAMETERS = 218_192  # the AE of the lab: 100,480 + 8,256 + 8,320 + 101,136
CAE_FILTERS = [16, 32, 64]
BATCH = 256  # images per statistical call: 256 * 784 = 200,704 pixels

# The trained denoiser is scored on the 2 000 held-out MNIST test images (dgmlab.heldout:
# a graded kernel never sees them), corrupted by the judge's own noise: the per-image sum of
# squared errors of its output against the clean image.
NOISE_STD = 0.3
CHUNK = 500  # images per program call when the judge scores the denoiser
# The public bar of the seed assignment, on the held-out images: the lab's reference solution
# (one epoch in batches of 32, ten training seeds) scores under half of it, at most 9.8 (a margin
# of 10.2); stopped after 400 of its 1 875 steps 15.6 to 22.2; an untrained CAE 130 to 220; the
# noisy image itself (what nn.Identity() returns) 36.5; the average training image 55. The hidden
# bar of the test cell `bar="hidden"`, and the reference runs, are in
# autograder/hidden/autoencoders.py.
PUBLIC_BAR = 20.0


def _instantiate(cls: Callable[..., Any], what: str, *args: Any) -> Any:
    """`cls(*args)`, or a CheckFailed saying that constructing it failed."""
    try:
        return cls(*args)
    except Exception as exc:  # the student's constructor: report it as a failed check
        raise core.CheckFailed(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _expect_images(y: Any, shape: tuple[int, ...], what: str, hint: str = "") -> torch.Tensor:
    """`y` is a finite tensor of `shape` with every value in [0, 1]; `hint` says how."""
    y = core.expect_tensor(y, what)
    expect_shape(y, shape, what)
    expect(core.isfinite(y).all().item(), f"{what} contains NaN or inf")
    expect(
        y.min().item() >= 0 and y.max().item() <= 1,
        f"{what} has values in [{y.min().item():.3f}, {y.max().item():.3f}], expected [0, 1]"
        + hint,
    )
    return y


SIGMOID = ": end the decoder with a sigmoid"
CLIP = ": clip the noisy images to [0, 1]"


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _snapshot(value: Any) -> Any:
    """A returned value as it is now: a later call cannot change a tensor already recorded."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


# ---------------------------------------------------------------- exported models


def _export(fn: Any, example: torch.Tensor, what: str) -> dict:
    """The program of `fn` (a module or bound method) traced on `example`, in eval mode."""
    owner = getattr(fn, "__self__", fn)
    modules = [owner] if isinstance(owner, nn.Module) else []
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.no_grad():
            return program.export_program(fn, (example,))
    except program.ProgramError as exc:
        raise core.CheckFailed(f"{what} could not be exported for grading: {exc}") from exc
    finally:
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def _load(found: dict, key: str, what: str) -> program.Program:
    """The program the collector exported under `key`, validated; CheckFailed if unusable."""
    try:
        return program.load_program(found.get(key))
    except program.ProgramError as exc:
        raise core.CheckFailed(f"the exported {what} is not a valid program: {exc}") from exc


def _run(model: program.Program, x: torch.Tensor, what: str) -> Any:
    """model(x) without gradients; a program that cannot run on x fails the check."""
    try:
        with torch.no_grad():
            return model(x)
    except program.ProgramError as exc:
        raise core.CheckFailed(f"{what} failed: {exc}") from exc


# ---------------------------------------------------------------- the layers of a model
# A model is judged by the function it computes, not by its classes or the order it registers
# its layers in: the judge finds the layers' tensors in the exported graph, puts weights of its
# own in them, and compares the outputs with the function the lab defines, computed here in
# float64 with the same weights.

# Outputs are compared with an absolute tolerance of TOLERANCE * (1 + |reference|). The layers
# take He-scaled weights, so every pre-activation is O(1) to O(10); the float32 rounding of one
# dot product of n <= 784 such terms is about sqrt(n) * 6e-8 * O(10) < 2e-5. Measured on the
# correct variants of tests/test_variants_01.py: at most 3e-6 (AE) and 9e-6 (CAE); the closest
# mistake there, a LeakyReLU for a ReLU, deviates by 0.027, a hardsigmoid for the sigmoid 0.057.
TOLERANCE = 1e-4


def _reads(payload: dict, model: program.Program) -> list[str]:
    """The stored tensors the graph reads, in the order it first reads them (the run order)."""
    order: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            name = value.get("tensor")
            if isinstance(name, str) and name in model.tensors and name not in order:
                order.append(name)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for node in payload["nodes"]:  # validated by load_program: the fields exist
        visit(node["args"])
        visit(list(node["kwargs"].values()))
    return order


def _weights(payload: dict, model: program.Program, ndim: int) -> list[tuple[int, ...]]:
    """Shapes of the `ndim`-dimensional parameters, in the order the model runs them."""
    params = set(model.parameter_names)
    return [
        tuple(model.tensors[name].shape)
        for name in _reads(payload, model)
        if name in params and model.tensors[name].dim() == ndim
    ]


def _substituted(model: program.Program, by_shape: dict[tuple[int, ...], torch.Tensor]) -> Any:
    """`model` with every parameter whose shape is a key of `by_shape` set to that tensor."""
    twin = copy.copy(model)
    twin.tensors = dict(model.tensors)
    for name in model.parameter_names:
        old = model.tensors[name]
        new = by_shape.get(tuple(old.shape))
        if new is not None:
            twin.tensors[name] = new.to(old.dtype)
    return twin


def _present(model: program.Program, shape: tuple[int, ...]) -> bool:
    """Whether the model holds a parameter of this shape (a layer's bias, or none)."""
    return any(tuple(model.tensors[n].shape) == shape for n in model.parameter_names)


def _he(*shape: int) -> torch.Tensor:
    """He-scaled weights of a linear layer (out, in) or a convolution (out, in, kh, kw): variance
    2 / fan-in, the fan-in being every dimension but the first. Not for a transposed
    convolution, whose weight is (in, out, kh, kw): `_expect_cae_decoder` scales those."""
    return torch.randn(shape) * math.sqrt(2 / math.prod(shape[1:]))


def _deviation(got: Any, want: torch.Tensor, what: str) -> float:
    """max |got - want| / (1 + |want|), or CheckFailed if `got` is not a tensor of want's shape."""
    got = core.expect_tensor(got, what)
    expect_shape(got, tuple(want.shape), what)
    expect(core.isfinite(got).all().item(), f"{what} contains NaN or inf")
    return ((got.double() - want).abs() / (1 + want.abs())).max().item()


# ---------------------------------------------------------------- AE


def _parts(model: nn.Module, x: torch.Tensor, name: str) -> dict:
    """The evidence of an autoencoder: its encoder and its decoder exported as programs (the
    decoder traced on the encoder's code), and its output on `x`, all in eval mode."""
    for part in ("encoder", "decoder"):
        expect(
            isinstance(getattr(model, part, None), nn.Module), f"{name} should define self.{part}"
        )
    found = {"encoder": _export(model.encoder, x, f"{name}().encoder")}
    mode = model.training
    model.eval()
    try:
        with torch.no_grad():
            found["output"] = _snapshot(model(x))
            code = model.encoder(x)
    finally:
        model.train(mode)
    if isinstance(code, torch.Tensor) and code.dim() >= 2 and code.shape[0] == x.shape[0]:
        found["decoder"] = _export(model.decoder, code.detach(), f"{name}().decoder")
    return found  # else the judge fails on the code's shape


@collect
def check_ae(AE: type[nn.Module], inputs: dict) -> dict:
    """AE(): self.encoder Linear 784-128 ReLU Linear 128-64 ReLU, self.decoder Linear 64-128
    ReLU Linear 128-784 Sigmoid, forward = decoder(encoder(x)); outputs in [0, 1]."""
    model = _instantiate(AE, "AE()")
    expect(isinstance(model, nn.Module), f"AE() should be an nn.Module, got {type(model).__name__}")
    # a clone: the judge reads inputs["x"]
    return _parts(model, inputs["x"].clone().to(device_of(model)), "AE")


@check_ae.inputs
def _ae_inputs() -> dict:
    # large inputs push any unsquashed output far out of [0, 1]
    return {"x": torch.rand(32, PIXELS), "large": 100 * torch.randn(32, PIXELS)}


def _sizes(shapes: list[tuple[int, ...]]) -> str:
    """Linear weights (out, in) as the lab writes the layers: 784 -> 128, 128 -> 64."""
    return ", ".join(f"{w[1]} -> {w[0]}" for w in shapes) or "none"


def _expect_sizes(
    part: program.Program, payload: dict, sizes: list[tuple[int, int]], name: str
) -> None:
    """AE's encoder or decoder runs linear layers of these (in, out) sizes, in this order."""
    want = [(o, i) for i, o in sizes]
    got = _weights(payload, part, 2)
    expect(got == want, f"AE's {name} should have linear layers {_sizes(want)}, got {_sizes(got)}")


def _linear_chain(
    x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], last: Callable
) -> torch.Tensor:
    """Linear layers with a ReLU after each but the last, then `last`; in float64."""
    h = x.double()
    for k, (weight, bias) in enumerate(layers):
        h = h @ weight.double().T + bias.double()
        h = last(h) if k == len(layers) - 1 else h.relu()
    return h


def _expect_linear_part(
    part: program.Program, sizes: list[tuple[int, int]], last: str, probes: list
) -> None:
    """AE's encoder (`last` "ReLU") or decoder (`last` "Sigmoid"): linear layers of these
    (in, out) sizes with a ReLU after each but the last, then `last`. Judged with other weights
    and biases in its layers (within the encoder, and within the decoder, each of its tensors
    has a shape of its own); a layer without a bias is judged as one whose bias is 0."""
    name = "encoder" if last == "ReLU" else "decoder"
    layers = [(_he(o, i), 0.5 * torch.randn(o)) for i, o in sizes]
    twin = _substituted(part, {tuple(t.shape): t for layer in layers for t in layer})
    used = [(w, b if _present(part, tuple(b.shape)) else 0 * b) for w, b in layers]
    final = torch.relu if last == "ReLU" else torch.sigmoid
    layout = "".join(f"Linear({i}, {o}), ReLU, " for i, o in sizes[:-1])
    layout += f"Linear({sizes[-1][0]}, {sizes[-1][1]}), {last}"
    for x in probes:
        what = f"AE().{name}"
        error = _deviation(_run(twin, x, what), _linear_chain(x, used, final), what)
        expect(
            error <= TOLERANCE,
            f"with other weights in its layers, AE().{name} differs from {layout} by up to "
            f"{error:.3g}: the {name} should be exactly that",
        )


def _expect_composed(found: dict, y: torch.Tensor, name: str) -> None:
    """The model's own output on x is its decoder's output on its encoder's code, `y`."""
    output = answer_tensor(found, "output", f"{name}()(x)")
    core.expect_close(
        output.float(),
        y.float(),
        f"{name}()(x) should be self.decoder(self.encoder(x))",
        rtol=1e-4,
        atol=1e-5,
    )


@check_ae.judge
def _judge_ae(inputs: dict, found: dict) -> None:
    encoder = _load(found, "encoder", "AE encoder")
    _expect_sizes(encoder, found["encoder"], AE_LAYERS[:2], "encoder")
    x = inputs["x"]
    code = core.expect_tensor(_run(encoder, x, "AE().encoder(x)"), "AE().encoder(x)")
    expect_shape(code, (32, CODE), "AE().encoder(x) for x of shape (32, 784)")
    expect("decoder" in found, "AE().decoder could not be run on the encoder's code")
    decoder = _load(found, "decoder", "AE decoder")
    _expect_sizes(decoder, found["decoder"], AE_LAYERS[2:], "decoder")
    what = "AE().decoder(AE().encoder(x)) for x of shape (32, 784)"
    y = _expect_images(_run(decoder, code, what), (32, PIXELS), what, SIGMOID)
    # large inputs push any unsquashed output far out of [0, 1]
    what = "AE().decoder(AE().encoder(x)) for large x (100 times a standard normal)"
    large = core.expect_tensor(_run(encoder, inputs["large"], what), what)
    _expect_images(_run(decoder, large, what), (32, PIXELS), what, SIGMOID)
    _expect_composed(found, y, "AE")
    # signed inputs and codes, small and large: the large ones push the sigmoid to 0 and 1
    _expect_linear_part(encoder, AE_LAYERS[:2], "ReLU", [x, 3 * torch.randn(32, PIXELS)])
    codes = [torch.rand(32, CODE), torch.randn(32, CODE), 10 * torch.randn(32, CODE)]
    _expect_linear_part(decoder, AE_LAYERS[2:], "Sigmoid", codes)


# ---------------------------------------------------------------- AddGaussianNoise


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _clipped_normal(center: float, std: float) -> tuple[float, float]:
    """Mean and standard deviation of clip(center + std * Z, 0, 1) for Z ~ N(0, 1)."""
    a, b = -center / std, (1 - center) / std
    pa, pb = _normal_cdf(a), _normal_cdf(b)
    da, db = (math.exp(-t * t / 2) / math.sqrt(2 * math.pi) for t in (a, b))
    inner = pb - pa  # mass of the unclipped part
    mean = (1 - pb) + center * inner + std * (da - db)
    square = (
        (1 - pb)
        + center**2 * inner
        + 2 * center * std * (da - db)
        + std**2 * (inner + a * da - b * db)
    )
    return mean, math.sqrt(square - mean**2)


def _expect_independent(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Two samples of equal size are uncorrelated, whatever their mean and scale."""
    a, b = a.double().flatten(), b.double().flatten()
    n = a.numel()
    sd = (a.var(correction=0) * b.var(correction=0)).sqrt()
    r = ((a * b).mean() - a.mean() * b.mean()).item() / max(sd.item(), 1e-300)
    # the sample correlation of n independent pairs has sd 1/sqrt(n) (n >= 12,544 here; the
    # sample moments change it by O(1/n)): false failure ~P_ONE. A constant sample, which has
    # no correlation to speak of, reads as 0 here; the fractions below catch it.
    # Power: a correlation of stats.detectable(1 / sqrt(n)) is caught with probability 0.999:
    # 0.027 for two halves of the lab's batch of 256 images (n = 100,352), 0.019 for
    # neighbouring pixels or two calls (n ~ 200,000); noise shared across images, rows or
    # calls has a correlation of 1.
    expect(abs(r) <= stats.C / math.sqrt(n), f"{what}: correlation {r:.4f}, expected 0")


def _expect_fraction(hits: torch.Tensor, p: float, what: str) -> None:
    """The fraction of True in `hits` (n iid Bernoulli(p) under a correct answer) is p."""
    n = hits.numel()
    frac = hits.double().mean().item()
    # binomial(n, p) / n, sd sqrt(p (1 - p) / n); exact false failure below 5e-8 for n p >= 1,000
    # (tests/test_checks_autoencoders.py computes it for each p and n the lab uses).
    # Power: a fraction off by stats.detectable(sd) is caught with probability 0.999; at the
    # lab's n = 256 * 784 = 200,704 pixels: 0.0041 for p = 0.048 (clipped, std 0.3), 0.0070 for
    # p = 0.16 (beyond one std), 0.0096 for p = 0.5. A standard deviation 3% off moves the
    # first two by 0.0049 and 0.0074; a mean 0.02 off moves the last by 0.027.
    expect(
        abs(frac - p) <= stats.C * math.sqrt(p * (1 - p) / n),
        f"{what}: {frac:.4f} of the pixels, expected {p:.4f} for Gaussian noise clipped to [0, 1]",
    )


@collect
def check_add_gaussian_noise(
    AddGaussianNoise: Callable[[float, float], Callable[[torch.Tensor], torch.Tensor]],
    inputs: dict,
    mean: float = 0.0,
    std: float = 0.3,
    images: int = BATCH,
) -> dict:
    """clip(x + N(mean, std^2), 0, 1), fresh noise per pixel, image and call; x left unchanged."""
    still = _instantiate(AddGaussianNoise, "AddGaussianNoise(0.0, 0.0)", 0.0, 0.0)
    x = inputs["x"].clone()
    try:
        found: dict = {"still": _snapshot(still(x))}
    except Exception as exc:  # the student's code: a torch.distributions.Normal refuses std 0
        raise core.CheckFailed(
            f"AddGaussianNoise(0.0, 0.0)(x) raised {type(exc).__name__}: {exc}; with mean and "
            "std both 0 it should return x"
        ) from exc
    noise = _instantiate(AddGaussianNoise, f"AddGaussianNoise({mean}, {std})", mean, std)
    gray = inputs["gray"].clone()
    found["first"] = _snapshot(noise(gray))
    found["gray_after"] = gray.clone()  # the input as the first call left it
    found["second"] = _snapshot(noise(gray))
    return found


@check_add_gaussian_noise.inputs
def _noise_inputs(mean: float = 0.0, std: float = 0.3, images: int = BATCH) -> dict:
    if not (0.05 <= 0.5 + mean - std and 0.5 + mean + std <= 0.95):  # the instructor's call
        raise ValueError("choose mean and std with mass clipped at both 0 and 1")
    return {"x": torch.rand(8, PIXELS), "gray": torch.full((images, 1, SIDE, SIDE), 0.5)}


@check_add_gaussian_noise.judge
def _judge_noise(
    inputs: dict, found: dict, mean: float = 0.0, std: float = 0.3, images: int = BATCH
) -> None:
    x, gray = inputs["x"], inputs["gray"]
    still = answer_tensor(found, "still", "AddGaussianNoise(0.0, 0.0)(x)")
    expect(
        still.shape == x.shape and core.equal(still, x),
        "AddGaussianNoise(0.0, 0.0)(x) should return x: add the noise to x, then clip",
    )
    y1 = _expect_images(
        answer_tensor(found, "first", "the noisy batch"), gray.shape, "the noisy batch", CLIP
    )
    after = found.get("gray_after")
    expect(
        isinstance(after, torch.Tensor) and after.shape == gray.shape and core.equal(after, gray),
        "the input batch changed: return a new tensor and leave the input as it was",
    )
    y2 = _expect_images(
        answer_tensor(found, "second", "the noisy batch of a second call"),
        gray.shape,
        "the noisy batch of a second call",
        CLIP,
    )
    expect(not core.equal(y1, y2), "two calls returned the same noise: draw fresh noise every call")

    half = images // 2
    _expect_independent(y1[:half], y1[half:], "noise of two images of a batch")
    _expect_independent(y1[..., :-1], y1[..., 1:], "noise of neighbouring pixels of a row")
    _expect_independent(y1[..., :-1, :], y1[..., 1:, :], "noise of neighbouring pixels of a column")
    _expect_independent(y1, y2, "noise of two calls")
    center = 0.5 + mean
    _expect_fraction(y1 <= 0, _normal_cdf(-center / std), "clipped to 0")
    _expect_fraction(y1 >= 1, 1 - _normal_cdf((1 - center) / std), "clipped to 1")
    for k in (-1, 0, 1):
        _expect_fraction(y1 < center + k * std, _normal_cdf(k), f"below mean {k:+d} std")
    m, s = _clipped_normal(center, std)
    # mean of n = images * 784 iid values in [0, 1], sd s / sqrt(n): false failure ~P_ONE.
    # Power: a mean off by stats.detectable(s / sqrt(n)) = 0.0053 (n = 200,704, s = 0.27) is
    # caught with probability 0.999.
    expect(
        abs(y1.double().mean().item() - m) <= stats.C * s / math.sqrt(y1.numel()),
        f"the noisy pixels average {y1.mean().item():.4f}, expected {m:.4f}",
    )
    # 10 statistical assertions, each failing a correct answer with probability below 5e-8:
    # false failure of the check <= 5e-7 (for images >= 32)


# ---------------------------------------------------------------- DAE


class _Double(nn.Module):
    """A stand-in autoencoder that doubles its input: tells noise before it from noise after."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


@collect
def check_dae(
    DAE: Callable[[nn.Module], nn.Module],
    inputs: dict,
    noise_factor: float = 0.3,
    images: int = BATCH,
) -> dict:
    """DAE(ae)(x, noise_factor) = ae(x + noise_factor * N(0, I)), fresh noise; x unchanged."""
    wrapped = _instantiate(DAE, "DAE(nn.Linear(2, 2))", nn.Linear(2, 2))
    found: dict = {"parameters": _parameters(wrapped) if isinstance(wrapped, nn.Module) else 0}
    # the stand-in autoencoders are the check's own: nn.Identity and _Double
    identity = _instantiate(DAE, "DAE(nn.Identity())", nn.Identity())
    doubling = _instantiate(DAE, "DAE(autoencoder)", _Double())
    x = inputs["x"].clone()
    with torch.no_grad():
        found["default"] = _snapshot(identity(x))
        found["first"] = _snapshot(doubling(x, noise_factor=noise_factor))
        found["second"] = _snapshot(doubling(x, noise_factor=noise_factor))
    found["x_after"] = x.clone()  # the input as the three calls left it
    return found


@check_dae.inputs
def _dae_inputs(noise_factor: float = 0.3, images: int = BATCH) -> dict:
    return {"x": torch.rand(images, PIXELS)}


@check_dae.judge
def _judge_dae(inputs: dict, found: dict, noise_factor: float = 0.3, images: int = BATCH) -> None:
    x = inputs["x"]
    count = found.get("parameters")
    expect(
        type(count) is int and count >= 6,
        "DAE(autoencoder) should keep the autoencoder as a submodule (self.autoencoder = ...)",
    )
    y_default = answer_tensor(found, "default", "DAE(nn.Identity())(x)")
    y1 = answer_tensor(found, "first", "DAE(autoencoder)(x, noise_factor)")
    y2 = answer_tensor(found, "second", "a second call")
    after = found.get("x_after")
    expect(
        isinstance(after, torch.Tensor) and after.shape == x.shape and core.equal(after, x),
        "the input batch changed: leave x as it was",
    )
    for y in (y_default, y1, y2):
        expect_shape(y, x.shape, "DAE's output")
    expect(
        not core.equal(y1, y2),
        "DAE returned the same output twice: add fresh noise to x every call",
    )
    e_default = (y_default - x) / 0.5
    e1 = (y1 - 2 * x) / (2 * noise_factor)  # the stand-in autoencoder doubles x + noise
    e2 = (y2 - 2 * x) / (2 * noise_factor)
    half = images // 2
    _expect_independent(e1[:half], e1[half:], "noise of two images of a batch")
    _expect_independent(e1[:, :-1], e1[:, 1:], "noise of neighbouring pixels")
    _expect_independent(e1, e2, "noise of two calls")
    # Each of the two calls below makes three assertions on n = images * 784 standardised noise
    # values (DESIGN §3; false failure ~P_ONE each). Power, at probability 0.999 and the lab's
    # n = 200,704: a mean off by stats.detectable(1 / sqrt(n)) = 0.019 sd (0.006 at noise_factor
    # 0.3), a variance off by stats.detectable(sqrt(2 / n)) = 0.027 (a scale 1.4% off), a mass
    # beyond 2 sd off by stats.detectable(sqrt(0.0455 * 0.9545 / n)) = 0.0040 (uniform noise of
    # the same variance has none).
    stats.expect_standard_normal(
        e_default.reshape(-1, 1), "(DAE(nn.Identity())(x) - x) / 0.5 with the default noise_factor"
    )
    stats.expect_standard_normal(
        e1.reshape(-1, 1), f"noise of DAE(x, noise_factor={noise_factor}) / noise_factor"
    )
    # 3 + 2 * 3 = 9 statistical assertions, each failing a correct answer with probability below
    # 5e-8 (tail fraction and variance: exact binomial / chi-square tails, in the tests): false
    # failure of the check <= 4.5e-7 (for images >= 32)


# ---------------------------------------------------------------- CAE


def _convolutions(payload: dict, model: program.Program) -> list[dict]:
    """The model's convolution layers in the order they run, each once: its weight and bias
    names, whether it is transposed, and its stride, padding, dilation, output padding, groups.

    A convolution node of the graph is aten.convolution(input, weight, bias, stride, padding,
    dilation, transposed, output_padding, groups); its weight is a stored tensor (a parameter)
    of shape (filters, channels in, kh, kw), or (channels in, filters, kh, kw) when transposed."""
    fields = ("input", "weight", "bias", "stride", "padding", "dilation", "transposed")
    fields += ("output_padding", "groups")
    layers, seen = [], set()
    for node in payload["nodes"]:  # validated by load_program: the fields exist
        if node["op"] != "aten.convolution.default":
            continue
        args = dict(zip(fields, node["args"], strict=False)) | node["kwargs"]
        weight, bias = args.get("weight"), args.get("bias")
        name = weight.get("tensor") if isinstance(weight, dict) else None
        expect(name in model.tensors, "CAE's convolutions should use their layers' weights")
        bias_name = bias.get("tensor") if isinstance(bias, dict) else None
        expect(
            bias is None or bias_name in model.tensors,
            "CAE's convolutions should use their layers' biases",
        )
        if name in seen:
            continue
        seen.add(name)
        layers.append(
            {
                "weight": name,
                "bias": bias_name,
                "transposed": args.get("transposed") is True,
                "shape": tuple(model.tensors[name].shape),
                **{k: args.get(k) for k in fields[3:6] + fields[7:]},
            }
        )
    return layers


def _encoder_reference(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """Three blocks Conv2d(3x3, padding=1), ReLU, MaxPool2d(2), in float64."""
    h = x.double()
    for weight, bias in layers:
        h = F.max_pool2d(F.conv2d(h, weight.double(), bias.double(), padding=1).relu(), 2)
    return h


def _decoder_reference(z: torch.Tensor, layers: list[dict], tensors: dict) -> torch.Tensor:
    """The transposed convolutions `layers` with a ReLU after each but the last, then a
    sigmoid, in float64, with the weights in `tensors`."""
    h = z.double()
    for k, layer in enumerate(layers):
        bias = tensors[layer["bias"]].double() if layer["bias"] else None
        h = F.conv_transpose2d(
            h,
            tensors[layer["weight"]].double(),
            bias,
            stride=layer["stride"],
            padding=layer["padding"],
            output_padding=layer["output_padding"],
            groups=layer["groups"],
            dilation=layer["dilation"],
        )
        h = h.sigmoid() if k == len(layers) - 1 else h.relu()
    return h


ENCODER_LAYOUT = "three blocks Conv2d(3x3, padding=1), ReLU, MaxPool2d(2)"
DECODER_LAYOUT = "its transposed convolutions with a ReLU after each but the last, then a sigmoid"


@collect
def check_cae(CAE: type[nn.Module], inputs: dict) -> dict:
    """CAE(): self.encoder three blocks Conv2d(3x3, padding=1) ReLU MaxPool2d(2) with 16, 32, 64
    filters; self.decoder transposed convolutions, ReLUs between them, a sigmoid at the end;
    forward = decoder(encoder(x)), (B, 1, 28, 28) in and out; under a quarter of AE's parameters.
    """
    model = _instantiate(CAE, "CAE()")
    expect(
        isinstance(model, nn.Module), f"CAE() should be an nn.Module, got {type(model).__name__}"
    )
    return _parts(model, inputs["x"].clone().to(device_of(model)), "CAE")


@check_cae.inputs
def _cae_inputs() -> dict:
    return {"x": torch.rand(16, 1, SIDE, SIDE), "one": torch.rand(1, 1, SIDE, SIDE)}


def _expect_cae_encoder(encoder: program.Program, probes: list[torch.Tensor]) -> None:
    """CAE's encoder computes ENCODER_LAYOUT, with other weights and biases in its layers (each
    of its tensors has a shape of its own)."""
    channels = [1, *CAE_FILTERS]
    layers = [
        (_he(o, i, 3, 3), 0.5 * torch.randn(o))
        for i, o in zip(channels, channels[1:], strict=False)
    ]
    twin = _substituted(encoder, {tuple(t.shape): t for layer in layers for t in layer})
    used = [(w, b if _present(encoder, tuple(b.shape)) else 0 * b) for w, b in layers]
    for x in probes:
        got = _run(twin, x, "CAE().encoder(x)")
        error = _deviation(got, _encoder_reference(x, used), "CAE().encoder(x)")
        expect(
            error <= TOLERANCE,
            f"with other weights in its layers, CAE().encoder differs from {ENCODER_LAYOUT} "
            f"by up to {error:.3g}: the encoder should be exactly that",
        )


def _expect_cae_decoder(decoder: program.Program, payload: dict, codes: list) -> None:
    """CAE's decoder computes DECODER_LAYOUT with its own transposed convolutions (any number,
    channels and kernels), judged with other weights and biases in them."""
    layers = _convolutions(payload, decoder)
    expect(
        bool(layers) and all(layer["transposed"] for layer in layers),
        "CAE's decoder should climb back to 28 x 28 with transposed convolutions "
        "(nn.ConvTranspose2d) and no other convolution",
    )
    twin = copy.copy(decoder)
    twin.tensors = dict(decoder.tensors)
    for layer in layers:
        weight = decoder.tensors[layer["weight"]]
        channels, _, height, width = weight.shape
        # each output pixel of a transposed convolution sums about in * kh * kw / stride^2 terms
        fan_in = max(1, channels * height * width // math.prod(layer["stride"]))
        twin.tensors[layer["weight"]] = (torch.randn(weight.shape) * math.sqrt(2 / fan_in)).to(
            weight.dtype
        )
        if layer["bias"]:
            bias = decoder.tensors[layer["bias"]]
            twin.tensors[layer["bias"]] = (0.5 * torch.randn(bias.shape)).to(bias.dtype)
    for z in codes:
        got = _run(twin, z, "CAE().decoder(code)")
        want = _decoder_reference(z, layers, twin.tensors)
        error = _deviation(got, want, "CAE().decoder(code)")
        expect(
            error <= TOLERANCE,
            f"with other weights in its layers, CAE().decoder differs from {DECODER_LAYOUT} "
            f"by up to {error:.3g}: the decoder should be exactly that",
        )


@check_cae.judge
def _judge_cae(inputs: dict, found: dict) -> None:
    encoder = _load(found, "encoder", "CAE encoder")
    plain = [c["shape"] for c in _convolutions(found["encoder"], encoder) if not c["transposed"]]
    filters = [shape[0] for shape in plain]
    expect(
        filters == CAE_FILTERS,
        f"CAE's encoder should have Conv2d layers with {CAE_FILTERS} filters, got {filters}",
    )
    expect(all(shape[2:] == (3, 3) for shape in plain), "CAE's Conv2d layers should be 3x3")
    x = inputs["x"]
    code = core.expect_tensor(_run(encoder, x, "CAE().encoder(x)"), "CAE().encoder(x)")
    expect_shape(
        code, (16, CAE_FILTERS[-1], 3, 3), "CAE().encoder(x) for x of shape (16, 1, 28, 28)"
    )
    expect("decoder" in found, "CAE().decoder could not be run on the encoder's code")
    decoder = _load(found, "decoder", "CAE decoder")
    n = encoder.num_parameters + decoder.num_parameters
    expect(
        4 * n < AE_PARAMETERS,
        f"CAE has {n:,} parameters, expected fewer than a quarter of AE's {AE_PARAMETERS:,}",
    )
    what = "CAE().decoder(CAE().encoder(x)) for x of shape (16, 1, 28, 28)"
    y = _expect_images(_run(decoder, code, what), tuple(x.shape), what, SIGMOID)
    what = "CAE().decoder(CAE().encoder(x)) for x of shape (1, 1, 28, 28)"
    one = _run(encoder, inputs["one"], what)
    _expect_images(_run(decoder, one, what), (1, 1, SIDE, SIDE), what, SIGMOID)
    # large inputs push any unsquashed output far out of [0, 1]
    what = "CAE().decoder(CAE().encoder(x)) for a large x (100 times an image)"
    large = _run(encoder, 100 * inputs["one"], what)
    _expect_images(_run(decoder, large, what), (1, 1, SIDE, SIDE), what, SIGMOID)
    _expect_composed(found, y, "CAE")
    _expect_cae_encoder(encoder, [x, 3 * torch.randn(16, 1, SIDE, SIDE)])
    # codes as the encoder gives them (non-negative), and signed large ones
    codes = [code.float(), torch.rand_like(code.float()), 10 * torch.randn_like(code.float())]
    _expect_cae_decoder(decoder, found["decoder"], codes)


# ---------------------------------------------------------------- the trained denoiser


@collect
def check_denoiser(
    model: nn.Module, x_test: torch.Tensor, inputs: dict, bar: str = "public"
) -> dict:
    """The trained denoiser's loss on the held-out test images is below the bar.

    The denoiser is exported here, traced on a few of the notebook's test images `x_test`; the
    judge scores it on the 2 000 held-out images with noise of its own."""
    expect(
        isinstance(model, nn.Module),
        f"the denoiser should be an nn.Module, got {type(model).__name__}",
    )
    x = core.expect_tensor(x_test, "x_test")
    expect(
        x.numel() >= 2 * PIXELS and x.numel() % PIXELS == 0,
        "x_test should hold the test images, as a (N, 1, 28, 28) tensor",
    )
    example = x.detach()[: 8 * PIXELS].float().reshape(-1, 1, SIDE, SIDE)
    what = f"the denoiser, shown images of shape {tuple(example.shape)},"
    return {"model": _export(model, example.to(device_of(model)), what)}


def _bar(bar: str) -> float:
    """The threshold a test cell names: "public", or "hidden", known only to the grader."""
    return core.named_bar(bar, PUBLIC_BAR, "autoencoders", "HIDDEN_BAR")


def held_out_loss(model: program.Program) -> float:
    """Per-image sum of squared errors of `model` on the held-out test images, corrupted here.

    The noise is drawn from the caller's (the judge's seeded) generator, on the CPU."""
    from dgmlab.heldout import held_out_test_images

    clean = held_out_test_images().unsqueeze(1)
    noisy = (clean + NOISE_STD * torch.randn(clean.shape)).clamp(0, 1)
    shape = model.inputs[0].shape if len(model.inputs) == 1 else []
    # a program exported with a fixed batch size runs on batches of that size
    chunk = CHUNK if model.batch == "dynamic" else shape[0] if shape else 0
    what = "denoiser(noisy images)"
    expect(1 <= chunk <= len(clean), f"{what} should take one batch of images (B, 1, 28, 28)")
    total = 0.0
    for start in range(0, len(clean), chunk):
        dirty, want = noisy[start : start + chunk], clean[start : start + chunk]
        padded = torch.cat([dirty, dirty[:1].expand(chunk - len(dirty), -1, -1, -1)])
        out = core.expect_tensor(_run(model, padded, what), what)
        expect_shape(out, padded.shape, what)
        total += (out[: len(want)].double() - want.double()).square().sum().item()
    return total / len(clean)


@check_denoiser.judge
def _judge_denoiser(inputs: dict, found: dict, bar: str = "public") -> str:
    threshold = _bar(bar)
    loss = held_out_loss(_load(found, "model", "denoiser"))
    expect(math.isfinite(loss), "the denoiser's outputs contain NaN or inf")
    # the hidden bar is never written in a message: feedback would reveal it
    expected = f"{threshold:g}" if bar == "public" else "the hidden bar"
    expect(
        loss < threshold,
        f"test loss {loss:.2f} (per-image sum of squared errors on the held-out test images "
        f"with noise std {NOISE_STD}), expected below {expected}: check the training loop, "
        "or train longer",
    )
    # shown with the pass (a self-check's, a public call's feedback): where the model stands
    return f"test loss {loss:.2f} per image on the held-out test images (threshold: {expected})"


# ---------------------------------------------------------------- the fully connected denoiser
# fc_denoise(fc_dae, noisy) runs the trained DAE(AE()) on images: its autoencoder (the DAE's own
# forward would add noise) on the flattened images, reshaped back. The check hands it a DAE of
# its own whose autoencoder takes only flattened images and computes a known function.

FC_CODE = 32  # the stand-in autoencoder's code: any size will do, it is the check's own


class _StandInAE(nn.Module):
    """An autoencoder of flattened images: Linear(784, 32), ReLU, Linear(32, 784), Sigmoid."""

    def __init__(self, weights: list[torch.Tensor]):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(PIXELS, FC_CODE), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(FC_CODE, PIXELS), nn.Sigmoid())
        with torch.no_grad():
            for k, layer in enumerate([self.encoder[0], self.decoder[0]]):
                layer.weight.copy_(weights[2 * k])
                layer.bias.copy_(weights[2 * k + 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class _StandInDAE(nn.Module):
    """The lab's DAE around a _StandInAE: its forward adds noise_factor-scaled noise first."""

    def __init__(self, weights: list[torch.Tensor]):
        super().__init__()
        self.autoencoder = _StandInAE(weights)

    def forward(self, x: torch.Tensor, noise_factor: float = 0.5) -> torch.Tensor:
        return self.autoencoder(x + noise_factor * torch.randn_like(x))


def _stand_in_reference(noisy: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """What the stand-in's autoencoder returns on the flattened images, shaped back; float64."""
    w1, b1, w2, b2 = (w.double() for w in weights)
    h = (noisy.double().flatten(1) @ w1.T + b1).relu()
    return (h @ w2.T + b2).sigmoid().reshape(noisy.shape)


@collect
def check_fc_denoise(fc_denoise: Callable[[nn.Module, torch.Tensor], Any], inputs: dict) -> dict:
    """fc_denoise(fc_dae, noisy) = fc_dae.autoencoder(noisy flattened), shaped (B, 1, 28, 28)."""
    found = {}
    for key in ("batch", "one"):
        fc_dae = _StandInDAE(inputs["weights"]).to(device_of(inputs[key]))
        noisy = inputs[key].clone()
        found[key] = _snapshot(fc_denoise(fc_dae, noisy))
        found[f"{key}_after"] = noisy.clone()  # the images as fc_denoise left them
    return found


@check_fc_denoise.inputs
def _fc_denoise_inputs() -> dict:
    weights = [_he(FC_CODE, PIXELS), 0.5 * torch.randn(FC_CODE)]
    weights += [_he(PIXELS, FC_CODE), 0.5 * torch.randn(PIXELS)]
    # noisy images as the lab makes them: values in [0, 1]; 7 of them, and a batch of one
    return {
        "weights": weights,
        "batch": torch.rand(7, 1, SIDE, SIDE),
        "one": torch.rand(1, 1, SIDE, SIDE),
    }


@check_fc_denoise.judge
def _judge_fc_denoise(inputs: dict, found: dict) -> None:
    for key in ("batch", "one"):
        noisy = inputs[key]
        what = f"fc_denoise(fc_dae, noisy) for noisy images of shape {tuple(noisy.shape)}"
        got = answer_tensor(found, key, what)
        expect(
            tuple(got.shape) == tuple(noisy.shape),
            f"{what} has shape {tuple(got.shape)}, expected {tuple(noisy.shape)}: return the "
            "autoencoder's output, reshaped to the shape of the images",
        )
        after = found.get(f"{key}_after")
        expect(
            isinstance(after, torch.Tensor) and core.equal(after, noisy),
            "the noisy images changed: leave them as they were",
        )
        # float32 rounding of a 784-term dot product of O(1) terms: below 1e-5 (TOLERANCE's
        # reasoning); fc_dae's own noise, even at noise_factor 0.001, moves the output by more
        # (tests/test_checks_autoencoders.py)
        error = _deviation(got, _stand_in_reference(noisy, inputs["weights"]), what)
        expect(
            error <= TOLERANCE,
            f"{what} differs from fc_dae.autoencoder on the flattened images by up to "
            f"{error:.3g}: run fc_dae's autoencoder (fc_dae itself adds noise of its own) on "
            "noisy.flatten(1), with the pixels in their order, and return its output as it is",
        )
