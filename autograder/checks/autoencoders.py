"""Checks of lab 01: the fully connected and convolutional autoencoders, the Gaussian noise
transform, the denoising wrapper and the trained convolutional denoiser.

Every check is a `core.Check`: its collector runs the student's code in the student's kernel
and returns plain data (outputs on the grader's inputs, or the models exported with
`program.export_program`); its judge decides from that evidence alone, in the grader's process.
The judges of the models rebuild the exported graphs with `program.load_program` and run them
on inputs of their own: layer sizes come from the parameters' shapes, never from class names.

Statistical assertions use the threshold of `stats` (C = 5.5 standard errors, false failure
P_ONE = 3.8e-8 each under a normal approximation); each check states its total next to them.
One module for the lab's five checks, in the lab's order.
"""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from autograder.checks import core, program, stats
from autograder.checks.core import answer_tensor, collect, device_of, expect, expect_shape

SIDE = 28
PIXELS = SIDE * SIDE
CODE = 64
AE_LAYERS = [(PIXELS, 128), (128, CODE), (CODE, 128), (128, PIXELS)]
AE_PARAMETERS = 218_192  # the AE of the lab: 100,480 + 8,256 + 8,320 + 101,136
CAE_FILTERS = [16, 32, 64]
BATCH = 256  # images per statistical call: 256 * 784 = 200,704 pixels

# The trained denoiser is scored on the 2 000 held-out MNIST test images (autograder.heldout:
# a graded kernel never sees them), corrupted by the judge's own noise: the per-image sum of
# squared errors of its output against the clean image.
NOISE_STD = 0.3
CHUNK = 500  # images per program call when the judge scores the denoiser
# The public bar of the seed assignment, on the held-out images: the lab's reference solution
# (3 epochs, ten training seeds) scores about half of it, at most 10.1 (a margin of 9.9); one
# epoch of the same training 14.4 to 19.2; an untrained CAE 130 to 220; the noisy image itself
# (what nn.Identity() returns) 36.5; the average training image 55. The hidden bar of the test
# cell `bar="hidden"`, and the reference runs, are in autograder/hidden/autoencoders.py.
PUBLIC_BAR = 20.0


def _instantiate(cls: Callable[..., Any], what: str, *args: Any) -> Any:
    """`cls(*args)`, or a CheckFailed saying that constructing it failed."""
    try:
        return cls(*args)
    except Exception as exc:  # the student's constructor: report it as a failed check
        raise core.CheckFailed(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _expect_images(y: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """`y` is a finite tensor of `shape` with every value in [0, 1]."""
    y = core.expect_tensor(y, what)
    expect_shape(y, shape, what)
    expect(core.isfinite(y).all().item(), f"{what} contains NaN or inf")
    expect(
        y.min().item() >= 0 and y.max().item() <= 1,
        f"{what} has values in [{y.min().item():.3f}, {y.max().item():.3f}], expected [0, 1]",
    )
    return y


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


def _weight_shapes(model: program.Program, ndim: int) -> list[tuple[int, ...]]:
    """Shapes of the `ndim`-dimensional parameters, in the order the model registers them."""
    shapes = model.parameter_shapes
    return [shapes[name] for name in model.parameter_names if len(shapes[name]) == ndim]


# ---------------------------------------------------------------- AE


@collect
def check_ae(AE: type[nn.Module], inputs: dict) -> dict:
    """AE(): Linear layers 784-128-64-128-784 in self.encoder / self.decoder; outputs in [0, 1]."""
    model = _instantiate(AE, "AE()")
    expect(isinstance(model, nn.Module), "AE() should be an nn.Module")
    for part in ("encoder", "decoder"):
        expect(isinstance(getattr(model, part, None), nn.Module), f"AE should define self.{part}")
    x = inputs["x"].clone().to(device_of(model))  # a clone: the judge reads inputs["x"]
    found = {
        "model": _export(model, x, "AE()"),
        "encoder": _export(model.encoder, x, "AE().encoder"),
    }
    model.eval()
    with torch.no_grad():
        code = core.expect_tensor(model.encoder(x), "AE().encoder(x)")
    if code.dim() == 2 and code.shape[0] == x.shape[0]:  # else the judge fails on its shape
        found["decoder"] = _export(model.decoder, code.detach(), "AE().decoder")
    return found


@check_ae.inputs
def _ae_inputs() -> dict:
    # large inputs push any unsquashed output far out of [0, 1]
    return {"x": torch.rand(32, PIXELS), "large": 100 * torch.randn(32, PIXELS)}


@check_ae.judge
def _judge_ae(inputs: dict, found: dict) -> None:
    model = _load(found, "model", "AE")
    encoder = _load(found, "encoder", "AE encoder")
    sizes = [(w[1], w[0]) for w in _weight_shapes(model, 2)]  # a Linear weight is (out, in)
    expect(sizes == AE_LAYERS, f"AE's Linear layers (in, out) should be {AE_LAYERS}, got {sizes}")
    x = inputs["x"]
    code = core.expect_tensor(_run(encoder, x, "AE().encoder(x)"), "AE().encoder(x)")
    expect_shape(code, (32, CODE), "AE().encoder(x) for x of shape (32, 784)")
    y = core.expect_tensor(_run(model, x, "AE()(x)"), "AE()(x)")
    expect(
        y.shape != x.shape or 0 <= y.min().item() <= y.max().item() <= 1,
        "AE's outputs leave [0, 1]: end the decoder with a sigmoid",
    )
    _expect_images(y, (32, PIXELS), "AE()(x) for x of shape (32, 784)")
    large = core.expect_tensor(_run(model, inputs["large"], "AE()(100 x)"), "AE()(100 x)")
    expect(
        large.shape == x.shape and 0 <= large.min().item() <= large.max().item() <= 1,
        "AE's outputs leave [0, 1] on large inputs: end the decoder with a sigmoid",
    )
    expect("decoder" in found, "AE().decoder could not be run on the encoder's code")
    decoded = _run(_load(found, "decoder", "AE decoder"), code, "AE().decoder(code)")
    expect(
        isinstance(decoded, torch.Tensor)
        and decoded.shape == y.shape
        and core.allclose(decoded, y, rtol=1e-4, atol=1e-5),
        "AE()(x) should be self.decoder(self.encoder(x))",
    )


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
    # the sample correlation of n independent pairs has sd 1/sqrt(n) (n >= 12,544 here, where
    # standardising by the sample moments changes it by O(1/n)): false failure ~P_ONE
    stats.expect_uncorrelated((a - a.mean()) / a.std(), (b - b.mean()) / b.std(), what)


def _expect_fraction(hits: torch.Tensor, p: float, what: str) -> None:
    """The fraction of True in `hits` (n iid Bernoulli(p) under a correct answer) is p."""
    n = hits.numel()
    frac = hits.double().mean().item()
    # binomial(n, p) / n, sd sqrt(p (1 - p) / n); exact false failure below 5e-8 for n p >= 1,000
    # (tests/test_checks_autoencoders.py computes it for each p and n the lab uses)
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
    found: dict = {"still": _snapshot(still(x))}
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
        answer_tensor(found, "first", "the noisy batch"), gray.shape, "the noisy batch"
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
    )
    expect(not core.equal(y1, y2), "two calls returned the same noise: draw fresh noise every call")

    half = images // 2
    _expect_independent(y1[:half], y1[half:], "noise of two images of a batch")
    _expect_independent(y1[..., :-1], y1[..., 1:], "noise of neighbouring pixels")
    _expect_independent(y1, y2, "noise of two calls")
    center = 0.5 + mean
    _expect_fraction(y1 <= 0, _normal_cdf(-center / std), "clipped to 0")
    _expect_fraction(y1 >= 1, 1 - _normal_cdf((1 - center) / std), "clipped to 1")
    for k in (-1, 0, 1):
        _expect_fraction(y1 < center + k * std, _normal_cdf(k), f"below mean {k:+d} std")
    m, s = _clipped_normal(center, std)
    # mean of n = images * 784 iid values in [0, 1], sd s / sqrt(n): false failure ~P_ONE
    expect(
        abs(y1.double().mean().item() - m) <= stats.C * s / math.sqrt(y1.numel()),
        f"the noisy pixels average {y1.mean().item():.4f}, expected {m:.4f}",
    )
    # 9 statistical assertions, each failing a correct answer with probability below 5e-8:
    # false failure of the check <= 4.5e-7 (for images >= 32)


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
        found["zero"] = _snapshot(identity(x, noise_factor=0.0))
        found["default"] = _snapshot(identity(x))
        found["first"] = _snapshot(doubling(x, noise_factor=noise_factor))
        found["second"] = _snapshot(doubling(x, noise_factor=noise_factor))
    found["x_after"] = x.clone()  # the input as the four calls left it
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
    y0 = answer_tensor(found, "zero", "DAE(nn.Identity())(x, noise_factor=0)")
    expect(
        y0.shape == x.shape and core.equal(y0, x),
        "with noise_factor=0 and nn.Identity() inside, DAE should return x",
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


def _convolutions(payload: dict, model: program.Program) -> list[tuple[int, ...]]:
    """Weight shapes of the model's (not transposed) convolutions, in the order they run.

    A convolution node of the graph is aten.convolution(input, weight, bias, stride, padding,
    dilation, transposed, ...); its weight is a stored tensor (a parameter) of shape
    (filters, channels in, kernel height, kernel width). Each layer is counted once."""
    shapes, seen = [], set()
    for node in payload["nodes"]:  # validated by load_program: the fields exist
        if node["op"] != "aten.convolution.default":
            continue
        args, kwargs = node["args"], node["kwargs"]
        transposed = args[6] if len(args) > 6 else kwargs.get("transposed")
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        if transposed is not False:
            continue
        name = weight.get("tensor") if isinstance(weight, dict) else None
        expect(name in model.tensors, "CAE's convolutions should use their layers' weights")
        if name not in seen:
            seen.add(name)
            shapes.append(tuple(model.tensors[name].shape))
    return shapes


@collect
def check_cae(CAE: type[nn.Module], inputs: dict) -> dict:
    """CAE(): 3x3 convolutions with 16, 32, 64 filters; (B, 1, 28, 28) in and out, in [0, 1]."""
    model = _instantiate(CAE, "CAE()")
    expect(isinstance(model, nn.Module), "CAE() should be an nn.Module")
    return {"model": _export(model, inputs["x"].clone().to(device_of(model)), "CAE()")}


@check_cae.inputs
def _cae_inputs() -> dict:
    return {"x": torch.rand(16, 1, SIDE, SIDE), "one": torch.rand(1, 1, SIDE, SIDE)}


@check_cae.judge
def _judge_cae(inputs: dict, found: dict) -> None:
    model = _load(found, "model", "CAE")
    convs = _convolutions(found["model"], model)
    filters = [shape[0] for shape in convs]
    expect(
        filters == CAE_FILTERS,
        f"CAE's Conv2d layers should have {CAE_FILTERS} filters, got {filters}",
    )
    expect(all(shape[2:] == (3, 3) for shape in convs), "CAE's Conv2d layers should be 3x3")
    n = model.num_parameters
    expect(
        4 * n < AE_PARAMETERS,
        f"CAE has {n:,} parameters, expected fewer than a quarter of AE's {AE_PARAMETERS:,}",
    )
    for x in (inputs["x"], inputs["one"]):
        what = f"CAE()(x) for x of shape {tuple(x.shape)}"
        _expect_images(_run(model, x, what), tuple(x.shape), what)
    # large inputs push any unsquashed output far out of [0, 1]
    what = "CAE()(100 * x), which a final sigmoid keeps in [0, 1],"
    _expect_images(_run(model, 100 * inputs["one"], what), (1, 1, SIDE, SIDE), what)


# ---------------------------------------------------------------- the trained denoiser


@collect
def check_denoiser(
    model: nn.Module, x_test: torch.Tensor, inputs: dict, bar: str = "public"
) -> dict:
    """The trained denoiser's loss on the held-out test images is below the bar.

    The denoiser is exported here, traced on a few of the notebook's test images `x_test`; the
    judge scores it on the 2 000 held-out images with noise of its own."""
    expect(isinstance(model, nn.Module), "the denoiser should be an nn.Module")
    x = core.expect_tensor(x_test, "x_test")
    expect(
        x.numel() >= 2 * PIXELS and x.numel() % PIXELS == 0,
        "x_test should hold the test images, as a (N, 1, 28, 28) tensor",
    )
    example = x.detach()[: 8 * PIXELS].float().reshape(-1, 1, SIDE, SIDE)
    return {"model": _export(model, example.to(device_of(model)), "the denoiser")}


def _bar(bar: str) -> float:
    """The threshold a test cell names: "public", or "hidden", known only to the grader."""
    return core.named_bar(bar, PUBLIC_BAR, "autoencoders", "HIDDEN_BAR")


def held_out_loss(model: program.Program) -> float:
    """Per-image sum of squared errors of `model` on the held-out test images, corrupted here.

    The noise is drawn from the caller's (the judge's seeded) generator, on the CPU."""
    from autograder.heldout import held_out_test_images

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
def _judge_denoiser(inputs: dict, found: dict, bar: str = "public") -> None:
    threshold = _bar(bar)
    loss = held_out_loss(_load(found, "model", "denoiser"))
    expect(math.isfinite(loss), "the denoiser's outputs contain NaN or inf")
    expect(
        loss < threshold,
        f"test loss {loss:.2f} (per-image sum of squared errors on the held-out test images "
        f"with noise std {NOISE_STD}), expected below {threshold:g}: check the training loop, "
        "or train longer",
    )
