"""Tests of the checks of lab 02-kl-vae, applied directly (no notebook): the reference passes,
each wrong implementation of the issue fails, statistical checks pass under 200 seeds."""

import copy
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from autograder import verdict
from autograder.hidden_checks import kl_vae as hidden_checks
from dgmlab.checks import evidence, program
from dgmlab.checks import kl_vae as checks
from dgmlab.checks.core import Check, CheckFailed

ROOT = Path(__file__).resolve().parent.parent

CPU = torch.device("cpu")
# the collapsed model's negative ELBO on the held-out images: squared error + KL 55.5, plus the
# Gaussian decoder's constant
COLLAPSED_RANGE = (55.0 + checks.GAUSSIAN_CONSTANT, 56.0 + checks.GAUSSIAN_CONSTANT)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------- reference implementations


def kl_normal(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2) - 0.5


class KLDivergence:
    def __call__(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1).mean()


class VAE(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, device: torch.device):
        super().__init__()
        self.encoder, self.decoder, self.device = encoder.to(device), decoder.to(device), device

    def reparameterize(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, log_var = self.encoder(x)
        return self.decoder(self.reparameterize(mu, log_var)), mu, log_var

    def encode(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.encoder(x)[0]

    def reconstruct(self, z: Tensor) -> Tensor:
        with torch.no_grad():
            return self.decoder(z)


def head(activation: type[nn.Module] | None = None) -> nn.Sequential:
    layers = [nn.Linear(64, 32), nn.LeakyReLU(), nn.Linear(32, 8)]
    return nn.Sequential(*layers, *([activation()] if activation else []))


class Encoder(nn.Module):
    def __init__(self, head_activation: type[nn.Module] | None = None):
        super().__init__()
        layers = [nn.Linear(784, 256), nn.LeakyReLU(), nn.Linear(256, 64), nn.LeakyReLU()]
        self.body = nn.Sequential(*layers)
        self.mu, self.log_var = head(head_activation), head(head_activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mu(h), self.log_var(h)


def decoder(sigmoid: bool = True) -> nn.Sequential:
    layers = [nn.Linear(8, 32), nn.LeakyReLU(), nn.Linear(32, 64), nn.LeakyReLU()]
    layers += [nn.Linear(64, 256), nn.LeakyReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 784), *([nn.Sigmoid()] if sigmoid else []))


class KLWeightManager:
    def __init__(self, warm_up_rounds: int, annealing_rounds: int):
        self.warm_up_rounds, self.annealing_rounds = warm_up_rounds, annealing_rounds

    def __call__(self, epoch: int) -> float:
        if epoch < self.warm_up_rounds:
            return 0.0
        if epoch >= self.warm_up_rounds + self.annealing_rounds:
            return 1.0
        return (epoch - self.warm_up_rounds) / self.annealing_rounds


def interpolate_linear(x: Tensor, y: Tensor, steps: int) -> Tensor:
    t = torch.linspace(0, 1, steps, device=x.device).view(steps, *([1] * x.dim()))
    return (1 - t) * x + t * y


def kl_per_dimension(mu: Tensor, log_var: Tensor) -> Tensor:
    return (0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)).mean(dim=0)


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    return int((mu.var(dim=0) > threshold).sum())


def sampler(reparameterize: Callable) -> Callable:
    """The bound `reparameterize` of a VAE whose sampler is `reparameterize`."""
    vae = type("SomeVAE", (VAE,), {"reparameterize": reparameterize})
    return vae(nn.Identity(), nn.Identity(), CPU).reparameterize


# ---------------------------------------------------------------- the reference passes


def test_reference_passes_every_exact_check(capsys: pytest.CaptureFixture) -> None:
    checks.check_kl_normal(kl_normal)
    hidden_checks.check_kl_normal_properties(kl_normal)
    checks.check_kl_divergence(KLDivergence())
    hidden_checks.check_kl_divergence_details(KLDivergence())
    hidden_checks.check_reparameterization_gradients(sampler(VAE.reparameterize))
    checks.check_vae_methods(VAE, CPU)
    checks.check_encoder_decoder(Encoder(), decoder())
    for warm_up, annealing in ((5, 10), (0, 5), (2, 3), (0, 0), (3, 0)):
        checks.check_kl_weight_manager(KLWeightManager, warm_up=warm_up, annealing=annealing)
    checks.check_interpolate_linear(interpolate_linear, CPU)
    checks.check_collapse_diagnostics(kl_per_dimension, active_units)
    assert capsys.readouterr().out.count("passed: ") == 14


def test_the_public_schedule_stores_the_weights_the_grader_computes() -> None:
    from autograder import references

    for (warm_up, annealing), weights in checks.PUBLIC_SCHEDULE.items():
        want = [references.kl_weight(warm_up, annealing, e) for e in range(checks.EPOCHS)]
        assert list(weights) == pytest.approx(want, abs=1e-12)


def test_a_self_check_without_the_grader_judges_the_public_schedule_only(monkeypatch) -> None:
    # as in a student's install: dgmlab alone, no autograder.references
    from dgmlab.checks import oracle

    monkeypatch.setattr(oracle, "grader_reference", lambda name: None)
    checks.check_kl_weight_manager(KLWeightManager, warm_up=5, annealing=10)
    with pytest.raises(CheckFailed, match=r"\(5\) should be 0, got 0\.1"):
        checks.check_kl_weight_manager(WeightOneEpochEarly, warm_up=5, annealing=10)
    with pytest.raises(CheckFailed, match="the grader checks warm_up=0, annealing=5"):
        checks.check_kl_weight_manager(KLWeightManager, warm_up=0, annealing=5)


def test_exact_kl_values_agree_with_torch_distributions() -> None:
    for mu, log_var, want in checks.EXACT_KL:
        q = torch.distributions.Normal(mu, math.exp(0.5 * log_var))
        got = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0))
        assert abs(got.item() - want) < 1e-6


@pytest.mark.parametrize("seed", range(200))
def test_reparameterization_passes_under_200_seeds(seed: int) -> None:
    # the full check (100 000 rows): 15 assertions at 3.8e-8 each, < 5.7e-7 per seed (reparam.py)
    checks.check_reparameterization(sampler(VAE.reparameterize), seed=seed)


@pytest.mark.parametrize("seed", range(200))
def test_seeded_exact_checks_pass_under_200_seeds(seed: int) -> None:
    # deterministic comparisons on random inputs: no input may be a lucky one
    checks.check_kl_normal(kl_normal, seed=seed)
    hidden_checks.check_kl_normal_properties(kl_normal, seed=seed)
    hidden_checks.check_kl_divergence_details(KLDivergence(), seed=seed)
    hidden_checks.check_reparameterization_gradients(sampler(VAE.reparameterize), seed=seed)
    checks.check_vae_methods(VAE, CPU, seed=seed)
    checks.check_interpolate_linear(interpolate_linear, CPU, seed=seed)
    checks.check_collapse_diagnostics(kl_per_dimension, active_units, seed=seed)


# ---------------------------------------------------------------- wrong implementations fail


class KLSignFlipped:
    def __call__(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return 0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1).mean()


class KLMissingHalf:
    def __call__(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return -(1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1).mean()


class KLMeanOverDimensions:
    def __call__(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).mean()


class KLSumOverBatch:
    def __call__(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum()


class KLPerSample:
    def __call__(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1)


def sigma_missing_half(self: VAE, mu: Tensor, log_var: Tensor) -> Tensor:
    return mu + torch.exp(log_var) * torch.randn_like(mu)


def uniform_noise(self: VAE, mu: Tensor, log_var: Tensor) -> Tensor:
    return mu + torch.exp(0.5 * log_var) * torch.rand_like(mu)


def noise_shared_by_batch(self: VAE, mu: Tensor, log_var: Tensor) -> Tensor:
    return mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape[1:], device=mu.device)


def no_noise(self: VAE, mu: Tensor, log_var: Tensor) -> Tensor:
    return mu


def sigma_detached(self: VAE, mu: Tensor, log_var: Tensor) -> Tensor:
    return mu + torch.exp(0.5 * log_var).detach() * torch.randn_like(mu)


class WeightOneEpochEarly(KLWeightManager):
    def __call__(self, epoch: int) -> float:
        return super().__call__(epoch + 1)


class WeightOneEpochLate(KLWeightManager):
    def __call__(self, epoch: int) -> float:
        return super().__call__(epoch - 1) if epoch > 0 else 0.0


class WeightReachesOneEarly(KLWeightManager):
    def __call__(self, epoch: int) -> float:
        if epoch < self.warm_up_rounds:
            return 0.0
        return min(1.0, (epoch - self.warm_up_rounds) / (self.annealing_rounds - 1))


def interpolate_steps_plus_one(x: Tensor, y: Tensor, steps: int) -> Tensor:
    return interpolate_linear(x, y, steps + 1)


def interpolate_misses_end(x: Tensor, y: Tensor, steps: int) -> Tensor:
    t = (torch.arange(steps, device=x.device) / steps).view(steps, *([1] * x.dim()))
    return (1 - t) * x + t * y


def interpolate_returns_start_twice(x: Tensor, y: Tensor, steps: int) -> Tensor:
    path = interpolate_linear(x, y, steps)
    path[-1] = x
    return path


class EncodeTracksGradients(VAE):
    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)[0]


class ReconstructTracksGradients(VAE):
    def reconstruct(self, z: Tensor) -> Tensor:
        return self.decoder(z)


class EncodeSamples(VAE):
    def encode(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.reparameterize(*self.encoder(x))


class ForwardReturnsZ(VAE):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, log_var = self.encoder(x)
        z = self.reparameterize(mu, log_var)
        return z, mu, log_var


class ForwardDecodesMean(VAE):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, log_var = self.encoder(x)
        return self.decoder(mu), mu, log_var


class ForwardSwapsOutputs(VAE):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x_hat, mu, log_var = super().forward(x)
        return x_hat, log_var, mu


def kl_normal_swapped(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    return kl_normal(mu_p, sigma_p, mu_q, sigma_q)


def kl_normal_no_half(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    return kl_normal(mu_q, sigma_q, mu_p, sigma_p) + 0.5


def kl_normal_variances(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    return kl_normal(mu_q, sigma_q.sqrt(), mu_p, sigma_p.sqrt())


def kl_normal_summed(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    return kl_normal(mu_q, sigma_q, mu_p, sigma_p).sum()


WRONG: dict[str, Callable[[], None]] = {
    # the list
    "KL sign flipped": lambda: checks.check_kl_divergence(KLSignFlipped()),
    "KL missing 1/2": lambda: checks.check_kl_divergence(KLMissingHalf()),
    "KL averaged over latent dimensions": lambda: checks.check_kl_divergence(
        KLMeanOverDimensions()
    ),
    "KL summed over the batch": lambda: checks.check_kl_divergence(KLSumOverBatch()),
    "sigma = exp(log_var)": lambda: checks.check_reparameterization(sampler(sigma_missing_half)),
    "rand_like noise": lambda: checks.check_reparameterization(sampler(uniform_noise)),
    "one eps for the batch": lambda: checks.check_reparameterization(
        sampler(noise_shared_by_batch)
    ),
    "z = mu": lambda: checks.check_reparameterization(sampler(no_noise)),
    "sigma detached": lambda: hidden_checks.check_reparameterization_gradients(
        sampler(sigma_detached)
    ),
    "weight one epoch early": lambda: checks.check_kl_weight_manager(WeightOneEpochEarly),
    "weight one epoch late": lambda: checks.check_kl_weight_manager(WeightOneEpochLate),
    "weight 1 one epoch early": lambda: checks.check_kl_weight_manager(WeightReachesOneEarly),
    "steps + 1 points": lambda: checks.check_interpolate_linear(interpolate_steps_plus_one, CPU),
    "endpoint y missed": lambda: checks.check_interpolate_linear(interpolate_misses_end, CPU),
    "wrong endpoint": lambda: checks.check_interpolate_linear(interpolate_returns_start_twice, CPU),
    "encode tracks gradients": lambda: checks.check_vae_methods(EncodeTracksGradients, CPU),
    # more mistakes the checks should catch
    "KL per sample": lambda: checks.check_kl_divergence(KLPerSample()),
    "reconstruct tracks gradients": lambda: checks.check_vae_methods(
        ReconstructTracksGradients, CPU
    ),
    "encode samples z": lambda: checks.check_vae_methods(EncodeSamples, CPU),
    "forward returns z": lambda: checks.check_vae_methods(ForwardReturnsZ, CPU),
    "forward decodes mu": lambda: checks.check_vae_methods(ForwardDecodesMean, CPU),
    "forward swaps mu, log_var": lambda: checks.check_vae_methods(ForwardSwapsOutputs, CPU),
    "LeakyReLU heads": lambda: checks.check_encoder_decoder(Encoder(nn.LeakyReLU), decoder()),
    "Softplus heads": lambda: checks.check_encoder_decoder(Encoder(nn.Softplus), decoder()),
    "decoder without sigmoid": lambda: checks.check_encoder_decoder(Encoder(), decoder(False)),
    "kl_normal(p, q)": lambda: checks.check_kl_normal(kl_normal_swapped),
    "kl_normal without -1/2": lambda: checks.check_kl_normal(kl_normal_no_half),
    "kl_normal of variances": lambda: checks.check_kl_normal(kl_normal_variances),
    "kl_normal summed": lambda: checks.check_kl_normal(kl_normal_summed),
}


@pytest.mark.parametrize("name", WRONG)
def test_wrong_implementation_fails(name: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(CheckFailed):
        WRONG[name]()
    assert "passed" not in capsys.readouterr().out


def test_failure_messages_name_the_mistake() -> None:
    with pytest.raises(CheckFailed, match="averaged over latent dimensions"):
        checks.check_kl_divergence(KLMeanOverDimensions())
    with pytest.raises(CheckFailed, match="summed over the batch"):
        checks.check_kl_divergence(KLSumOverBatch())
    with pytest.raises(CheckFailed, match="LeakyReLU"):
        checks.check_encoder_decoder(Encoder(nn.LeakyReLU), decoder())
    with pytest.raises(CheckFailed, match="torch.no_grad"):
        checks.check_vae_methods(EncodeTracksGradients, CPU)
    with pytest.raises(CheckFailed, match=r"\(5\) should be 0, got 0.1"):
        checks.check_kl_weight_manager(WeightOneEpochEarly)
    with pytest.raises(CheckFailed, match="depends only on the epoch"):
        checks.check_kl_weight_manager(CountsCalls)
    with pytest.raises(CheckFailed, match=r"graph was built \(.detach\(\) only drops it"):
        checks.check_vae_methods(ReconstructDetaches, CPU)
    with pytest.raises(CheckFailed, match="come close to 0 for some codes and to 1 for others"):
        checks.check_encoder_decoder(Encoder(), nn.Sequential(decoder(), nn.Sigmoid()))
    with pytest.raises(CheckFailed, match="separate heads"):
        checks.check_encoder_decoder(SameHeadsEncoder(), decoder())
    with pytest.raises(CheckFailed, match=r"head has 256 weights of its own"):
        checks.check_encoder_decoder(SharedHiddenLayer(), decoder())
    with pytest.raises(CheckFailed, match="the decoder has 217600 weights"):
        checks.check_encoder_decoder(Encoder(), nn.Sequential(nn.Linear(8, 64), *decoder()[3:]))
    with pytest.raises(CheckFailed, match="mu is an affine function of x"):
        checks.check_encoder_decoder(Unactivated(), decoder())
    with pytest.raises(CheckFailed, match=r"for mu_q = .* it should be -?[0-9.]+, got"):
        checks.check_kl_normal(kl_normal_no_half)
    with pytest.raises(CheckFailed, match="should end at y, but its last point is off by"):
        checks.check_interpolate_linear(interpolate_misses_end, CPU)


class CountsCalls(KLWeightManager):
    """Counts its calls instead of reading the epoch."""

    calls = 0

    def __call__(self, epoch: int) -> float:
        self.calls += 1
        return super().__call__(self.calls - 1)


class ReconstructDetaches(VAE):
    def reconstruct(self, z: Tensor) -> Tensor:
        return self.decoder(z).detach()


class SameHeadsEncoder(Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.log_var = self.mu


class SharedHiddenLayer(Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.log_var[0] = self.mu[0]


class Unactivated(Encoder):
    def __init__(self) -> None:
        super().__init__()
        for layers in (self.body, self.mu, self.log_var):
            for i, layer in enumerate(layers):
                if isinstance(layer, nn.LeakyReLU):
                    layers[i] = nn.Identity()


class UnfinishedVAE(VAE):
    """The release's VAE: provided __init__, every method a stub."""

    def reparameterize(self, mu: Tensor, log_var: Tensor) -> Tensor: ...

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...

    def encode(self, x: Tensor) -> Tensor: ...

    def reconstruct(self, z: Tensor) -> Tensor: ...


def test_unfinished_answers_fail() -> None:
    """The release's stub `...` makes every function return Ellipsis: each check must fail."""

    class Stub(nn.Module):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__()

        def __call__(self, *args: object, **kwargs: object) -> object:
            return ...

    stub = Stub()
    for run in (
        lambda: checks.check_kl_normal(stub),
        lambda: checks.check_kl_divergence(stub),
        lambda: checks.check_reparameterization(stub),
        lambda: checks.check_encoder_decoder(stub, stub),
        lambda: checks.check_interpolate_linear(stub, CPU),
        lambda: checks.check_collapse_diagnostics(stub, stub),
        lambda: checks.check_collapse_diagnostics(kl_per_dimension, stub),
        lambda: checks.check_kl_weight_manager(Stub),
        lambda: checks.check_vae_methods(UnfinishedVAE, CPU),
        lambda: checks.check_reparameterization(sampler(UnfinishedVAE.reparameterize)),
    ):
        with pytest.raises(CheckFailed):
            run()


# ---------------------------------------------------------------- forged evidence fails


def evidence_of(check: Check, answers: tuple, params: dict | None = None, seed: int = 0) -> tuple:
    """(inputs, evidence) of a check on `answers`, as the grader receives them."""
    params = params or {}
    inputs = check.make_inputs(seed, params)
    found = evidence.admit(evidence.to_evidence(check.collect(answers, inputs, params, seed)))
    return inputs, found


def judged(check: Check, inputs: dict, found: dict, params: dict | None = None) -> bool:
    """Whether the judge passes `found`."""
    try:
        check.verdict(inputs, found, params or {}, seed=7)
    except CheckFailed:
        return False
    return True


ON_INPUTS: dict[str, tuple[Check, tuple]] = {
    "kl_normal": (checks.check_kl_normal, (kl_normal,)),
    "kl_normal_properties": (hidden_checks.check_kl_normal_properties, (kl_normal,)),
    "vae_methods": (checks.check_vae_methods, (VAE, CPU)),
    "interpolate_linear": (checks.check_interpolate_linear, (interpolate_linear, CPU)),
    "collapse_diagnostics": (checks.check_collapse_diagnostics, (kl_per_dimension, active_units)),
}


@pytest.mark.parametrize("name", ON_INPUTS)
def test_evidence_of_other_inputs_fails(name: str) -> None:
    """A correct answer's evidence passes on its own inputs and fails on any other draw."""
    check, answers = ON_INPUTS[name]
    inputs, found = evidence_of(check, answers, seed=0)
    assert judged(check, inputs, found)
    assert not judged(check, check.make_inputs(1, {}), found)


def test_forged_kl_normal_evidence_fails() -> None:
    check = hidden_checks.check_kl_normal_properties
    inputs, found = evidence_of(check, (kl_normal,))
    for key in ("got", "moved"):  # made-up values with the right signs
        assert not judged(check, inputs, {**found, key: found[key].abs() + 1.0})
        assert not judged(check, inputs, {**found, key: torch.full_like(found[key], 1e-3)})
    check = checks.check_kl_normal
    inputs, found = evidence_of(check, (kl_normal,))
    assert not judged(check, inputs, {**found, "same": found["same"] + 1e-3})
    assert not judged(check, inputs, {**found, "got": found["got"].sum()})


def test_forged_vae_methods_evidence_fails() -> None:
    check = checks.check_vae_methods
    inputs, found = evidence_of(check, (VAE, CPU))
    x_hat, mu, log_var = found["forward"]
    forged = {
        "forward untracked": {"forward_tracked": False},
        "no gradient": {"standin_grad": None},
        "gradient of another probe": {"standin_grad": torch.randn_like(found["standin_grad"])},
        "stand-in not used": {"standin": found["forward"]},
        "mu, log_var swapped": {"forward": [x_hat, log_var, mu]},
        "encode tracked": {"encode_tracked": True},
        "encode samples": {"encode": mu + 0.1},
        "reconstruct tracked": {"reconstruct_tracked": True},
        "reconstruct constant": {"reconstruct": torch.full_like(found["reconstruct"], 0.5)},
        "flags only": {"forward": None, "encode": None, "reconstruct": None},
    }
    for name, change in forged.items():
        assert not judged(check, inputs, {**found, **change}), name


def test_forged_weight_schedules_fail() -> None:
    check = checks.check_kl_weight_manager
    params = {"warm_up": 5, "annealing": 10}
    inputs, found = evidence_of(check, (KLWeightManager,), params)
    assert judged(check, inputs, found, params)
    assert not judged(check, inputs, found, {"warm_up": 0, "annealing": 5})
    for weights in (found["weights"][:-1], [str(w) for w in found["weights"]], None, math.nan):
        assert not judged(check, inputs, {"weights": weights}, params)


def export(module: Callable, example: Tensor) -> dict:
    with torch.no_grad():
        return program.export_program(module, (example,))


class SameHeads(nn.Module):
    """An encoder whose mu and log_var are the same head."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Encoder()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, _ = self.inner(x)
        return mu, mu


class SquashesModerate(nn.Module):
    """A decoder whose sigmoid is skipped for codes far from 0."""

    def __init__(self) -> None:
        super().__init__()
        self.net = decoder()

    def forward(self, z: Tensor) -> Tensor:
        moderate = z.abs().amax(1, keepdim=True) < 100
        return torch.where(moderate, self.net(z), self.net[:-1](z))


class InputHeads(nn.Module):
    """An encoder that returns its input's first pixels as mu and log_var."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.narrow(1, 0, 8), x.narrow(1, 8, 8)


def test_forged_encoder_decoder_programs_fail() -> None:
    check = checks.check_encoder_decoder
    torch.manual_seed(0)
    inputs, found = evidence_of(check, (Encoder(), decoder()))
    assert judged(check, inputs, found)
    x, z = torch.rand(32, 784), torch.randn(32, 8)
    forged = {
        "LeakyReLU heads": {"encoder": export(Encoder(nn.LeakyReLU), x)},
        "Tanh heads": {"encoder": export(Encoder(nn.Tanh), x)},
        "ELU heads": {"encoder": export(Encoder(nn.ELU), x)},
        "one head twice": {"encoder": export(SameHeads(), x)},
        "encoder returns a tensor": {"encoder": export(nn.Linear(784, 8), x)},
        "decoder without sigmoid": {"decoder": export(decoder(False), z)},
        "decoder returns its input": {"decoder": export(nn.Identity(), z)},
        "decoder squashes only moderate codes": {"decoder": export(SquashesModerate(), z)},
        "a decoder program read from elsewhere": {"decoder": {"format": "pickle"}},
        "no encoder": {"encoder": None},
        "an encoder that passes pixels on as mu and log_var": {"encoder": export(InputHeads(), x)},
        "decoder with a softmax over the pixels": {
            "decoder": export(nn.Sequential(decoder(False), nn.Softmax(1)), z)
        },
    }
    for name, change in forged.items():
        assert not judged(check, inputs, {**found, **change}), name
    # heads that start equal but have their own weights are separate heads
    copied = Encoder()
    copied.log_var = copy.deepcopy(copied.mu)
    assert judged(check, inputs, {**found, "encoder": export(copied, x)})


def test_the_lab_test_cells_are_check_calls_only() -> None:
    """Every test cell of the lab parses into Check calls that the grader judges itself."""
    text = (ROOT / "labs" / "02-kl-vae.md").read_text()
    cells = re.findall(r"```python\n#!TAG TEST (\S+) \d+\n(.*?)```", text, flags=re.S)
    assert len(cells) == 9
    for grade_id, body in cells:
        source = body.replace("#!TAG HIDDENBEGIN", verdict.HIDDEN_BEGIN).replace(
            "#!TAG HIDDENEND", verdict.HIDDEN_END
        )
        spec = verdict.test_spec(grade_id, source, {"checks": "dgmlab.checks.kl_vae"})
        assert spec.calls and not spec.judged_in_kernel, grade_id
    assert 'checks.check_trained_vae(vae, test_x, bar="hidden")' in text


def test_the_public_module_holds_no_hidden_threshold() -> None:
    from autograder.hidden import kl_vae as hidden

    source = Path(checks.__file__).read_text()
    assert not [name for name in dir(checks) if name.startswith("HIDDEN")]
    assert repr(hidden.MAX_LOSS) not in source
    assert hidden.MAX_LOSS < checks.MAX_LOSS
    assert checks._max_loss("hidden") == hidden.MAX_LOSS
    assert checks._max_loss("public") == checks.MAX_LOSS


# ---------------------------------------------------------------- the trained model


class ZeroEncoder(nn.Module):
    """The prior for every image: mu = 0, log_var = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        zero = torch.zeros_like(x.narrow(1, 0, 8))
        return zero, zero.clone()


class AverageDecoder(nn.Module):
    """The average training image, whatever the code."""

    def __init__(self, average: Tensor):
        super().__init__()
        self.average = nn.Parameter(average)

    def forward(self, z: Tensor) -> Tensor:
        return self.average + 0 * z.sum(1, keepdim=True)


class Collapsed(nn.Module):
    """A VAE whose posterior is the prior and whose decoder outputs the average image."""

    def __init__(self, average: Tensor):
        super().__init__()
        self.encoder, self.decoder = ZeroEncoder(), AverageDecoder(average)


class Scaled(nn.Module):
    """An encoder that passes its input on, c x with a tiny variance, as a 784-dimensional code."""

    def __init__(self, scale: float, log_var: float):
        super().__init__()
        self.scale, self.log_var = scale, log_var

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.scale * x, torch.full_like(x, self.log_var)


class Unscaled(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, z: Tensor) -> Tensor:
        return z / self.scale


@pytest.fixture(scope="module")
def mnist() -> tuple[Tensor, Tensor]:
    from torchvision.datasets import MNIST

    from dgmlab.data import data_dir

    def load(train: bool) -> Tensor:
        return MNIST(data_dir(), train=train, download=True).data.float().div(255).flatten(1)

    return load(True), load(False)


@pytest.fixture(scope="module")
def held_out() -> Tensor:
    from dgmlab.heldout import held_out_test_images

    return held_out_test_images().flatten(1)


@pytest.mark.data
def test_collapsed_and_untrained_models_fail(
    mnist: tuple[Tensor, Tensor], held_out: Tensor
) -> None:
    train_x, test_x = mnist
    collapsed = Collapsed(train_x.mean(0))
    loss, kl = checks.vae_scores(collapsed.encoder, collapsed.decoder, held_out)
    assert kl == 0 and COLLAPSED_RANGE[0] < loss < COLLAPSED_RANGE[1]  # quoted next to MAX_LOSS
    with pytest.raises(CheckFailed, match="below"):
        checks.check_trained_vae(collapsed, test_x, min_kl=0)
    with pytest.raises(CheckFailed, match="collapsed"):
        checks.check_trained_vae(collapsed, test_x, max_loss=math.inf)
    torch.manual_seed(0)
    with pytest.raises(CheckFailed, match="below"):
        checks.check_trained_vae(VAE(Encoder(), decoder(), CPU), test_x)


@pytest.mark.data
def test_trained_check_wants_the_real_test_set(mnist: tuple[Tensor, Tensor]) -> None:
    train_x, test_x = mnist
    collapsed = Collapsed(train_x.mean(0))
    for wrong in (train_x[:10_000], test_x[:5000], test_x * 255):
        with pytest.raises(CheckFailed, match="MNIST test images"):
            checks.check_trained_vae(collapsed, wrong)


@pytest.mark.data
def test_forged_trained_models_fail(mnist: tuple[Tensor, Tensor], held_out: Tensor) -> None:
    """The judge scores the exported programs on images the kernel never saw, with its own z:
    a model that passes its input through, a collapsed one or a missing one cannot pass."""
    train_x, test_x = mnist
    check = checks.check_trained_vae
    inputs, found = evidence_of(check, (Collapsed(train_x.mean(0)), test_x))
    x = held_out[:20]
    forged = {
        "the collapsed model": found,
        "encoder returns its input": {
            "encoder": export(Scaled(1.0, 0.0), x),
            "decoder": export(nn.Identity(), x),
        },
        "input passed on with a tiny variance": {
            "encoder": export(Scaled(10.0, -10.0), x),
            "decoder": export(Unscaled(10.0), x),
        },
        "no decoder": {**found, "decoder": None},
        "encoder and decoder swapped": {"encoder": found["decoder"], "decoder": found["encoder"]},
    }
    for name, payloads in forged.items():
        for bar in ("public", "hidden"):
            assert not judged(check, inputs, payloads, {"bar": bar}), name
    for scale, log_var in ((1.0, 0.0), (10.0, -10.0)):  # the losses of the pass-through models
        loss, _ = checks.vae_scores(Scaled(scale, log_var), Unscaled(scale), held_out)
        excess = loss - checks.GAUSSIAN_CONSTANT  # squared error + KL, as MAX_LOSS's margin
        assert excess > 2 * (checks.MAX_LOSS - checks.GAUSSIAN_CONSTANT)


@pytest.mark.data
@pytest.mark.slow
def test_reference_training_passes_the_hidden_threshold(mnist: tuple[Tensor, Tensor]) -> None:
    """The lab's schedule (warm-up 1, annealing 4, 8 epochs); about 30 s on one CPU core."""
    train_x, test_x = mnist
    torch.manual_seed(1)
    vae = VAE(Encoder(), decoder(), CPU)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    weights = KLWeightManager(warm_up_rounds=1, annealing_rounds=4)
    for epoch in range(8):
        for index in torch.randperm(len(train_x)).split(128):
            x = train_x[index]
            x_hat, mu, log_var = vae(x)
            kl = KLDivergence()(mu, log_var)
            loss = (x_hat - x).pow(2).sum(1).mean() + weights(epoch) * kl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    check = checks.check_trained_vae
    inputs, found = evidence_of(check, (vae, test_x), {"bar": "hidden"})
    assert judged(check, inputs, found, {"bar": "hidden"})
    checks.check_trained_vae(vae, test_x)


# ---------------------------------------------------------------- collapse diagnostics


def test_collapse_diagnostics_batches_tell_the_mistakes_apart() -> None:
    """Under 200 seeds: every column's variance is at least twice or at most half of each
    threshold (so Bessel's correction never matters), and the counts that a standard deviation,
    a mean square, a KL, the other axis, the inactive units or a hard-coded 0.01 give differ
    from the answer at one threshold at least."""
    check = checks.check_collapse_diagnostics
    thresholds = (0.01, checks.HIGH_THRESHOLD)
    for seed in range(200):
        inputs = check.make_inputs(seed, {})
        mu, log_var = inputs["mu"], inputs["log_var"]
        variance = mu.var(dim=0, correction=0)
        assert torch.allclose(variance, inputs["variance"], rtol=1e-9, atol=1e-12), seed
        for threshold in thresholds:
            ratio = variance / threshold
            assert bool(((ratio >= 1.99) | (ratio <= 0.5)).all()), seed
        want = [checks._active_reference(inputs, t) for t in thresholds]
        assert want == [int((mu.var(dim=0) > t).sum()) for t in thresholds], seed
        wrong_counts = {
            "sd": [int((variance.sqrt() > t).sum()) for t in thresholds],
            "mean square": [int((mu.pow(2).mean(0) > t).sum()) for t in thresholds],
            "kl": [
                int((checks._kl_per_dimension_reference(mu, log_var) > t).sum()) for t in thresholds
            ],
            "dim 1": [int((mu.var(dim=1) > t).sum()) for t in thresholds],
            "inactive": [mu.shape[1] - w for w in want],
            "0.01 always": [want[0], want[0]],
        }
        for name, counts in wrong_counts.items():
            assert counts != want, (seed, name)


def test_collapse_diagnostics_messages_name_the_mistake() -> None:
    def run(kl: Callable = kl_per_dimension, active: Callable = active_units) -> None:
        checks.check_collapse_diagnostics(kl, active)

    cases = {
        "one value per image": (lambda mu, lv: (0.5 * (mu**2 + lv.exp() - 1 - lv)).sum(1), None),
        "summed over the images": (lambda mu, lv: (0.5 * (mu**2 + lv.exp() - 1 - lv)).sum(0), None),
        "factor 1/2": (lambda mu, lv: (mu**2 + lv.exp() - 1 - lv).mean(0), None),
        "standard deviation": (None, lambda mu, threshold=0.01: int((mu.std(0) > threshold).sum())),
        "mean of mu\\^2": (
            None,
            lambda mu, threshold=0.01: int((mu.pow(2).mean(0) > threshold).sum()),
        ),
        "over dim 1": (None, lambda mu, threshold=0.01: int((mu.var(1) > threshold).sum())),
        "inactive": (None, lambda mu, threshold=0.01: int((mu.var(0) <= threshold).sum())),
        "the one it is given": (None, lambda mu, threshold=0.01: active_units(mu)),
        "one number": (None, lambda mu, threshold=0.01: mu.var(0) > threshold),
    }
    for pattern, (kl, active) in cases.items():
        with pytest.raises(CheckFailed, match=pattern):
            run(kl or kl_per_dimension, active or active_units)


def test_the_score_is_the_gaussian_negative_elbo_with_its_constant() -> None:
    """vae_scores adds GAUSSIAN_CONSTANT to the squared error: -log N(x | x_hat, I/2) exactly,
    as torch.distributions computes it, plus the KL."""
    torch.manual_seed(0)
    x, x_hat = torch.rand(5, 784, dtype=torch.float64), torch.rand(5, 784, dtype=torch.float64)
    nll = -torch.distributions.Normal(x_hat, math.sqrt(0.5)).log_prob(x).sum(1)
    squared = (x - x_hat).pow(2).sum(1)
    assert torch.allclose(nll, squared + checks.GAUSSIAN_CONSTANT, rtol=0, atol=1e-9)

    class Fixed(nn.Module):  # the encoder of a posterior N(0, 1/4) for every image
        def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
            zero = torch.zeros(len(images), 8, dtype=images.dtype)
            return zero, torch.full_like(zero, math.log(0.25))

    decoded = x_hat[0].float()
    loss, kl = checks.vae_scores(Fixed(), lambda z: decoded.expand(len(z), 784), x.float())
    prior, q = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(0.0, 0.5)
    want_kl = 8 * torch.distributions.kl_divergence(q, prior).item()
    assert abs(kl - want_kl) < 1e-6
    want = (x.float().double() - decoded.double()).pow(2).sum(1).mean().item()
    assert abs(loss - (want + checks.GAUSSIAN_CONSTANT + want_kl)) < 1e-4
