"""The checks of lab 03 (conv VAE) accept the lab's reference answers and reject typical wrong ones.

The reference answers are executed from the solution view of labs/03-conv-vae.md, so that these
tests follow the lab as it changes.
"""

import copy
import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal

from autograder import sandbox, verdict
from autograder.hidden_checks import conv_vae as hidden_checks
from autograder.template import read_template
from autograder.views import render
from dgmlab.checks import conv_vae as checks
from dgmlab.checks import evidence, stats
from dgmlab.checks.core import CheckFailed
from dgmlab.checks.program import export_program, load_program
from dgmlab.data import BINARIZE_SEED, binarize

LAB = Path(__file__).resolve().parent.parent / "labs" / "03-conv-vae.md"
AT_MOST_PUBLIC = f"expected at most {checks.PUBLIC_MAX_NELBO:g}"  # the public bar's message
ANSWERS = (
    "vae_loss",
    "ConvVAE",
    "log_importance_weights",
    "iwae_bound",
    "linear_interpolation",
    "latent_linear_interpolation",
)


@functools.cache
def lab() -> dict:
    """The lab's reference answers, executed from its solution view."""
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math}
    for cell in render(read_template(LAB), "solution"):
        source = cell.source
        if cell.kind == "code" and any(
            source.startswith((f"def {name}(", f"class {name}(")) for name in ANSWERS
        ):
            exec(compile(source, str(LAB), "exec"), namespace)
    missing = [name for name in ANSWERS if name not in namespace]
    assert not missing, f"the lab defines no {missing}"
    return namespace


def ref(name: str):
    return lab()[name]


@functools.cache
def mnist_test() -> torch.Tensor:
    """The test set as the notebook loads it: binarised once, with BINARIZE_SEED."""
    return checks._binarized_test_images()


# ---------------------------------------------------------------------------------------------
# wrong answers, one typical mistake each


def _kl(mu, log_var):
    return 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum()


def loss_mean(output, mu, log_var, images):
    kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).mean()
    return F.binary_cross_entropy(output, images), kl


def loss_mean_over_batch(output, mu, log_var, images):
    n = len(images)
    return F.binary_cross_entropy(output, images, reduction="sum") / n, _kl(mu, log_var) / n


def loss_added(output, mu, log_var, images):
    return F.binary_cross_entropy(output, images, reduction="sum") + _kl(mu, log_var)


def loss_added_twice(output, mu, log_var, images):
    total = F.binary_cross_entropy(output, images, reduction="sum") + _kl(mu, log_var)
    return total, _kl(mu, log_var)


def loss_kl_sign(output, mu, log_var, images):
    return F.binary_cross_entropy(output, images, reduction="sum"), -_kl(mu, log_var)


def loss_swapped(output, mu, log_var, images):
    return F.binary_cross_entropy(images, output, reduction="sum"), _kl(mu, log_var)


def loss_floats(output, mu, log_var, images):
    return tuple(t.item() for t in ref("vae_loss")(output, mu, log_var, images))


def loss_kl_variance_as_sigma(output, mu, log_var, images):
    kl = 0.5 * (mu.pow(2) + log_var.exp().sqrt() - 1 - log_var).sum()
    return F.binary_cross_entropy(output, images, reduction="sum"), kl


def interp_reversed(x0, x1):
    alpha = torch.linspace(1, 0, 11).view(-1, *[1] * x0.dim())
    return alpha * x1 + (1 - alpha) * x0


def interp_ten(x0, x1):
    alpha = torch.linspace(0, 1, 10).view(-1, *[1] * x0.dim())
    return alpha * x1 + (1 - alpha) * x0


def interp_stacked_last(x0, x1):  # a loop that stacks the points along the last dimension
    return torch.stack([a * x1 + (1 - a) * x0 for a in torch.linspace(0, 1, 11)], dim=-1)


def latent_mix_pixels(z0, z1, vae):  # decodes the ends, then mixes pixels
    ends = vae.decoder(torch.stack([z0, z1]))
    return ref("linear_interpolation")(ends[0], ends[1])


def latent_ten(z0, z1, vae):
    return vae.decoder(interp_ten(z0, z1))


def latent_reversed(z0, z1, vae):
    return vae.decoder(ref("linear_interpolation")(z1, z0))


def wrong_vae(name: str, **methods) -> type:
    """A subclass of the lab's ConvVAE with some methods replaced."""
    return type(name, (ref("ConvVAE"),), methods)


def _sigma_is_variance(self, mu, log_var):
    return mu + torch.exp(log_var) * torch.randn_like(mu)


def _decoder_32(self, z):
    return F.pad(self.generator(z), (2, 2, 2, 2))


def _decoder_logits(self, z):
    return self.generator[:-1](z)


def _decoder_clamped(self, z):  # probabilities near 0 and 1, but 0 (not 0.5) at zero parameters
    return self.generator[:-1](z).clamp(0, 1)


def _encoder_mean_in_eval(self, x):
    mu, log_var, z = ref("ConvVAE").encoder(self, x)
    return mu, log_var, z if self.training else mu


def _encoder_two(self, x):
    return ref("ConvVAE").encoder(self, x)[:2]


def _forward_no_stats(self, x):
    return self.decoder(self.encoder(x)[2])


def _reparameterize_detached(self, mu, log_var):
    return mu + torch.exp(0.5 * log_var).detach() * torch.randn_like(mu)


def _reparameterize_uniform(self, mu, log_var):
    eps = (torch.rand_like(mu) - 0.5) * math.sqrt(12)
    return mu + torch.exp(0.5 * log_var) * eps


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------------------------------------
# the reference passes


def test_reference_passes_every_check(capsys):
    vae = ref("ConvVAE")()
    checks.check_vae_loss(ref("vae_loss"))
    hidden_checks.check_vae_loss_gradients(ref("vae_loss"))
    checks.check_reparameterization(vae.reparameterize)
    hidden_checks.check_reparameterization_gradients(vae.reparameterize)
    checks.check_conv_vae(ref("ConvVAE"))
    checks.check_linear_interpolation(ref("linear_interpolation"))
    hidden_checks.check_linear_interpolation_batches(ref("linear_interpolation"))
    checks.check_latent_linear_interpolation(ref("latent_linear_interpolation"))
    checks.check_log_importance_weights(ref("log_importance_weights"))
    checks.check_iwae_bound(ref("iwae_bound"))
    out, err = capsys.readouterr()
    assert err == ""  # nbgrader zeroes a test cell that writes to stderr
    assert out.count("passed: ") == 10


def _encoder_reads_len(self, x):
    h = self.features(x).view(len(x), -1)  # len(x) fixes the batch size of the export
    mu, log_var = self.mu_head(h), self.log_var_head(h)
    return mu, log_var, self.reparameterize(mu, log_var)


def _decoder_reads_len(self, z):
    return self.generator(z.view(len(z), -1))


def test_a_model_exported_with_a_fixed_batch_size_passes(monkeypatch):
    fixed = wrong_vae("Fixed", encoder=_encoder_reads_len, decoder=_decoder_reads_len)
    model = fixed().eval()
    x = torch.rand(8, 1, 28, 28)
    assert export_program(model.encoder, (x,))["batch"] == "static"
    checks.check_conv_vae(fixed)  # the judge runs its 4096 sampling images in batches of 5
    images = torch.bernoulli(torch.full((1003, 1, 28, 28), 0.3))  # 0/1: its own binarisation
    # not a multiple of 8: the last piece is padded
    monkeypatch.setattr(checks, "_mnist_test_images", lambda: images)
    monkeypatch.setattr(checks, "_held_out_images", lambda: images.clone())
    found = checks.check_trained_vae.collect((model, images), {}, {}, seed=1)
    encoder = load_program(found["encoder"])
    torch.manual_seed(3)
    mu, log_var, _ = checks._run(encoder, "encoder(x)", images)
    with torch.no_grad():
        want_mu, want_log_var, _ = model.encoder(images)
    assert torch.allclose(mu, want_mu, atol=1e-5) and torch.allclose(
        log_var, want_log_var, atol=1e-5
    )
    monkeypatch.setattr(checks, "PUBLIC_MAX_NELBO", math.inf)
    checks.check_trained_vae(model, images)


def test_zero_vae_costs_784_ln_2_nats_per_image():
    vae = ref("ConvVAE")()
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
        images = torch.rand(5, 1, 28, 28)
        recon, kl = ref("vae_loss")(*vae(images), images)
    assert recon.item() / 5 == pytest.approx(543.427, abs=1e-3)
    assert kl.item() == 0


# ---------------------------------------------------------------------------------------------
# each wrong answer fails, with a message that says why

WRONG_LOSSES = [
    (loss_mean, "mean"),
    (loss_mean_over_batch, "mean"),
    (loss_added, "two terms"),
    (loss_added_twice, "sum of both terms"),
    (loss_kl_sign, "sign is flipped"),
    (loss_swapped, "swapped"),
    (loss_floats, "torch.Tensor"),
    (loss_kl_variance_as_sigma, "the KL term"),
]


@pytest.mark.parametrize(("wrong", "says"), WRONG_LOSSES, ids=[w.__name__ for w, _ in WRONG_LOSSES])
def test_wrong_vae_loss_fails(wrong, says):
    with pytest.raises(CheckFailed) as info:
        checks.check_vae_loss(wrong)
    assert says in str(info.value)


WRONG_SAMPLERS = [
    (_sigma_is_variance, checks.check_reparameterization, "variance"),
    (_sigma_is_variance, hidden_checks.check_reparameterization_gradients, "exp(log_var / 2)"),
    (_reparameterize_detached, hidden_checks.check_reparameterization_gradients, "detached"),
    (_reparameterize_uniform, checks.check_reparameterization, "beyond 2 sd"),
]


@pytest.mark.parametrize(
    ("method", "check", "says"),
    WRONG_SAMPLERS,
    ids=[f"{m.__name__}-{c.__name__}" for m, c, _ in WRONG_SAMPLERS],
)
def test_wrong_sampler_fails(method, check, says):
    vae = wrong_vae("Wrong", reparameterize=method)()
    with pytest.raises(CheckFailed) as info:
        check(vae.reparameterize)
    assert says in str(info.value)


WRONG_MODELS = [
    ("decoder_32", {"decoder": _decoder_32}, checks.check_conv_vae, "(5, 1, 28, 28)"),
    ("decoder_logits", {"decoder": _decoder_logits}, checks.check_conv_vae, "sigmoid"),
    ("encoder_two", {"encoder": _encoder_two}, checks.check_conv_vae, "(mu, log_var, z)"),
    ("forward_x_hat_only", {"forward": _forward_no_stats}, checks.check_conv_vae, "forward"),
    ("z_is_mu_in_eval", {"encoder": _encoder_mean_in_eval}, checks.check_conv_vae, "z = mu"),
    ("decoder_clamped_zero", {"decoder": _decoder_clamped}, checks.check_conv_vae, "0.5"),
    ("sigma_is_variance", {"reparameterize": _sigma_is_variance}, checks.check_conv_vae, "variance"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("methods", "check", "says"),
    [w[1:] for w in WRONG_MODELS],
    ids=[w[0] for w in WRONG_MODELS],
)
def test_wrong_model_fails(methods, check, says):
    with pytest.raises(CheckFailed) as info:
        check(wrong_vae("Wrong", **methods))
    assert says in str(info.value)


def test_activation_after_the_heads_fails():
    class LeakyHeads(ref("ConvVAE")):
        def encoder(self, x):
            h = self.features(x)
            mu, log_var = F.leaky_relu(self.mu_head(h) + 1), F.leaky_relu(self.log_var_head(h) + 1)
            return mu, log_var, self.reparameterize(mu, log_var)

    with pytest.raises(CheckFailed, match="mu should take any real value"):
        checks.check_conv_vae(LeakyHeads)


def test_fully_connected_model_fails():
    # Tiny (below) has the lab's interface and no convolutions.
    with pytest.raises(CheckFailed, match="convolutional"):
        checks.check_conv_vae(Tiny)


WRONG_INTERPOLATIONS = [
    (checks.check_linear_interpolation, interp_reversed, "alpha should run 0, 0.1"),
    (checks.check_linear_interpolation, interp_ten, "(11, 1)"),
    (checks.check_linear_interpolation, interp_stacked_last, "shape (11, 1)"),
    (checks.check_latent_linear_interpolation, latent_mix_pixels, "then decode"),
    (checks.check_latent_linear_interpolation, latent_ten, "(11, 1, 28, 28)"),
    (checks.check_latent_linear_interpolation, latent_reversed, "decode z0"),
]


@pytest.mark.parametrize(
    ("check", "wrong", "says"),
    WRONG_INTERPOLATIONS,
    ids=[w.__name__ for _, w, _ in WRONG_INTERPOLATIONS],
)
def test_wrong_interpolation_fails(check, wrong, says):
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    assert says in str(info.value)


def _weights_from(mu, log_var, z, x_hat, x, log_q=None):
    """log p(x | z) + log p(z) - log q(z | x) of decoded samples (K, B, ...)."""
    q = Normal(mu, torch.exp(0.5 * log_var))
    bce = F.binary_cross_entropy(x_hat, x.expand_as(x_hat), reduction="none").flatten(2).sum(-1)
    log_q = q.log_prob(z).sum(-1) if log_q is None else log_q
    return -bce + Normal(0.0, 1.0).log_prob(z).sum(-1) - log_q


def _sampled(vae, x, K):
    mu, log_var, _ = vae.encoder(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(K, *mu.shape)
    return mu, log_var, z, vae.decoder(z.flatten(0, 1)).view(K, *x.shape)


def weights_without_prior(vae, x, K):
    mu, log_var, z, x_hat = _sampled(vae, x, K)
    return _weights_from(mu, log_var, z, x_hat, x) - Normal(0.0, 1.0).log_prob(z).sum(-1)


def weights_one_z(vae, x, K):
    mu, log_var, z = vae.encoder(x)
    x_hat = vae.decoder(z)[None]
    return _weights_from(mu, log_var, z[None], x_hat, x).expand(K, -1)


def weights_decoded_mean(vae, x, K):
    mu, log_var, z, _ = _sampled(vae, x, K)
    x_hat = vae.decoder(mu).expand(K, *x.shape)
    return _weights_from(mu, log_var, z, x_hat, x)


def weights_variance_as_sigma(vae, x, K):
    mu, log_var, _ = vae.encoder(x)
    z = mu + torch.exp(log_var) * torch.randn(K, *mu.shape)
    return _weights_from(mu, log_var, z, vae.decoder(z.flatten(0, 1)).view(K, *x.shape), x)


def weights_three_dimensional_codes(vae, x, K):
    mu, log_var, _ = vae.encoder(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(K, *mu.shape)
    return _weights_from(mu, log_var, z, vae.decoder(z), x)


def bound_mean_of_logs(log_w):
    return log_w.mean(0)


def bound_sum(log_w):
    return torch.logsumexp(log_w, dim=0)


def bound_naive(log_w):
    return log_w.exp().mean(0).log()


WRONG_IWAE = [
    (checks.check_log_importance_weights, weights_without_prior, "vary with z"),
    (checks.check_log_importance_weights, weights_one_z, "all the same number"),
    (checks.check_log_importance_weights, weights_decoded_mean, "decode every sample"),
    (checks.check_log_importance_weights, weights_variance_as_sigma, "sigma = exp(log_var / 2)"),
    (checks.check_log_importance_weights, weights_three_dimensional_codes, "z.flatten(0, 1)"),
    (checks.check_iwae_bound, bound_mean_of_logs, "the ELBO estimate"),
    (checks.check_iwae_bound, bound_sum, "subtract log K"),
    (checks.check_iwae_bound, bound_naive, "use torch.logsumexp"),
]


@pytest.mark.parametrize(
    ("check", "wrong", "says"), WRONG_IWAE, ids=[w.__name__ for _, w, _ in WRONG_IWAE]
)
def test_wrong_importance_sampling_fails(check, wrong, says):
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    assert says in str(info.value)


def test_oracle_log_weights_average_minus_the_kl():
    # The judge's own draws (torch.distributions) against the closed form: with a decoder that
    # ignores z, log w - log p(x) = log p(z) - log q(z | x), whose mean under q is -KL(q || p)
    # and whose variance is sum_j mu_j^2 sigma_j^2 + (1 - sigma_j^2)^2 / 2.
    case = checks.check_log_importance_weights.make_inputs(3, {})["posterior"]
    torch.manual_seed(0)
    log_ratio = checks._oracle_log_weights(case, 20_000) - checks._likelihood(
        case, torch.zeros(1, len(case["x"]), checks.IWAE_LATENT, dtype=torch.float64)
    )
    mu, log_var = checks._posterior_of(case)
    kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)
    variance = (mu**2 * log_var.exp() + (1 - log_var.exp()) ** 2 / 2).sum(-1)
    standard_error = (variance / 20_000).sqrt()
    assert ((log_ratio.mean(0) + kl).abs() <= 5.5 * standard_error).all()
    assert torch.allclose(log_ratio.var(0), variance, rtol=0.1)


def test_student_stubs_fail_with_a_message():
    def stub(*args):  # what the student view defines before any answer: a body of `...`
        return None

    class Stub(nn.Module):
        def __init__(self, latent_features=16):
            super().__init__()

        reparameterize = encoder = decoder = forward = stub

    for run in (
        lambda: checks.check_vae_loss(stub),
        lambda: checks.check_reparameterization(Stub().reparameterize),
        lambda: checks.check_conv_vae(Stub),
        lambda: checks.check_linear_interpolation(stub),
        lambda: checks.check_latent_linear_interpolation(stub),
        lambda: checks.check_log_importance_weights(stub),
        lambda: checks.check_iwae_bound(stub),
    ):
        with pytest.raises(CheckFailed):
            run()


# ---------------------------------------------------------------------------------------------
# the trained-model metric: one posterior sample per image, never z = mu


class Tiny(nn.Module):
    """A cheap VAE with the lab's interface, for the statistical and metric tests."""

    def __init__(self, latent_features=16, z_is_mu=False):
        super().__init__()
        self.z_is_mu = z_is_mu
        self.enc = nn.Linear(784, 2 * latent_features)
        self.dec = nn.Linear(latent_features, 784)

    def encoder(self, x):
        mu, log_var = self.enc(x.flatten(1)).chunk(2, dim=1)
        if self.z_is_mu and not self.training:
            return mu, log_var, mu
        return mu, log_var, mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def decoder(self, z):
        return torch.sigmoid(self.dec(z)).view(-1, 1, 28, 28)

    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var


class SharpAtTheMean(nn.Module):
    """Decodes all-white images perfectly at z = mu = 0, badly at most samples z ~ N(0, 1)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def encoder(self, x):
        mu = torch.zeros(len(x), 1, device=x.device)
        return mu, torch.zeros_like(mu), mu + torch.randn_like(mu)

    def decoder(self, z):
        return torch.sigmoid(10 + self.scale * z).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)


def test_negative_elbo_samples_z_instead_of_using_the_mean():
    model, images = SharpAtTheMean(), torch.ones(2000, 1, 28, 28)
    with torch.no_grad():
        at_mean = F.binary_cross_entropy(
            model.decoder(torch.zeros(1, 1)), images[:1], reduction="sum"
        )
        torch.manual_seed(0)
        sampled = checks.negative_elbo(model.encoder, model.decoder, images)
    assert at_mean.item() < 0.05  # an evaluation at z = mu would pass any bar
    assert sampled > 1000  # one sample per image: P(z < -0.5) = 0.31 costs ~ 784 * 20|z| nats


@pytest.fixture
def all_white(monkeypatch):
    """All-white images stand in for both the notebook's test set and the held-out images."""
    images = torch.ones(1000, 1, 28, 28)
    monkeypatch.setattr(checks, "_mnist_test_images", lambda: images)
    monkeypatch.setattr(checks, "_held_out_images", lambda: images.clone())
    return images


def test_trained_check_fails_a_model_that_is_good_only_at_z_equal_mu(all_white):
    with pytest.raises(CheckFailed, match=AT_MOST_PUBLIC):
        checks.check_trained_vae(SharpAtTheMean(), all_white)


def test_negative_elbo_is_the_mean_of_the_loss_terms():
    model, images = Tiny(4), torch.rand(300, 1, 28, 28)
    with torch.no_grad():
        torch.manual_seed(1)
        got = checks.negative_elbo(model.encoder, model.decoder, images, batch_size=128)
        torch.manual_seed(1)
        want = 0.0
        for x in images.split(128):
            mu, log_var, _ = model.encoder(x)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            recon, kl = ref("vae_loss")(model.decoder(z), mu, log_var, x)
            want += recon.item() + kl.item()
    assert got == pytest.approx(want / 300, rel=1e-5)


@pytest.mark.data
def test_trained_check_rejects_an_untrained_model_and_other_images():
    with pytest.raises(CheckFailed, match=AT_MOST_PUBLIC):
        checks.check_trained_vae(Tiny(16), mnist_test())
    with pytest.raises(CheckFailed, match="whole MNIST test set"):
        checks.check_trained_vae(Tiny(16), mnist_test()[:1000])
    with pytest.raises(CheckFailed, match="binarised with BINARIZE_SEED"):  # grey levels
        checks.check_trained_vae(Tiny(16), checks._mnist_test_images())
    with pytest.raises(CheckFailed, match="binarised with BINARIZE_SEED"):  # another draw
        checks.check_trained_vae(Tiny(16), binarize(checks._mnist_test_images(), seed=1))


@pytest.mark.data
def test_trained_check_scores_the_reference_model_on_the_held_out_images(monkeypatch):
    model = ref("ConvVAE")()
    monkeypatch.setattr(checks, "PUBLIC_MAX_NELBO", math.inf)
    checks.check_trained_vae(model, mnist_test())
    assert model.training  # the check restores the mode it found
    found = checks.check_trained_vae.collect((model, mnist_test()), {}, {}, seed=1)
    encoder, decoder = (load_program(found[part]) for part in ("encoder", "decoder"))
    held_out = checks._held_out_images()
    assert held_out.shape == (2000, 1, 28, 28)
    grey = checks._mnist_test_images()[-2000:]  # the last 2000, in their own fixed binarisation
    assert torch.equal(held_out, binarize(grey, seed=BINARIZE_SEED))
    assert set(held_out.unique().tolist()) == {0.0, 1.0}
    torch.manual_seed(2)
    judged = checks.negative_elbo(encoder, decoder, held_out)
    torch.manual_seed(2)
    model.eval()
    with torch.no_grad():
        direct = checks.negative_elbo(model.encoder, model.decoder, held_out)
    assert judged == pytest.approx(direct, rel=1e-5)  # the exported model is the model


# ---------------------------------------------------------------------------------------------
# statistical checks: their false failures (300 secrets) and power are measured on the lab's
# variants, tests/test_variants_03.py; the trained-model check makes no statistical assertion
# (its bars are calibrated, see autograder.hidden.conv_vae)


# ---------------------------------------------------------------------------------------------
# forged evidence: the judge decides from the grader's inputs, never from what a kernel claims


def evidence_of(check, answers: tuple, seed: int, **params) -> tuple[dict, dict]:
    """The inputs drawn from `seed` and the evidence a kernel collects on them, as the grader
    reads it back (plain data only)."""
    inputs = check.make_inputs(seed, params)
    found = check.collect(answers, inputs, params, seed)
    return inputs, evidence.admit(evidence.to_evidence(found))


def zeroed(value):
    """The same evidence with every tensor replaced by zeros: right shapes, wrong values."""
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, list):
        return [zeroed(v) for v in value]
    if isinstance(value, dict):
        return {k: zeroed(v) for k, v in value.items()}
    return value


VALUE_CHECKS = [
    (checks.check_vae_loss, "vae_loss"),
    (hidden_checks.check_vae_loss_gradients, "vae_loss"),
    (checks.check_linear_interpolation, "linear_interpolation"),
    (hidden_checks.check_linear_interpolation_batches, "linear_interpolation"),
    (checks.check_latent_linear_interpolation, "latent_linear_interpolation"),
    (checks.check_log_importance_weights, "log_importance_weights"),
    (checks.check_iwae_bound, "iwae_bound"),
]


@pytest.mark.parametrize(
    ("check", "answer"), VALUE_CHECKS, ids=[c.__name__ for c, _ in VALUE_CHECKS]
)
def test_evidence_of_other_inputs_or_zeros_fails(check, answer):
    inputs, found = evidence_of(check, (ref(answer),), seed=1)
    check.verdict(inputs, found, {}, seed=5)  # the reference's own evidence passes
    other = check.make_inputs(2, {})  # what a kernel computed on inputs other than the grader's
    with pytest.raises(CheckFailed):
        check.verdict(other, found, {}, seed=5)
    with pytest.raises(CheckFailed):
        check.verdict(inputs, zeroed(found), {}, seed=5)
    with pytest.raises(CheckFailed):
        check.verdict(inputs, {}, {}, seed=5)  # nothing collected at all


def test_vae_loss_gradients_from_another_loss_fail():
    check = hidden_checks.check_vae_loss_gradients
    inputs, found = evidence_of(check, (ref("vae_loss"),), seed=1)
    forged = dict(found, mu_grad=2 * found["mu_grad"])  # the gradient of a doubled KL
    with pytest.raises(CheckFailed, match="d KL / d mu"):
        check.verdict(inputs, forged, {}, seed=5)
    with pytest.raises(CheckFailed, match="differentiable"):
        check.verdict(inputs, dict(found, tracked=False), {}, seed=5)


def export_parts(model: nn.Module, batch: int = 5) -> dict:
    """A model's encoder, decoder and forward as the kernel exports them (eval mode)."""
    model.eval()
    x = torch.rand(batch, 1, 28, 28)
    with torch.no_grad():
        z = model.encoder(x)[2]
        return {
            "encoder": export_program(model.encoder, (x,)),
            "decoder": export_program(model.decoder, (z,)),
            "forward": export_program(model, (x,)),
        }


@functools.cache
def conv_vae_evidence() -> tuple[dict, dict]:
    return evidence_of(checks.check_conv_vae, (ref("ConvVAE"),), seed=1)


def with_programs(found: dict, latent: int, **parts) -> dict:
    return dict(found, **{f"{part} {latent}": payload for part, payload in parts.items()})


def test_conv_vae_evidence_without_working_exports_fails():
    check = checks.check_conv_vae
    inputs, found = conv_vae_evidence()
    check.verdict(inputs, copy.deepcopy(found), {}, seed=5)
    without = {k: v for k, v in found.items() if k != "encoder"}
    with pytest.raises(CheckFailed, match="not exported"):
        check.verdict(inputs, without, {}, seed=5)
    dense = export_parts(Tiny(16))  # the lab's interface without a convolution
    with pytest.raises(CheckFailed, match="convolutional"):
        check.verdict(inputs, dict(found, encoder=dense["encoder"]), {}, seed=5)
    logits = export_parts(wrong_vae("Logits", decoder=_decoder_logits)(16))
    with pytest.raises(CheckFailed, match="sigmoid"):
        check.verdict(inputs, dict(copy.deepcopy(found), decoder=logits["decoder"]), {}, seed=5)
    swapped = dict(found, encoder=found["decoder"], decoder=found["encoder"])
    with pytest.raises(CheckFailed):
        check.verdict(inputs, copy.deepcopy(swapped), {}, seed=5)
    # an export of another model than the one the kernel ran: forward's mu is not the encoder's
    other = export_parts(ref("ConvVAE")(16))
    with pytest.raises(CheckFailed, match="forward"):
        check.verdict(inputs, dict(copy.deepcopy(found), encoder=other["encoder"]), {}, seed=5)
    # the kernel's own outputs are judged as well: a forged record of the wrong shapes fails
    record = found["latent 2"]
    forged = dict(found, **{"latent 2": dict(record, far=record["far"][:, :, :14])})
    with pytest.raises(CheckFailed, match="decoder"):
        check.verdict(inputs, copy.deepcopy(forged), {}, seed=5)


def test_conv_vae_evidence_of_a_mean_encoder_fails():
    check = checks.check_conv_vae
    mean = wrong_vae("Mean", encoder=_encoder_mean_in_eval)  # z = mu in eval mode
    inputs, found = evidence_of(check, (mean,), seed=1)
    with pytest.raises(CheckFailed, match="z = mu"):
        check.verdict(inputs, found, {}, seed=5)


@pytest.mark.parametrize("seed", range(20))
def test_sampling_images_spread_log_var_for_the_labs_model(seed):
    # Power for the lab's own architecture (the variants' power tests use a small model): on the
    # judge's sampling images a fresh ConvVAE's log_var spreads so far that a sampler with the
    # variance for sigma moves a half's variance, exp(log_var) on average, 3 times past what the
    # check detects at probability 0.999 (stats.detectable), whatever the initialisation.
    torch.manual_seed(seed)
    model = ref("ConvVAE")(16).eval()
    images = checks._sampling_images()[::4]  # a quarter: the same mix of scales
    with torch.no_grad():
        _, log_var, _ = model.encoder(images)
    log_var = log_var.double().flatten().sort().values
    half = len(log_var) // 2
    shift = max((part.exp().mean() - 1).abs().item() for part in (log_var[:half], log_var[half:]))
    detectable = stats.detectable(math.sqrt(2 / (checks.SAMPLING_IMAGES * 16 // 2)))
    assert shift > 3 * detectable


class Echo(nn.Module):
    """A "VAE" whose code is its input and whose decoder returns the code: it returns its input."""

    def __init__(self, log_var: float):
        super().__init__()
        self.log_var = nn.Parameter(torch.tensor(log_var))

    def encoder(self, x):
        mu = x.flatten(1)
        return mu, self.log_var.expand_as(mu), mu

    def decoder(self, z):
        return z.clamp(0, 1).view(-1, 1, 28, 28)


class MeanImage(nn.Module):
    """A collapsed posterior and a decoder that draws the public test set's average image."""

    def __init__(self, mean: torch.Tensor):
        super().__init__()
        self.mean = nn.Parameter(mean.clamp(1e-3, 1 - 1e-3))
        self.unused = nn.Linear(1, 1)

    def encoder(self, x):
        mu = torch.zeros(len(x), 2, device=x.device) + 0 * self.unused.weight.sum()
        return mu, torch.zeros_like(mu), mu

    def decoder(self, z):
        return self.mean.expand(len(z), 1, 28, 28) + 0 * z.sum()


def trained_evidence(model: nn.Module) -> dict:
    return evidence_of(checks.check_trained_vae, (model, mnist_test()), seed=1)[1]


@pytest.mark.data
@pytest.mark.parametrize(
    "model",
    [Echo(0.0), Echo(-30.0), "mean", "untrained"],
    ids=["echo-unit-variance", "echo-tiny-variance", "mean-image", "untrained-reference"],
)
def test_trained_evidence_of_models_that_learnt_nothing_fails(model):
    if model == "mean":
        model = MeanImage(mnist_test()[:8000].mean(0))
    elif model == "untrained":
        model = ref("ConvVAE")()
    found = trained_evidence(model)
    with pytest.raises(CheckFailed, match=AT_MOST_PUBLIC):
        checks.check_trained_vae.verdict({}, found, {}, seed=5)


@pytest.mark.data
def test_trained_evidence_without_both_programs_fails():
    found = trained_evidence(Tiny(4))
    for part in ("encoder", "decoder"):
        with pytest.raises(CheckFailed, match="not exported"):
            checks.check_trained_vae.verdict({}, {**found, part: None}, {}, seed=5)
    swapped = {"encoder": found["decoder"], "decoder": found["encoder"]}
    with pytest.raises(CheckFailed):
        checks.check_trained_vae.verdict({}, swapped, {}, seed=5)


# ---------------------------------------------------------------------------------------------
# the hidden bar: in autograder.hidden, selected by a literal, never in the public module


def test_public_module_holds_no_hidden_threshold():
    from autograder.hidden import conv_vae as hidden

    bar = hidden.HIDDEN_MAX_NELBO
    assert bar < checks.PUBLIC_MAX_NELBO
    source = Path(checks.__file__).read_text()
    assert f"{bar:g}" not in source and repr(bar) not in source
    assert not [name for name in vars(checks) if name.startswith("HIDDEN")]
    numbers = [v for v in vars(checks).values() if isinstance(v, int | float)]
    assert bar not in numbers
    assert "hidden" not in sandbox.KERNEL_PACKAGES["autograder"]  # no hidden thresholds there


@pytest.mark.data
def test_hidden_bar_is_the_hidden_modules(monkeypatch):
    from autograder.hidden import conv_vae as hidden

    found = trained_evidence(ref("ConvVAE")())  # untrained: about 540 nats per image
    monkeypatch.setattr(hidden, "HIDDEN_MAX_NELBO", 1000.0)
    checks.check_trained_vae.verdict({}, found, {"bar": "hidden"}, seed=5)
    monkeypatch.setattr(hidden, "HIDDEN_MAX_NELBO", 500.0)
    with pytest.raises(CheckFailed, match="at most 500"):
        checks.check_trained_vae.verdict({}, found, {"bar": "hidden"}, seed=5)
    with pytest.raises(ValueError, match="bar"):
        checks.check_trained_vae.verdict({}, found, {"bar": "tight"}, seed=5)


def test_lab_test_cells_are_judged_by_the_grader():
    cells = render(read_template(LAB), "nbgrader")
    template = read_template(LAB).cells
    locked = [c.source for c, t in zip(cells, template, strict=True) if t.locked]
    modules = verdict.checks_modules(locked)
    specs = [
        verdict.test_spec(t.test.id, c.source, modules)
        for c, t in zip(cells, template, strict=True)
        if t.test is not None
    ]
    assert specs and not [s.grade_id for s in specs if s.judged_in_kernel]
    trained = next(s for s in specs if s.grade_id == "trained-vae")
    assert [(c.check.__name__, c.params, bool(c.hidden)) for c in trained.calls] == [
        ("check_trained_vae", {}, False),
        ("check_trained_vae", {"bar": "hidden"}, True),
    ]
