"""The checks of lab 04-elbo-estimators, applied directly (no notebook execution).

The reference implementations are the lab's own: the solution view's cells that define them run
in a fresh namespace. Wrong implementations fail the checks with the messages they name, and
forged evidence (outputs computed on other inputs, constant or memorised outputs, a model that
returns its input) fails the judges. The written list of mistakes and correct variants of every
graded item, the statistical checks under 300 grading secrets and the lab's trained models
against the hidden bars are tests/test_variants_04.py's.
"""

import math
import types
from pathlib import Path

import matplotlib
import pytest
import torch
from torch import nn

from autograder import sandbox, verdict
from autograder.hidden_checks import elbo as hidden_checks
from autograder.template import read_template
from autograder.views import first_definition, render
from dgmlab.checks import elbo as checks
from dgmlab.checks import evidence, program
from dgmlab.checks.core import CheckFailed
from tests.conftest import ROOT

matplotlib.use("Agg")

LAB = ROOT / "labs" / "04-elbo-estimators.md"
DEFINITIONS = {
    "device",  # the locked first cell: imports, seed and device
    "LatentLayer",
    "mc_latent_loss",
    "kl_latent_loss",
    "toy_gradients",
    "ReshapeLayer",
    "VAE",
    "LATENT",
    "mix_images",
    "traverse",
    "show_row",
    "fit_per_example",
    "GAUSSIAN_CONSTANT",
    "LAB02_NATS",  # the cell of the other labs' numbers and bits_per_dim
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def lab() -> dict:
    """The lab's solution code: every cell that defines one of DEFINITIONS, run in order."""
    namespace: dict = {}
    for cell in render(read_template(LAB), "solution"):
        if cell.kind == "code" and first_definition(cell.source) in DEFINITIONS:
            exec(compile(cell.source, str(LAB), "exec"), namespace)
    return namespace


def fails(check, *args, **kwargs) -> str:
    """Run a check that must fail; return its message."""
    with pytest.raises(CheckFailed) as info:
        check(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- the reference passes


def test_reference_passes_every_check(lab) -> None:
    checks.check_latent_layer(lab["LatentLayer"])
    checks.check_mc_latent_loss(lab["mc_latent_loss"])
    hidden_checks.check_mc_latent_loss_gradients(lab["mc_latent_loss"])
    checks.check_kl_latent_loss(lab["kl_latent_loss"])
    hidden_checks.check_kl_latent_loss_gradients(lab["kl_latent_loss"])
    checks.check_reshape_layer(lab["ReshapeLayer"])
    checks.check_vae_forward(lab["VAE"])
    checks.check_vae_forward(lab["VAE"], lab["mc_latent_loss"], lab["kl_latent_loss"])
    checks.check_reparameterization(checks.forward_sampler(lab["VAE"]))
    hidden_checks.check_reparameterization_gradients(checks.forward_sampler(lab["VAE"]))
    checks.check_generate_similar(lab["VAE"])
    checks.check_reparameterization(checks.similar_sampler(lab["VAE"]))
    checks.check_encoder_decoder(lab["make_encoder"](), lab["make_decoder"]())
    checks.check_mix_images(lab["mix_images"])
    checks.check_traverse(lab["traverse"])


def test_checks_print_passed_on_stdout(lab, capsys) -> None:
    checks.check_kl_latent_loss(lab["kl_latent_loss"])
    captured = capsys.readouterr()
    assert captured.out == "passed: check_kl_latent_loss\n" and captured.err == ""


# ---------------------------------------------------------------- the latent layer


class VarianceLatentLayer(nn.Module):
    """Wrong: the scale is exp(log_var), the variance."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__()
        self.mean = nn.Linear(input_size, latent_size)
        self.log_var = nn.Linear(input_size, latent_size)

    def forward(self, h):
        return self.mean(h), torch.exp(self.log_var(h))


class OneHeadLatentLayer(VarianceLatentLayer):
    """Wrong: one head for both the mean and the log-variance."""

    def forward(self, h):
        m = self.mean(h)
        return m, torch.exp(0.5 * m)


def test_latent_layer_catches_the_variance_for_the_scale() -> None:
    assert "variance" in fails(checks.check_latent_layer, VarianceLatentLayer)


def test_latent_layer_catches_a_shared_head() -> None:
    fails(checks.check_latent_layer, OneHeadLatentLayer)


# ---------------------------------------------------------------- the latent losses


def mc_without_log_scale(z, eps, scale):
    return (z**2 / 2 - eps**2 / 2).sum(1).mean()


def mc_flipped_eps_sign(z, eps, scale):
    return (z**2 / 2 + eps**2 / 2 - scale.log()).sum(1).mean()


def mc_summed_over_batch(z, eps, scale):
    return (z**2 / 2 - eps**2 / 2 - scale.log()).sum()


def mc_biased(z, eps, scale):
    """Exact on small batches, 0.2 nats too high on large ones: only the statistical test sees it."""
    value = (z**2 / 2 - eps**2 / 2 - scale.log()).sum(1).mean()
    return value + 0.2 if len(z) > 1000 else value


def kl_scale_for_variance(mean, scale):
    return (0.5 * (scale + mean**2 - torch.log(scale) - 1)).sum(1).mean()


def kl_without_minus_one(mean, scale):
    return (0.5 * (scale**2 + mean**2 - torch.log(scale**2))).sum(1).mean()


def kl_summed_over_batch(mean, scale):
    return (0.5 * (scale**2 + mean**2 - torch.log(scale**2) - 1)).sum()


def kl_detached_scale(mean, scale):
    var = scale.detach() ** 2
    return (0.5 * (var + mean**2 - torch.log(var) - 1)).sum(1).mean()


def test_mc_loss_catches_a_missing_log_scale() -> None:
    assert "-log(scale) term is missing" in fails(checks.check_mc_latent_loss, mc_without_log_scale)


def test_mc_loss_catches_a_flipped_eps_term() -> None:
    assert "sign of eps^2 / 2" in fails(checks.check_mc_latent_loss, mc_flipped_eps_sign)


def test_mc_loss_catches_a_sum_over_the_batch() -> None:
    assert "summed over the batch" in fails(checks.check_mc_latent_loss, mc_summed_over_batch)


def test_mc_loss_statistical_test_catches_a_small_bias() -> None:
    assert "unbiased" in fails(checks.check_mc_latent_loss, mc_biased)


def test_kl_loss_catches_the_scale_for_the_variance() -> None:
    fails(checks.check_kl_latent_loss, kl_scale_for_variance)


def test_kl_loss_catches_a_missing_minus_one() -> None:
    fails(checks.check_kl_latent_loss, kl_without_minus_one)


def test_kl_loss_catches_a_sum_over_the_batch() -> None:
    assert "mean over the batch" in fails(checks.check_kl_latent_loss, kl_summed_over_batch)


def test_kl_gradients_catch_a_detached_scale() -> None:
    checks.check_kl_latent_loss(kl_detached_scale)  # the values are right
    fails(hidden_checks.check_kl_latent_loss_gradients, kl_detached_scale)


def test_exact_kl_values_match_torch_distributions() -> None:
    from torch.distributions import Normal, kl_divergence

    for mu, log_var, want in checks.EXACT_KL:
        got = kl_divergence(Normal(mu, math.exp(0.5 * log_var)), Normal(0.0, 1.0)).item()
        assert abs(got - want) < 1e-6


# ---------------------------------------------------------------- the reshaping layer


class ReshapeWithoutCheck(nn.Module):
    """Wrong: no check of the shapes; view(-1, ...) silently changes the batch size."""

    def __init__(self, view_shape):
        super().__init__()
        self.view_shape = tuple(view_shape)

    def forward(self, x):
        return x.view(-1, *self.view_shape)


class ReshapeLeavingItToTorch(ReshapeWithoutCheck):
    """Wrong: no check of its own; torch's RuntimeError is not the documented ValueError."""

    def forward(self, x):
        return x.view(x.shape[0], *self.view_shape)


def test_reshape_catches_a_missing_check() -> None:
    assert "raise a ValueError" in fails(checks.check_reshape_layer, ReshapeWithoutCheck)


def test_reshape_catches_torchs_error_for_its_own() -> None:
    assert "RuntimeError" in fails(checks.check_reshape_layer, ReshapeLeavingItToTorch)


def test_lab_reshape_error_names_both_shapes(lab) -> None:
    with pytest.raises(ValueError, match=r"\(5, 25\).*\(4, 2, 3\)"):
        lab["ReshapeLayer"]((4, 2, 3))(torch.randn(5, 25))


# ---------------------------------------------------------------- the VAE


def vae_variant(lab, forward=None, generate_similar=None) -> type:
    """The lab's VAE with one method replaced by a wrong one."""
    methods = {k: v for k, v in (("forward", forward), ("generate_similar", generate_similar)) if v}
    return type("WrongVAE", (lab["VAE"],), methods)


def test_generate_similar_catches_an_ignored_noise_flag(lab) -> None:
    def always_noisy(self, x, noise=True):
        mean, scale = self.encoder(x)
        return self.decoder(mean + scale * torch.randn_like(mean))

    def never_noisy(self, x, noise=True):
        return self.decoder(self.encoder(x)[0])

    assert "noise=False" in fails(
        checks.check_generate_similar, vae_variant(lab, generate_similar=always_noisy)
    )
    assert "add noise" in fails(
        checks.check_generate_similar, vae_variant(lab, generate_similar=never_noisy)
    )


def forward_with(lab, noise, detach: bool = False):
    """The lab's forward with another noise and, optionally, a detached sample."""
    mc, kl = lab["mc_latent_loss"], lab["kl_latent_loss"]

    def forward(self, x):
        mean, scale = self.encoder(x)
        eps = noise(mean)
        z = mean + scale * eps
        z = z.detach() if detach else z
        return self.decoder(z), mc(z, eps, scale) if self.loss == "mc" else kl(mean, scale)

    return forward


def test_vae_forward_catches_uniform_noise(lab) -> None:
    vae = vae_variant(lab, forward=forward_with(lab, torch.rand_like))  # the seed's rand_like
    checks.check_vae_forward(vae)  # the latent losses are right for the z it drew
    assert "expected 0" in fails(checks.check_reparameterization, checks.forward_sampler(vae))


def test_generate_similar_catches_uniform_noise(lab) -> None:
    def uniform(self, x, noise=True):
        mean, scale = self.encoder(x)
        return self.decoder(mean + scale * torch.rand_like(mean) if noise else mean)

    vae = vae_variant(lab, generate_similar=uniform)
    checks.check_generate_similar(vae)
    fails(checks.check_reparameterization, checks.similar_sampler(vae))


def test_vae_forward_catches_the_wrong_latent_loss(lab) -> None:
    mc = lab["mc_latent_loss"]

    def always_mc(self, x):
        mean, scale = self.encoder(x)
        eps = torch.randn_like(mean)
        z = mean + scale * eps
        return self.decoder(z), mc(z, eps, scale)

    assert "loss='kl'" in fails(checks.check_vae_forward, vae_variant(lab, forward=always_mc))


def test_vae_forward_does_not_count_a_wrong_loss_function_twice(lab) -> None:
    """The lab's forward calling a wrong mc_latent_loss passes once that function is given."""
    wrong_globals = dict(lab, mc_latent_loss=mc_without_log_scale)
    forward = types.FunctionType(lab["VAE"].forward.__code__, wrong_globals, "forward")
    vae = vae_variant(lab, forward=forward)
    fails(checks.check_vae_forward, vae)
    checks.check_vae_forward(vae, mc_without_log_scale, lab["kl_latent_loss"])


def test_vae_gradients_catch_a_detached_sample(lab) -> None:
    vae = vae_variant(lab, forward=forward_with(lab, torch.randn_like, detach=True))
    checks.check_vae_forward(vae)  # the values are right
    checks.check_reparameterization(checks.forward_sampler(vae))
    fails(hidden_checks.check_reparameterization_gradients, checks.forward_sampler(vae))


# ---------------------------------------------------------------- the widget callbacks


def mix_alpha_swapped(model, x1, x2, alpha):
    with torch.no_grad():
        z1, z2 = model.encoder(torch.stack([x1, x2]))[0]
        decoded = model.decoder(torch.stack([z1, alpha * z1 + (1 - alpha) * z2, z2]))
    return torch.cat([x1[None], decoded, x2[None]])


def mix_with_noise(model, x1, x2, alpha):
    with torch.no_grad():
        r1, r2 = model.generate_similar(x1[None]), model.generate_similar(x2[None])
        mean = model.encoder(torch.stack([x1, x2]))[0]
        mix = model.decoder(((1 - alpha) * mean[0] + alpha * mean[1])[None])
    return torch.cat([x1[None], r1, mix, r2, x2[None]])


def traverse_in_place(model, x, dim, steps=9):
    """The seed's traversal: offsets added to one code in place, so they accumulate."""
    with torch.no_grad():
        z = model.encoder(x[None])[0]
        images = []
        for value in torch.linspace(-1, 1, steps):
            z[0, dim] += value
            images.append(model.decoder(z))
    return torch.cat(images)


def test_mix_images_catches_alpha_the_wrong_way_round() -> None:
    assert "alpha = 0 gives" in fails(checks.check_mix_images, mix_alpha_swapped)


def test_mix_images_catches_noisy_reconstructions() -> None:
    assert "no noise" in fails(checks.check_mix_images, mix_with_noise)


def test_mix_images_catches_a_wrong_shape(lab) -> None:
    def stacked_in_a_list(model, x1, x2, alpha):
        return list(lab["mix_images"](model, x1, x2, alpha))

    assert "torch.Tensor" in fails(checks.check_mix_images, stacked_in_a_list)


def test_traverse_catches_accumulated_offsets() -> None:
    fails(checks.check_traverse, traverse_in_place)


def test_lab_callbacks_on_the_tiny_model(lab) -> None:
    """The callbacks as the sliders call them: images of the documented shapes, endpoints."""
    model, x = checks.TinyVAE(), torch.rand(2, 1, 4, 4)
    images = lab["mix_images"](model, x[0], x[1], 0.0)
    assert images.shape == (5, 1, 4, 4) and torch.equal(images[0], x[0])
    torch.testing.assert_close(images[2], images[1])
    torch.testing.assert_close(lab["mix_images"](model, x[0], x[1], 1.0)[2], images[3])
    assert lab["traverse"](model, x[0], dim=1).shape == (9, 1, 4, 4)
    lab["show_row"](images, ["a", "b", "c", "d", "e"])  # draws without a display (Agg)


def test_toy_model_path_gradient_is_zero_at_the_posterior(lab) -> None:
    torch.manual_seed(0)
    assert lab["toy_gradients"](0.5, 0.5, path_only=True).abs().max() < 1e-6
    assert lab["toy_gradients"](0.5, 0.5, path_only=False).abs().max() > 1e-2


class ReshapeWithVagueMessage(ReshapeWithoutCheck):
    """Wrong: the ValueError names neither shape."""

    def forward(self, x):
        if x.shape[1] != math.prod(self.view_shape):
            raise ValueError("wrong size")
        return x.reshape(x.shape[0], *self.view_shape)


def test_reshape_wants_both_shapes_in_the_message() -> None:
    assert "name both shapes" in fails(checks.check_reshape_layer, ReshapeWithVagueMessage)


@pytest.mark.parametrize(
    "message",
    [
        "cannot view torch.Size([{b}, {n}]) as (N, 4, 2, 3)",
        "x has shape [{b}, {n}]; each row should hold 4 * 2 * 3 = 24 numbers",
        "batch {b}x{n} does not fit view_shape=(4, 2, 3)",
    ],
)
def test_reshape_accepts_any_wording_that_names_both_shapes(message: str) -> None:
    class Worded(ReshapeWithoutCheck):
        def forward(self, x):
            if x.shape[1] != math.prod(self.view_shape):
                raise ValueError(message.format(b=x.shape[0], n=x.shape[1]))
            return x.reshape(x.shape[0], *self.view_shape)

    checks.check_reshape_layer(Worded)


# ---------------------------------------------------------------- forged evidence


def collected(check, *answers, seed: int = 0, **params) -> tuple[dict, dict]:
    """(inputs, evidence) of a check as the grader sees them: drawn from `seed`, admitted."""
    inputs = check.make_inputs(seed, params)
    found = check.collect(answers, inputs, params, seed)
    return inputs, evidence.admit(evidence.to_evidence(found))


def rejected(check, inputs: dict, found: dict, seed: int = 0, **params) -> str:
    """The judge's message for evidence it must refuse."""
    with pytest.raises(CheckFailed) as info:
        check.verdict(inputs, found, params, seed)
    return str(info.value)


def constant_like(value):
    """The evidence with every tensor replaced by ones of its shape (memorised constants)."""
    if isinstance(value, torch.Tensor):
        return torch.ones_like(value)
    if isinstance(value, list):
        return [constant_like(v) for v in value]
    if isinstance(value, dict):
        return {k: constant_like(v) for k, v in value.items()}
    return value


def exact_answers(lab) -> list[tuple]:
    """(check, answers) of every exact check whose evidence is tensors computed on its inputs."""
    return [
        (checks.check_latent_layer, (lab["LatentLayer"],)),
        (checks.check_mc_latent_loss, (lab["mc_latent_loss"],)),
        (hidden_checks.check_mc_latent_loss_gradients, (lab["mc_latent_loss"],)),
        (hidden_checks.check_kl_latent_loss_gradients, (lab["kl_latent_loss"],)),
        (checks.check_reshape_layer, (lab["ReshapeLayer"],)),
        (checks.check_vae_forward, (lab["VAE"],)),
        (checks.check_generate_similar, (lab["VAE"],)),
        (checks.check_mix_images, (lab["mix_images"],)),
        (checks.check_traverse, (lab["traverse"],)),
    ]


def test_the_references_evidence_passes_the_judges(lab) -> None:
    for check, answers in exact_answers(lab) + [
        (checks.check_kl_latent_loss, (lab["kl_latent_loss"],))
    ]:
        inputs, found = collected(check, *answers, seed=3)
        check.verdict(inputs, found, {}, 3)


def test_evidence_computed_on_other_inputs_fails(lab) -> None:
    """Evidence is only right for the inputs the grader drew: replayed, it fails."""
    for check, answers in exact_answers(lab):
        _, stale = collected(check, *answers, seed=1)
        inputs = check.make_inputs(2, {})
        rejected(check, inputs, stale, seed=2)


def test_constant_outputs_fail(lab) -> None:
    for check, answers in exact_answers(lab) + [
        (checks.check_kl_latent_loss, (lab["kl_latent_loss"],))
    ]:
        inputs, found = collected(check, *answers)
        rejected(check, inputs, constant_like(found))


def test_memorised_exact_kl_values_do_not_pass_alone(lab) -> None:
    inputs, found = collected(checks.check_kl_latent_loss, lab["kl_latent_loss"])
    forged = dict(found, random=torch.tensor(1.0))  # the fixed values right, the drawn batch not
    assert "random batch" in rejected(checks.check_kl_latent_loss, inputs, forged)


def test_a_reshape_layer_that_returns_its_input_fails(lab) -> None:
    inputs, found = collected(checks.check_reshape_layer, lab["ReshapeLayer"])
    forged = dict(found, good=[x.clone() for x in inputs["good"]])
    assert "should have shape" in rejected(checks.check_reshape_layer, inputs, forged)
    vague = [{"raised": "ValueError", "value_error": True, "message": "no"}] * 3
    assert "name both shapes" in rejected(
        checks.check_reshape_layer, inputs, dict(found, bad=vague)
    )


def test_forged_vae_and_generate_similar_evidence_fails(lab) -> None:
    inputs, found = collected(checks.check_vae_forward, lab["VAE"])
    zero = torch.tensor(0.0)
    forged = {"runs": [{k: [p["x"].clone(), zero] for k in ("kl", "mc")} for p in inputs["probes"]]}
    assert "loss='kl'" in rejected(checks.check_vae_forward, inputs, forged)
    inputs, found = collected(checks.check_generate_similar, lab["VAE"])
    x = inputs["probe"]["x"]
    forged = dict(found, mean=[x.clone(), x.clone()])  # a model that returns its input
    assert "noise=False" in rejected(checks.check_generate_similar, inputs, forged)


def test_a_latent_layer_without_gradients_fails(lab) -> None:
    inputs, found = collected(checks.check_latent_layer, lab["LatentLayer"])
    forged = {k: v for k, v in found.items() if k != "weight_grads"}
    assert "detached" in rejected(checks.check_latent_layer, inputs, forged)


def test_vae_forward_lends_the_references_only_for_the_call(lab) -> None:
    namespace = {"mc_latent_loss": mc_without_log_scale}
    forward = types.FunctionType(lab["VAE"].forward.__code__, dict(lab, **namespace), "forward")
    vae = vae_variant(lab, forward=forward)
    checks.check_vae_forward(vae, mc_without_log_scale, lab["kl_latent_loss"])
    assert forward.__globals__["mc_latent_loss"] is mc_without_log_scale


# ---------------------------------------------------------------- exported conv architecture


def test_encoder_decoder_judges_the_exported_programs(lab) -> None:
    encoder, decoder = lab["make_encoder"](), lab["make_decoder"]()
    inputs, found = collected(checks.check_encoder_decoder, encoder, decoder)
    checks.check_encoder_decoder.verdict(inputs, found, {}, 0)
    assert "cannot be run" in rejected(
        checks.check_encoder_decoder, inputs, dict(found, decoder={"format": "pickle"})
    )
    # a decoder without its Sigmoid, exported in place of the real one
    _, unbounded = collected(checks.check_encoder_decoder, encoder, decoder[:-1])
    forged = dict(found, decoder=unbounded["decoder"])
    assert "in [0, 1]" in rejected(checks.check_encoder_decoder, inputs, forged)
    # the right layers declared, another architecture run: the judge reads the program itself
    wrong = lab["make_encoder"]()
    wrong[0] = nn.Conv2d(1, 16, 4, stride=2, padding=1, bias=False)
    wrong[2] = nn.Conv2d(16, 32, 3, stride=2, padding=1)
    _, other = collected(checks.check_encoder_decoder, wrong, decoder)
    assert "Conv2d layers" in rejected(checks.check_encoder_decoder, inputs, other)


def test_encoder_decoder_shapes_come_from_running_the_programs(lab) -> None:
    encoder, decoder = lab["make_encoder"](), lab["make_decoder"]()
    encoder[-1] = lab["LatentLayer"](128, 5)  # another latent size: the decoder's 16 no longer fits
    fails(checks.check_encoder_decoder, encoder, decoder)


# ---------------------------------------------------------------- the trained models


class PriorEncoder(nn.Module):
    """q(z|x) = N(0, I) for every image."""

    def forward(self, x):
        code = torch.zeros_like(x.mean((1, 2, 3)).unsqueeze(1).expand(-1, 4))
        return code, code + 1


class ConstantDecoder(nn.Module):
    """Draws one image whatever z."""

    def __init__(self, image: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("image", image)

    def forward(self, z):
        return self.image.expand(z.shape[0], -1, -1, -1)


class IdentityEncoder(nn.Module):
    """mean = the image itself, a tiny scale: the decoder can copy x out of z."""

    def forward(self, x):
        mean = x.flatten(1)
        return mean, torch.full_like(mean, 1e-3)


class Model(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module, loss: str) -> None:
        super().__init__()
        self.encoder, self.decoder, self.loss = encoder, decoder, loss


def collapsed(loss: str) -> Model:
    """The decoder draws the average training image and q is the prior: KL 0."""
    from torchvision.datasets import MNIST

    from dgmlab.data import data_dir

    images = MNIST(data_dir(), train=True, download=True).data.float().div(255)
    return Model(PriorEncoder(), ConstantDecoder(checks.pad_images(images).mean(0)), loss)


def trained_evidence(model: nn.Module, estimator: str) -> tuple[dict, dict]:
    return collected(
        checks.check_trained_vae, model, torch.zeros(64, 1, 32, 32), estimator=estimator
    )


@pytest.fixture(scope="module")
def collapsed_evidence() -> dict:
    return trained_evidence(collapsed("mc"), "mc")[1]


def judge_trained(found: dict, seed: int = 0, **params) -> None:
    checks.check_trained_vae.verdict({}, found, params, seed)


@pytest.mark.data
def test_collapsed_model_scores_the_documented_loss(collapsed_evidence) -> None:
    encoder = program.load_program(collapsed_evidence["encoder"])
    decoder = program.load_program(collapsed_evidence["decoder"])
    loss, kl = checks.negative_elbo(encoder, decoder, checks.held_out_padded())
    assert kl == 0 and 27.7 < loss < 27.8  # the figure in the module's comment and the lab


@pytest.mark.data
@pytest.mark.parametrize("estimator", ["mc", "kl"])
def test_trained_check_catches_a_collapsed_posterior(collapsed_evidence, estimator) -> None:
    with pytest.raises(CheckFailed, match="collapsed"):
        judge_trained(collapsed_evidence, estimator=estimator, max_loss=math.inf)
    with pytest.raises(CheckFailed, match="expected below"):
        judge_trained(collapsed_evidence, estimator=estimator, min_kl=-1.0)


@pytest.mark.data
def test_the_bar_is_the_tests_not_the_evidences(collapsed_evidence, monkeypatch) -> None:
    """A forged evidence cannot pick the looser bar: the estimator is the test's literal."""
    monkeypatch.setitem(checks.PUBLIC_MAX_LOSS, "mc", 28.0)
    monkeypatch.setitem(checks.PUBLIC_MAX_LOSS, "kl", 27.0)
    assert collapsed_evidence["loss"] == "mc"
    judge_trained(collapsed_evidence, estimator="mc", min_kl=-1.0)
    with pytest.raises(CheckFailed, match="expected below 27.0"):
        judge_trained(collapsed_evidence, estimator="kl", min_kl=-1.0)
    with pytest.raises(CheckFailed, match="estimator='mc' or 'kl'"):
        judge_trained(collapsed_evidence, min_kl=-1.0)
    with pytest.raises(CheckFailed, match="bar should be"):
        judge_trained(collapsed_evidence, estimator="mc", bar="tight")


@pytest.mark.data
def test_hidden_bar_is_the_hidden_modules(collapsed_evidence, monkeypatch) -> None:
    from autograder.hidden import elbo as hidden

    monkeypatch.setitem(hidden.HIDDEN_MAX_LOSS, "mc", 28.0)
    judge_trained(collapsed_evidence, estimator="mc", bar="hidden", min_kl=-1.0)
    monkeypatch.setitem(hidden.HIDDEN_MAX_LOSS, "mc", 27.0)
    with pytest.raises(CheckFailed, match="expected below 27.0"):
        judge_trained(collapsed_evidence, estimator="mc", bar="hidden", min_kl=-1.0)


@pytest.mark.data
def test_a_model_that_copies_its_input_through_z_fails() -> None:
    model = Model(IdentityEncoder(), nn.Unflatten(1, (1, 32, 32)), "kl")
    _, found = trained_evidence(model, "kl")
    with pytest.raises(CheckFailed, match="expected below"):  # the KL of a 1e-3 scale: ~6000
        judge_trained(found, estimator="kl")


@pytest.mark.data
def test_an_untrained_model_and_swapped_programs_fail(lab, collapsed_evidence) -> None:
    torch.manual_seed(0)
    vae = lab["VAE"](lab["make_encoder"](), lab["make_decoder"](), loss="kl")
    _, found = trained_evidence(vae, "kl")
    with pytest.raises(CheckFailed, match="expected below"):
        judge_trained(found, estimator="kl")
    # the decoder exported in the encoder's place: it cannot take images
    swapped = dict(found, encoder=found["decoder"])
    with pytest.raises(CheckFailed, match="exported encoder failed"):
        judge_trained(swapped, estimator="kl")
    # an encoder of 16 latent dimensions with the collapsed model's decoder of 4 is refused
    mixed = dict(found, decoder=collapsed_evidence["decoder"])
    with pytest.raises(CheckFailed):
        judge_trained(mixed, estimator="kl", min_kl=-1.0, max_loss=math.inf)


def test_trained_check_fails_early_in_the_kernel(lab) -> None:
    vae = lab["VAE"](lab["make_encoder"](), lab["make_decoder"](), loss="mc")
    x = torch.zeros(64, 1, 32, 32)
    assert "loss='kl'" in fails(checks.check_trained_vae, vae, x, estimator="kl")
    assert "x_test should be" in fails(checks.check_trained_vae, vae, x[:, :, 2:-2, 2:-2])
    assert "x_test should be" in fails(checks.check_trained_vae, vae, x.flatten(1))


# ---------------------------------------------------------------- per-example inference


def test_reference_fit_passes_from_both_starts(lab) -> None:
    checks.check_fit_per_example(lab["fit_per_example"], lab["kl_latent_loss"])
    checks.check_fit_per_example(lab["fit_per_example"], lab["kl_latent_loss"], start="random")


def test_fit_judge_knows_the_optimum() -> None:
    """The judge's closed-form optimum is the best diagonal Gaussian: every nudge lowers the
    exact ELBO, and the exact ELBO agrees with a Monte-Carlo estimate of it."""
    inputs = checks.check_fit_per_example.make_inputs(3, {})
    mean, log_var = checks._linear_optimum(inputs)
    best = checks._linear_negative_elbo(inputs, mean, log_var)
    for _ in range(20):
        nudged = checks._linear_negative_elbo(
            inputs, mean + 0.05 * torch.randn_like(mean), log_var + 0.05 * torch.randn_like(mean)
        )
        assert bool((nudged > best).all())
    decoder = checks._linear_decoder(inputs).double()
    x = inputs["x"].double()
    scale = torch.exp(0.5 * log_var)
    z = mean + scale * torch.randn(4000, *mean.shape, dtype=torch.float64)
    squares = 0.5 * (decoder(z.flatten(0, 1)).view(4000, *x.shape) - x).pow(2).flatten(2).sum(2)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, scale), torch.distributions.Normal(0.0, 1.0)
    ).sum(1)
    # 4000 draws: the sd of the mean squared error per image is below 0.03; 0.2 is 6 sd and more
    assert torch.allclose(squares.mean(0) + kl, best, atol=0.2)


def test_fit_judge_names_the_mistakes(lab) -> None:
    fit = lab["fit_per_example"]

    def mean_only(decoder, x, mean, log_var, steps, lr):
        return fit(decoder, x, mean, log_var, steps, lr)[0], log_var, torch.zeros(steps)

    assert "log_var never moved" in fails(checks.check_fit_per_example, mean_only)

    def scale_out(decoder, x, mean, log_var, steps, lr):
        m, lv, losses = fit(decoder, x, mean, log_var, steps, lr)
        return m, torch.exp(0.5 * lv), losses

    assert "looks like the scale" in fails(checks.check_fit_per_example, scale_out)

    def moves_decoder(decoder, x, mean, log_var, steps, lr):
        with torch.no_grad():
            decoder[0].bias.add_(0.1)
        return fit(decoder, x, mean, log_var, steps, lr)

    assert "decoder's weights changed" in fails(checks.check_fit_per_example, moves_decoder)
    assert "not implemented yet" in fails(checks.check_fit_per_example, lambda *a, **k: None)


# ---------------------------------------------------------------- the unit table


def test_negative_elbo_terms_agree_with_torch_distributions(lab) -> None:
    """The lab's nats (its terms plus GAUSSIAN_CONSTANT) against -Normal(x_hat, 1).log_prob(x)
    and kl_divergence, on the same codes; and the constant is 512 log(2 pi) = 940.99."""
    from torch.distributions import Normal, kl_divergence

    assert lab["GAUSSIAN_CONSTANT"] == pytest.approx(940.99, abs=0.005)
    torch.manual_seed(0)
    decoder = lab["make_decoder"]()
    x = torch.rand(5, 1, 32, 32)
    mean, scale = torch.randn(5, 16), torch.exp(torch.randn(5, 16) / 2)
    with torch.random.fork_rng():
        squares, kl = lab["negative_elbo_terms"](decoder, x, mean, scale, samples=3)
    nats = squares + kl + lab["GAUSSIAN_CONSTANT"]
    with torch.no_grad():  # the same three codes: the lab draws randn_like(mean) three times
        z = [mean + scale * torch.randn_like(mean) for _ in range(3)]
        nll = torch.stack([-Normal(decoder(c), 1.0).log_prob(x).flatten(1).sum(1) for c in z])
    want = nll.mean(0) + kl_divergence(Normal(mean, scale), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(nats, want, rtol=1e-5)


def test_bits_per_dim(lab) -> None:
    assert lab["bits_per_dim"](105.6, 784) == pytest.approx(0.1943, abs=1e-4)
    assert lab["bits_per_dim"](1024 * math.log(256), 1024) == pytest.approx(8.0)


# ---------------------------------------------------------------- the grader's view of the lab


def test_public_module_holds_no_hidden_threshold() -> None:
    from autograder.hidden import elbo as hidden

    source = Path(checks.__file__).read_text()
    assert not [name for name in vars(checks) if name.startswith("HIDDEN")]
    for estimator, bar in hidden.HIDDEN_MAX_LOSS.items():
        assert bar < checks.PUBLIC_MAX_LOSS[estimator]
        assert f"{bar:g}" not in source and repr(bar) not in source
    assert "hidden" not in sandbox.KERNEL_PACKAGES["autograder"]  # no hidden thresholds there


def test_lab_test_cells_are_judged_by_the_grader() -> None:
    cells = render(read_template(LAB), "nbgrader")
    template = read_template(LAB).cells
    locked = [c.source for c, t in zip(cells, template, strict=True) if t.locked]
    modules = verdict.checks_modules(locked)
    specs = {
        t.test.id: verdict.test_spec(t.test.id, c.source, modules)
        for c, t in zip(cells, template, strict=True)
        if t.test is not None
    }
    assert specs and not [s.grade_id for s in specs.values() if s.judged_in_kernel]
    trained = specs["trained-vaes"]
    assert [(c.check.__name__, c.params, bool(c.hidden)) for c in trained.calls] == [
        ("check_trained_vae", {"estimator": "mc"}, False),
        ("check_trained_vae", {"estimator": "kl"}, False),
        ("check_trained_vae", {"estimator": "mc", "bar": "hidden"}, True),
        ("check_trained_vae", {"estimator": "kl", "bar": "hidden"}, True),
    ]
