"""The checks of lab 01 accept the reference answers and reject plausible wrong ones."""

import ast
import math
import re
import sys
from pathlib import Path

import lab01_wrong as lab
import pytest
import torch
from torch import nn

from dgmlab.checks import autoencoders as checks
from dgmlab.checks import evidence, program, stats
from dgmlab.checks.core import CheckFailed

# keyword arguments of the public and hidden calls in the lab's test cells
NOISE_CONFIGS = [{}, {"mean": 0.05, "std": 0.35}]  # public, hidden
DAE_CONFIGS = [{}, {"noise_factor": 0.8}]


def test_reference_passes_every_check(capsys):
    checks.check_ae(lab.AE)
    for kwargs in NOISE_CONFIGS:
        checks.check_add_gaussian_noise(lab.AddGaussianNoise, **kwargs)
    for kwargs in DAE_CONFIGS:
        checks.check_dae(lab.DAE, **kwargs)
    checks.check_cae(lab.CAE)
    out, err = capsys.readouterr()
    assert err == ""  # nbgrader zeroes a test cell that writes to stderr
    assert out.count("passed: ") == 6


WRONG = [
    (checks.check_ae, lab.AENoSigmoid, "sigmoid"),
    (checks.check_ae, lab.AEWideCode, "linear layers 784 -> 128, 128 -> 64, got 784 -> 256"),
    (checks.check_ae, lab.AEDoubleSigmoid, "self.decoder(self.encoder(x))"),
    (checks.check_add_gaussian_noise, lab.NoiseUniform, "Gaussian noise"),
    (checks.check_add_gaussian_noise, lab.NoiseSharedAcrossBatch, "two images of a batch"),
    (checks.check_add_gaussian_noise, lab.NoiseNotClipped, "expected [0, 1]"),
    (checks.check_add_gaussian_noise, lab.NoiseClippedToPlusMinusOne, "expected [0, 1]"),
    (checks.check_add_gaussian_noise, lab.NoiseInPlace, "input batch changed"),
    (checks.check_add_gaussian_noise, lab.NoiseIgnoresStd, "should return x"),
    (checks.check_add_gaussian_noise, lab.NoiseStd2, "Gaussian noise"),
    (checks.check_add_gaussian_noise, lab.NoiseFrozen, "fresh noise"),
    (checks.check_dae, lab.DAENotScaled, "variance"),
    (checks.check_dae, lab.DAEUniform, "beyond 2 sd"),
    (checks.check_dae, lab.DAESharedAcrossBatch, "two images of a batch"),
    (checks.check_dae, lab.DAECleanInput, "fresh noise"),
    (checks.check_dae, lab.DAENoiseAfter, "variance"),
    (checks.check_dae, lab.DAEInPlace, "input batch changed"),
    (checks.check_dae, lab.DAEClipped, "noise of two calls"),
    (checks.check_dae, lab.DAENotRegistered, "submodule"),
    (checks.check_cae, lab.CAE26, "self.decoder(self.encoder(x))"),
    (checks.check_cae, lab.CAETwoChannels, "shape"),
    (checks.check_cae, lab.CAENoSigmoid, "expected [0, 1]"),
    (checks.check_cae, lab.CAEWide, "parameters"),
]


@pytest.mark.parametrize(("check", "wrong", "says"), WRONG, ids=[w.__name__ for _, w, _ in WRONG])
def test_wrong_answer_fails(check, wrong, says):
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    assert says in str(info.value)


def test_wrong_answers_fail_the_hidden_configurations_too():
    for wrong in (lab.NoiseUniform, lab.NoiseNotClipped, lab.NoiseIgnoresMean, lab.NoiseIgnoresStd):
        with pytest.raises(CheckFailed):
            checks.check_add_gaussian_noise(wrong, **NOISE_CONFIGS[1])
    for wrong in (lab.DAENotScaled, lab.DAEUniform, lab.DAECleanInput):
        with pytest.raises(CheckFailed):
            checks.check_dae(wrong, **DAE_CONFIGS[1])


def test_student_stubs_fail_with_a_message():
    class Stub(torch.nn.Module):  # what the student view defines before any answer: `...`
        def __init__(self, *args):
            super().__init__()

        def forward(self, *args, **kwargs):
            return None

        def __call__(self, *args, **kwargs):
            return None

    for check in (
        checks.check_ae,
        checks.check_add_gaussian_noise,
        checks.check_dae,
        checks.check_cae,
    ):
        with pytest.raises(CheckFailed):
            check(Stub)


# The statistical checks pass a correct answer under any seed: 200 seeds per configuration.
# With 32 images instead of 256 (25,088 pixels, to keep this file fast) every assertion still
# fails a correct answer with probability below 5e-8 (binomial and chi-square tails: computed
# exactly below; means and correlations: normal), so below 9 * 5e-8 = 4.5e-7 per check.
SEEDS = range(200)
FEW_IMAGES = 32


@pytest.mark.parametrize("seed", SEEDS)
def test_noise_check_passes_reference_under_any_seed(seed):
    for kwargs in NOISE_CONFIGS:
        checks.check_add_gaussian_noise(
            lab.AddGaussianNoise, seed=seed, images=FEW_IMAGES, **kwargs
        )


@pytest.mark.parametrize("seed", SEEDS)
def test_dae_check_passes_reference_under_any_seed(seed):
    for kwargs in DAE_CONFIGS:
        checks.check_dae(lab.DAE, seed=seed, images=FEW_IMAGES, **kwargs)


@pytest.mark.parametrize(("center", "std"), [(0.5, 0.3), (0.55, 0.25), (0.2, 1.0)])
def test_clipped_normal_moments_match_a_large_sample(center, std):
    y = (center + std * torch.randn(2_000_000, dtype=torch.float64)).clamp(0, 1)
    mean, sd = checks._clipped_normal(center, std)
    assert abs(y.mean().item() - mean) < 1e-3
    assert abs(y.std().item() - sd) < 1e-3


def binomial_false_failure(n: int, p: float) -> float:
    """Exact P(|K/n - p| > C sqrt(p (1 - p) / n)) for K ~ Binomial(n, p)."""
    k = torch.arange(n + 1, dtype=torch.float64)
    log_pmf = torch.distributions.Binomial(n, probs=torch.tensor(p, dtype=torch.float64)).log_prob(
        k
    )
    outside = (k / n - p).abs() > stats.C * math.sqrt(p * (1 - p) / n)
    return log_pmf[outside].exp().sum().item()


@pytest.mark.parametrize("images", [checks.BATCH, FEW_IMAGES])
@pytest.mark.parametrize("kwargs", NOISE_CONFIGS)
def test_binomial_assertions_fail_a_correct_answer_rarely(kwargs, images):
    """The normal approximation behind the fraction assertions holds at their sample size."""
    mean, std = kwargs.get("mean", 0.0), kwargs.get("std", 0.3)
    center, n = 0.5 + mean, images * checks.PIXELS
    fractions = [checks._normal_cdf(-center / std), 1 - checks._normal_cdf((1 - center) / std)]
    fractions += [checks._normal_cdf(k) for k in (-1, 0, 1)] + [stats.TAIL_P]  # TAIL_P: DAE tails
    for p in fractions:
        assert binomial_false_failure(n, p) < 5e-8


@pytest.mark.parametrize("images", [checks.BATCH, FEW_IMAGES])
def test_variance_assertion_fails_a_correct_answer_rarely(images):
    """The DAE's variance assertion, |s^2 - 1| <= C sqrt(2 / (n - 1)), under the exact chi-square."""
    n = images * checks.PIXELS
    k = torch.tensor((n - 1) / 2, dtype=torch.float64)  # (n - 1) s^2 ~ chi2(n - 1) = Gamma(k, 2)
    half_width = stats.C * math.sqrt(2 / (n - 1))
    low = torch.special.gammainc(
        k, torch.tensor((n - 1) * (1 - half_width) / 2, dtype=torch.float64)
    )
    high = torch.special.gammaincc(
        k, torch.tensor((n - 1) * (1 + half_width) / 2, dtype=torch.float64)
    )
    assert (low + high).item() < 5e-8


# ---------------------------------------------------------------- forged evidence
# The judge decides from the grader's inputs and the evidence alone; a submission's kernel can
# write any evidence at all. Forgeries that no correct answer would produce must fail.

FORGERY_SEED = 12345


def judged(check, found: dict, **params) -> None:
    """Judge `found` as the grader does, on inputs drawn from FORGERY_SEED."""
    inputs = check.make_inputs(FORGERY_SEED, params)
    check.verdict(inputs, evidence.admit(evidence.to_evidence(found)), params, FORGERY_SEED)


def collected(check, *answers, **params) -> tuple[dict, dict]:
    """(inputs, evidence) of an honest collection on FORGERY_SEED's inputs."""
    inputs = check.make_inputs(FORGERY_SEED, params)
    found = check.collect(answers, inputs, params, FORGERY_SEED)
    return inputs, evidence.admit(evidence.to_evidence(found))


def exported(module: nn.Module, *shape: int) -> dict:
    with torch.no_grad():
        return program.export_program(module.eval(), (torch.rand(*shape),))


class ReturnsInput(nn.Module):
    """Holds the parameters of `like` but returns its input."""

    def __init__(self, like: nn.Module):
        super().__init__()
        self.like = like

    def forward(self, x):
        return x


class ReturnsInputAfter(ReturnsInput):
    """Runs `like` on its input, then returns the input."""

    def forward(self, x):
        return x + 0 * self.like(x)


class Constant(nn.Module):
    """Holds the parameters of `like` and returns a constant image (of like's output shape,
    after running `like` on its input, if `runs`)."""

    def __init__(self, like: nn.Module, value: float = 0.5, runs: bool = False):
        super().__init__()
        self.like, self.value, self.runs = like, value, runs

    def forward(self, x):
        if self.runs:
            return 0 * self.like(x) + self.value
        return torch.full_like(x, self.value)


def test_honest_evidence_of_the_references_passes_the_judges():
    for check, answer in [
        (checks.check_ae, lab.AE),
        (checks.check_add_gaussian_noise, lab.AddGaussianNoise),
        (checks.check_dae, lab.DAE),
        (checks.check_cae, lab.CAE),
    ]:
        inputs, found = collected(check, answer)
        check.verdict(inputs, found, {}, FORGERY_SEED)


def test_forged_autoencoders_fail():
    inputs, honest = collected(checks.check_ae, lab.AE)
    check = checks.check_ae
    check.verdict(inputs, honest, {}, FORGERY_SEED)
    ae = lab.AE()
    forgeries = {
        "an encoder that returns its input": (
            {"encoder": exported(ReturnsInput(ae.encoder), 4, 784)},
            "encoder should have linear layers 784 -> 128, 128 -> 64, got none",
        ),
        "a plain identity": ({"encoder": exported(nn.Identity(), 4, 784)}, "got none"),
        "the decoder given as the encoder": (
            {"encoder": exported(ae.decoder, 4, 64)},
            "encoder should have linear layers",
        ),
        "a decoder that runs its layers, then returns a constant, and a matching output": (
            {
                "decoder": exported(Constant(ae.decoder, 0.5, runs=True), 4, 64),
                "output": torch.full((32, 784), 0.5),
            },
            r"differs from Linear\(64, 128\), ReLU, Linear\(128, 784\), Sigmoid",
        ),
        "the model's output on other inputs": (
            {"output": ae(torch.rand(32, 784))},
            r"self\.decoder\(self\.encoder",
        ),
        "no decoder": ({"decoder": None}, "valid program"),
        "outputs, not a program": ({"encoder": ae.encoder(torch.rand(32, 784))}, "valid program"),
    }
    for changes, says in forgeries.values():
        with pytest.raises(CheckFailed, match=says):
            check.verdict(inputs, {**honest, **changes}, {}, FORGERY_SEED)


def test_forged_noise_fails():
    inputs, honest = collected(checks.check_add_gaussian_noise, lab.AddGaussianNoise)
    other = lab.AddGaussianNoise(0.0, 0.3)
    forgeries = {
        "still output of other inputs": ({"still": torch.rand(8, 784)}, "should return x"),
        "the same noise twice": ({"second": honest["first"]}, "same noise"),
        "no noise at all": ({"first": inputs["gray"], "second": inputs["gray"]}, "same noise"),
        "unclipped noise": (
            {"first": inputs["gray"] + 0.3 * torch.randn(256, 1, 28, 28)},
            r"\[0, 1\]",
        ),
        "one noise image for the batch": (
            {"first": other(inputs["gray"][:1]).expand(256, -1, -1, -1).clone()},
            "two images",
        ),
        "input after the call not recorded": ({"gray_after": None}, "input batch changed"),
        "a constant batch": ({"first": torch.full((256, 1, 28, 28), 0.5)}, "correlation|pixels"),
    }
    for changes, says in forgeries.values():
        with pytest.raises(CheckFailed, match=says):
            judged(checks.check_add_gaussian_noise, {**honest, **changes})


def test_forged_dae_outputs_fail():
    inputs, honest = collected(checks.check_dae, lab.DAE)
    elsewhere = torch.rand(checks.BATCH, 784)  # inputs the forger drew itself
    honest_elsewhere = {
        "default": elsewhere + 0.5 * torch.randn_like(elsewhere),
        "first": 2 * (elsewhere + 0.3 * torch.randn_like(elsewhere)),
        "second": 2 * (elsewhere + 0.3 * torch.randn_like(elsewhere)),
    }
    with pytest.raises(CheckFailed, match="correlation|variance|mean"):
        judged(checks.check_dae, {**honest, **honest_elsewhere})
    with pytest.raises(CheckFailed, match="correlation|variance|mean"):  # one of them is right
        judged(checks.check_dae, {**honest, **honest_elsewhere, "default": honest["default"]})
    with pytest.raises(CheckFailed, match="submodule"):
        judged(checks.check_dae, {**honest, "parameters": "6"})
    with pytest.raises(CheckFailed, match="changed"):
        judged(checks.check_dae, {**honest, "x_after": torch.rand(checks.BATCH, 784)})


def test_forged_cae_fails():
    inputs, honest = collected(checks.check_cae, lab.CAE)
    check = checks.check_cae
    check.verdict(inputs, honest, {}, FORGERY_SEED)
    cae = lab.CAE()
    forgeries = {
        "an encoder that holds the layers but never runs them": (
            {"encoder": exported(ReturnsInput(cae.encoder), 4, 1, 28, 28)},
            "filters",
        ),
        "a plain identity": ({"encoder": exported(nn.Identity(), 4, 1, 28, 28)}, "filters"),
        "a decoder that runs its layers, then returns a constant, and a matching output": (
            {
                "decoder": exported(Constant(cae.decoder, 0.5, runs=True), 4, 64, 3, 3),
                "output": torch.full((16, 1, 28, 28), 0.5),
            },
            "decoder differs from its transposed convolutions",
        ),
        "the model's output on other inputs": (
            {"output": cae(torch.rand(16, 1, 28, 28))},
            r"self\.decoder\(self\.encoder",
        ),
        "outputs, not a program": ({"decoder": cae(torch.rand(16, 1, 28, 28))}, "valid program"),
    }
    for changes, says in forgeries.values():
        with pytest.raises(CheckFailed, match=says):
            check.verdict(inputs, {**honest, **changes}, {}, FORGERY_SEED)


@pytest.mark.data
def test_forged_denoisers_fail(mnist_test):
    mean_image = mnist_test.mean(0, keepdim=True)

    class MeanImage(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("image", mean_image)

        def forward(self, x):
            return self.image.expand_as(x).clone()

    for forged in (nn.Identity(), MeanImage(), Constant(lab.CAE(), 0.0)):
        with pytest.raises(CheckFailed, match="expected below 20"):
            judged(checks.check_denoiser, {"model": exported(forged, 8, 1, 28, 28)})
    with pytest.raises(CheckFailed, match="valid program"):
        judged(checks.check_denoiser, {"model": {"format": "dgm-program/1"}})


@pytest.mark.data
def test_a_denoiser_of_fixed_batch_size_is_scored_in_batches_of_that_size():
    class FixedBatch(nn.Module):  # the noisy image itself, for batches of 8 only
        def forward(self, x):
            return x.reshape(8, 784).reshape(8, 1, 28, 28)

    payload = exported(FixedBatch(), 8, 1, 28, 28)
    assert payload["batch"] == "static"
    with pytest.raises(CheckFailed, match=r"test loss 36\.\d+ .*expected below 20"):
        judged(checks.check_denoiser, {"model": payload})


def test_the_public_module_holds_no_hidden_threshold():
    from autograder.hidden import autoencoders as hidden

    source = Path(checks.__file__).read_text()
    numbers = {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and type(node.value) in (int, float)
    }
    assert hidden.HIDDEN_BAR not in numbers
    written = re.escape(f"{hidden.HIDDEN_BAR:g}")  # not in a comment either
    assert not re.search(rf"(?<![\d.,]){written}(?![\d]|[.,]\d)", source)
    assert hidden.HIDDEN_BAR not in vars(checks).values()


def test_the_hidden_bar_is_unknown_outside_the_grader(monkeypatch):
    import autograder.hidden

    monkeypatch.setitem(sys.modules, "autograder.hidden.autoencoders", None)  # not installed
    monkeypatch.delattr(autograder.hidden, "autoencoders", raising=False)
    with pytest.raises(CheckFailed, match="known only to the grader"):
        judged(
            checks.check_denoiser, {"model": exported(nn.Identity(), 8, 1, 28, 28)}, bar="hidden"
        )


# ---------------------------------------------------------------- fc_denoise


def test_fc_denoise_reference_passes_and_the_stub_is_not_implemented():
    checks.check_fc_denoise(lab.fc_denoise)

    def stub(fc_dae, noisy):
        """The released cell: its body is the stub."""
        ...

    with pytest.raises(CheckFailed, match="not implemented yet"):
        checks.check_fc_denoise(stub)


@pytest.mark.parametrize("noise_factor", [0.5, 0.01, 0.001])
def test_fc_denoise_catches_the_dae_s_own_noise_however_small(noise_factor):
    def through_the_dae(fc_dae, noisy):
        return fc_dae(noisy.flatten(1), noise_factor=noise_factor).view_as(noisy)

    with pytest.raises(CheckFailed, match="adds noise of its own"):
        checks.check_fc_denoise(through_the_dae)


# ---------------------------------------------------------------- the trained denoiser


@pytest.mark.data
def test_untrained_denoiser_fails_and_identity_fails(mnist_test):
    torch.manual_seed(0)
    with pytest.raises(CheckFailed, match="expected below 20"):
        checks.check_denoiser(lab.CAE(), mnist_test)
    # the noisy image itself: the loss the lab's question 1 quotes, "about 36.5"
    with pytest.raises(CheckFailed, match=r"test loss 36\.[3-7]\d .*expected below 20"):
        checks.check_denoiser(torch.nn.Identity(), mnist_test)
    # the hidden bar is not in the message: the feedback would reveal it
    with pytest.raises(CheckFailed, match=r"test loss 36\.\d+ .*expected below the hidden bar:"):
        checks.check_denoiser(torch.nn.Identity(), mnist_test, bar="hidden")


@pytest.mark.data
def test_denoiser_check_scores_the_held_out_images_whatever_x_test_holds(mnist_test):
    """x_test only traces the denoiser's graph: the score is the judge's, on held-out images."""
    messages = set()
    for x in (mnist_test, mnist_test[:100], torch.zeros(50, 784)):
        with pytest.raises(CheckFailed, match="held-out") as info:
            checks.check_denoiser(torch.nn.Identity(), x)
        messages.add(str(info.value))
    assert len(messages) == 1
    with pytest.raises(CheckFailed, match="x_test"):
        checks.check_denoiser(lab.CAE(), [0.5] * 784)
    with pytest.raises(CheckFailed, match="x_test"):
        checks.check_denoiser(lab.CAE(), torch.zeros(10))
    with pytest.raises(CheckFailed, match="nn.Module"):
        checks.check_denoiser(lambda x: x, mnist_test)


@pytest.mark.data
@pytest.mark.slow
def test_trained_reference_denoiser_passes_both_bars(mnist_test):
    """The lab's reference training (one epoch, 1 to 4 minutes on one CPU core) clears both bars."""
    import torchvision

    from dgmlab.data import data_dir

    torch.manual_seed(0)
    x = torchvision.datasets.MNIST(data_dir(), train=True, download=True).data
    model = lab.he_init(lab.CAE())
    lab.train(
        model,
        x.float().div(255).unsqueeze(1),
        epochs=1,
        corrupt=lab.AddGaussianNoise(0, 0.3),
        batch_size=32,
        lr=2e-3,
    )
    checks.check_denoiser(model, mnist_test)
    checks.check_denoiser(model, mnist_test, bar="hidden")


@pytest.fixture(scope="module")
def mnist_test():
    """MNIST's test images as the lab holds them: (10000, 1, 28, 28), values in [0, 1]."""
    import torchvision

    from dgmlab.data import data_dir, mnist_present

    if not mnist_present(data_dir()):
        pytest.skip("MNIST is not provisioned (python -m dgmlab.data)")
    test = torchvision.datasets.MNIST(data_dir(), train=False, download=True)
    return test.data.float().div(255).unsqueeze(1)
