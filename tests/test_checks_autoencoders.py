"""The checks of lab 01 accept the reference answers and reject plausible wrong ones."""

import math

import lab01_wrong as lab
import pytest
import torch

from autograder.checks import autoencoders as checks
from autograder.checks import stats
from autograder.checks.core import CheckFailed

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
    (checks.check_ae, lab.AEWideCode, "Linear layers"),
    (checks.check_add_gaussian_noise, lab.NoiseUniform, "Gaussian noise"),
    (checks.check_add_gaussian_noise, lab.NoiseSharedAcrossBatch, "two images of a batch"),
    (checks.check_add_gaussian_noise, lab.NoiseNotClipped, "expected [0, 1]"),
    (checks.check_add_gaussian_noise, lab.NoiseClippedToPlusMinusOne, "expected [0, 1]"),
    (checks.check_add_gaussian_noise, lab.NoiseInPlace, "input batch changed"),
    (checks.check_add_gaussian_noise, lab.NoiseIgnoresStd, "should return x"),
    (checks.check_add_gaussian_noise, lab.NoiseStd2, "Gaussian noise"),
    (checks.check_add_gaussian_noise, lab.NoiseFrozen, "fresh noise"),
    (checks.check_dae, lab.DAENotScaled, "should return x"),
    (checks.check_dae, lab.DAEUniform, "beyond 2 sd"),
    (checks.check_dae, lab.DAESharedAcrossBatch, "two images of a batch"),
    (checks.check_dae, lab.DAECleanInput, "fresh noise"),
    (checks.check_dae, lab.DAENoiseAfter, "variance"),
    (checks.check_dae, lab.DAEInPlace, "input batch changed"),
    (checks.check_dae, lab.DAEClipped, "noise of two calls"),
    (checks.check_dae, lab.DAENotRegistered, "submodule"),
    (checks.check_cae, lab.CAE26, "shape"),
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


@pytest.mark.data
def test_untrained_denoiser_fails_and_identity_fails(mnist_test):
    torch.manual_seed(0)
    with pytest.raises(CheckFailed, match="expected below 20"):
        checks.check_denoiser(lab.CAE(), mnist_test)
    with pytest.raises(CheckFailed, match="expected below 20"):
        checks.check_denoiser(torch.nn.Identity(), mnist_test)  # the noisy image itself


@pytest.mark.data
def test_denoiser_check_rejects_other_data(mnist_test):
    with pytest.raises(CheckFailed, match="test images"):
        checks.check_denoiser(lab.CAE(), mnist_test[:5000])
    with pytest.raises(CheckFailed, match="scaled to"):
        checks.check_denoiser(lab.CAE(), torch.zeros_like(mnist_test))


@pytest.mark.data
@pytest.mark.slow
def test_trained_reference_denoiser_passes_both_bars(mnist_test):
    """The lab's reference training (3 epochs, about a minute on 2 CPU cores) clears both bars."""
    import torchvision

    from autograder.data import data_dir

    torch.manual_seed(0)
    x = torchvision.datasets.MNIST(data_dir(), train=True, download=True).data
    model = lab.he_init(lab.CAE())
    lab.train(
        model, x.float().div(255).unsqueeze(1), epochs=3, corrupt=lab.AddGaussianNoise(0, 0.3)
    )
    checks.check_denoiser(model, mnist_test)
    checks.check_denoiser_tight(model, mnist_test)


@pytest.fixture(scope="module")
def mnist_test():
    """MNIST's test images as the lab holds them: (10000, 1, 28, 28), values in [0, 1]."""
    import torchvision

    from autograder.data import data_dir, mnist_present

    if not mnist_present(data_dir()):
        pytest.skip("MNIST is not provisioned (python -m autograder.data)")
    test = torchvision.datasets.MNIST(data_dir(), train=False, download=True)
    return test.data.float().div(255).unsqueeze(1)
