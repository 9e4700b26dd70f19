"""Lab 02 (KL divergence, VAE): the plausible mistakes every graded item must catch and the
correct variants it must accept (issue 10), applied to the lab's own test cells as the grader
applies them (tests/variants.py). Each entry's `why` says, in plain words, what the student wrote.

The trained-model item needs MNIST (marked `data`); its variants built on a trained model share
one reference training per test session (marked `slow`).
"""

import copy
import functools
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal, kl_divergence

from dgmlab.checks import kl_vae as checks
from tests import sampler_variants, variants

CPU = torch.device("cpu")
LATENT = 8
cat = variants.Catalogue("02-kl-vae")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------- kl-normal


def kl_normal(mu_q: Tensor, sigma_q: Tensor, mu_p: Tensor, sigma_p: Tensor) -> Tensor:
    """The lab's reference."""
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2) - 0.5


def kl_normal_answer(item_why: str, correct: bool = False):
    """Register `fn` as the student's kl_normal."""

    def register(fn):
        (cat.correct if correct else cat.mistake)("kl-normal", item_why)(lambda: {"kl_normal": fn})
        return fn

    return register


@kl_normal_answer(
    "the reference: log(sigma_p / sigma_q) + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2",
    correct=True,
)
def _kl_reference(mu_q, sigma_q, mu_p, sigma_p):
    return kl_normal(mu_q, sigma_q, mu_p, sigma_p)


@kl_normal_answer("torch.distributions.kl_divergence of two Normal objects", correct=True)
def _kl_torch(mu_q, sigma_q, mu_p, sigma_p):
    return kl_divergence(Normal(mu_q, sigma_q), Normal(mu_p, sigma_p))


@kl_normal_answer(
    "written with variances: (log(var_p / var_q) + (var_q + (mu_q - mu_p)^2) / var_p - 1) / 2",
    correct=True,
)
def _kl_variances(mu_q, sigma_q, mu_p, sigma_p):
    var_q, var_p = sigma_q.pow(2), sigma_p.pow(2)
    return 0.5 * (torch.log(var_p / var_q) + (var_q + (mu_q - mu_p).pow(2)) / var_p - 1)


@kl_normal_answer(
    "log sigma_p - log sigma_q plus ((sigma_q / sigma_p)^2 + ((mu_q - mu_p) / sigma_p)^2 - 1) / 2",
    correct=True,
)
def _kl_ratios(mu_q, sigma_q, mu_p, sigma_p):
    ratio, shift = sigma_q / sigma_p, (mu_q - mu_p) / sigma_p
    return torch.log(sigma_p) - torch.log(sigma_q) + (ratio**2 + shift**2 - 1) / 2


@kl_normal_answer("in-place arithmetic on its own arguments (sub_, div_, pow_)", correct=True)
def _kl_in_place(mu_q, sigma_q, mu_p, sigma_p):
    shift = mu_q.sub_(mu_p).div_(sigma_p)
    ratio = sigma_q.div_(sigma_p)
    return ratio.pow(2).add_(shift.pow_(2)).sub_(1).div_(2).sub_(ratio.log())


@kl_normal_answer("computes KL(p || q): the two distributions swapped")
def _kl_swapped(mu_q, sigma_q, mu_p, sigma_p):
    return kl_normal(mu_p, sigma_p, mu_q, sigma_q)


@kl_normal_answer("forgets the - 1/2")
def _kl_no_half(mu_q, sigma_q, mu_p, sigma_p):
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2)


@kl_normal_answer("reads the arguments as variances, not standard deviations")
def _kl_as_variances(mu_q, sigma_q, mu_p, sigma_p):
    return 0.5 * torch.log(sigma_p / sigma_q) + (sigma_q + (mu_q - mu_p) ** 2) / (2 * sigma_p) - 0.5


@kl_normal_answer("sums the divergences into one number instead of elementwise")
def _kl_summed(mu_q, sigma_q, mu_p, sigma_p):
    return kl_normal(mu_q, sigma_q, mu_p, sigma_p).sum()


@kl_normal_answer("log(sigma_q / sigma_p): the log-ratio upside down")
def _kl_log_inverted(mu_q, sigma_q, mu_p, sigma_p):
    return torch.log(sigma_q / sigma_p) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2) - 0.5


@kl_normal_answer("divides by 2 sigma_p instead of 2 sigma_p^2")
def _kl_sigma_not_squared(mu_q, sigma_q, mu_p, sigma_p):
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p) - 0.5


@kl_normal_answer("forgets to square the difference of the means")
def _kl_mean_not_squared(mu_q, sigma_q, mu_p, sigma_p):
    return (
        torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p).abs()) / (2 * sigma_p**2) - 0.5
    )


@kl_normal_answer("log of the variance ratio without its factor 1/2")
def _kl_log_variance_ratio(mu_q, sigma_q, mu_p, sigma_p):
    return (
        torch.log(sigma_p**2 / sigma_q**2)
        + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2)
        - 0.5
    )


@kl_normal_answer("torch.distributions with the variance passed as Normal's scale")
def _kl_torch_variance_scale(mu_q, sigma_q, mu_p, sigma_p):
    return kl_divergence(Normal(mu_q, sigma_q**2), Normal(mu_p, sigma_p**2))


@kl_normal_answer("a Monte-Carlo estimate of E_q[log q(x) - log p(x)] instead of the closed form")
def _kl_monte_carlo(mu_q, sigma_q, mu_p, sigma_p):
    q, p = Normal(mu_q, sigma_q), Normal(mu_p, sigma_p)
    x = q.sample((200,))
    return (q.log_prob(x) - p.log_prob(x)).mean(0)


# ---------------------------------------------------------------- reparameterize


class VAE(nn.Module):
    """The lab's reference VAE."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, device: torch.device):
        super().__init__()
        self.encoder = encoder.to(device)
        self.decoder = decoder.to(device)
        self.device = device

    def reparameterize(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, log_var = self.encoder(x)
        z = self.reparameterize(mu, log_var)
        return self.decoder(z), mu, log_var

    def encode(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            mu, _ = self.encoder(x)
        return mu

    def reconstruct(self, z: Tensor) -> Tensor:
        with torch.no_grad():
            return self.decoder(z)


def sampler_names(sampler) -> dict:
    """The names of the reparameterize cell for a VAE whose sampler is `sampler(mu, log_var)`."""
    vae = type("StudentVAE", (VAE,), {"reparameterize": lambda self, mu, lv: sampler(mu, lv)})
    return {"VAE": vae, "device": CPU}


sampler_variants.register(cat, "reparameterize", sampler_names, power=True)  # shared samplers


# lab-specific: this lab's sampler is a method of the VAE, which also knows its device


def _reparameterize_on_own_device(self, mu, log_var):
    return mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, device=self.device)


def _reparameterize_with_noise(self, mu, log_var):
    eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * log_var) * eps, eps


cat.correct("reparameterize", "noise drawn with torch.randn(mu.shape, device=self.device)")(
    lambda: {
        "VAE": type("StudentVAE", (VAE,), {"reparameterize": _reparameterize_on_own_device}),
        "device": CPU,
    }
)
cat.mistake("reparameterize", "returns (z, eps) instead of z")(
    lambda: {
        "VAE": type("StudentVAE", (VAE,), {"reparameterize": _reparameterize_with_noise}),
        "device": CPU,
    }
)


# ---------------------------------------------------------------- vae-methods


def methods(why: str, correct: bool = False, **overrides):
    """Register a VAE whose methods are the reference's, but for `overrides`."""
    vae = type("StudentVAE", (VAE,), overrides)
    (cat.correct if correct else cat.mistake)("vae-methods", why)(
        lambda: {"VAE": vae, "device": CPU}
    )


methods("the reference", correct=True)


@torch.no_grad()
def _encode_decorated(self, x):
    return self.encoder(x)[0]


@torch.no_grad()
def _reconstruct_decorated(self, z):
    return self.decoder(z)


methods(
    "encode and reconstruct decorated with @torch.no_grad()",
    correct=True,
    encode=_encode_decorated,
    reconstruct=_reconstruct_decorated,
)


def _encode_inference(self, x):
    with torch.inference_mode():
        return self.encoder(x)[0]


def _reconstruct_grad_disabled(self, z):
    with torch.set_grad_enabled(False):
        return self.decoder(z)


methods(
    "torch.inference_mode() in encode, torch.set_grad_enabled(False) in reconstruct",
    correct=True,
    encode=_encode_inference,
    reconstruct=_reconstruct_grad_disabled,
)


def _forward_unpacked(self, x):
    return [self.decoder(self.reparameterize(*self.encoder(x))), *self.encoder(x)]


def _encode_via_forward(self, x):
    with torch.no_grad():
        _, mu, _ = self(x)
    return mu


methods(
    "forward returns a list and runs the encoder twice; encode takes mu from forward",
    correct=True,
    forward=_forward_unpacked,
    encode=_encode_via_forward,
)


def _reparameterize_rsample(self, mu, log_var):
    return Normal(mu, (0.5 * log_var).exp()).rsample()


def _reconstruct_clone(self, z):
    with torch.no_grad():
        x_hat = self.decoder.forward(z)
    return x_hat.clone()


methods(
    "samples with Normal(...).rsample(); reconstruct calls decoder.forward and clones",
    correct=True,
    reparameterize=_reparameterize_rsample,
    reconstruct=_reconstruct_clone,
)


def _encode_tracked(self, x):
    return self.encoder(x)[0]


def _encode_detached(self, x):
    return self.encoder(x)[0].detach()


def _reconstruct_tracked(self, z):
    return self.decoder(z)


def _reconstruct_detached(self, z):
    return self.decoder(z).detach()


def _encode_samples(self, x):
    with torch.no_grad():
        return self.reparameterize(*self.encoder(x))


def _encode_both(self, x):
    with torch.no_grad():
        return self.encoder(x)


def _forward_returns_z(self, x):
    mu, log_var = self.encoder(x)
    z = self.reparameterize(mu, log_var)
    return z, mu, log_var


def _forward_decodes_mu(self, x):
    mu, log_var = self.encoder(x)
    return self.decoder(mu), mu, log_var


def _forward_swaps(self, x):
    mu, log_var = self.encoder(x)
    return self.decoder(self.reparameterize(mu, log_var)), log_var, mu


def _forward_inline_sampling(self, x):
    mu, log_var = self.encoder(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    return self.decoder(z), mu, log_var


def _forward_detaches(self, x):
    mu, log_var = self.encoder(x)
    z = self.reparameterize(mu.detach(), log_var.detach())
    return self.decoder(z), mu, log_var


def _forward_returns_z_too(self, x):
    mu, log_var = self.encoder(x)
    z = self.reparameterize(mu, log_var)
    return self.decoder(z), z, mu, log_var


def _reconstruct_sigmoid_again(self, z):
    with torch.no_grad():
        return torch.sigmoid(self.decoder(z))


def _reconstruct_autoencodes(self, x):
    with torch.no_grad():
        return self.decoder(self.encoder(x)[0])


methods("encode tracks gradients (no torch.no_grad())", encode=_encode_tracked)
methods("encode detaches mu instead of running under torch.no_grad()", encode=_encode_detached)
methods("reconstruct tracks gradients (no torch.no_grad())", reconstruct=_reconstruct_tracked)
methods(
    "reconstruct detaches its result instead of running under torch.no_grad()",
    reconstruct=_reconstruct_detached,
)
methods("encode returns a sample z instead of the mean mu", encode=_encode_samples)
methods("encode returns (mu, log_var) instead of mu", encode=_encode_both)
methods("forward returns z in place of the decoded x_hat", forward=_forward_returns_z)
methods("forward decodes mu instead of a sample z", forward=_forward_decodes_mu)
methods("forward returns (x_hat, log_var, mu)", forward=_forward_swaps)
methods(
    "forward samples z itself instead of calling self.reparameterize",
    forward=_forward_inline_sampling,
)
methods("forward detaches mu and log_var before sampling", forward=_forward_detaches)
methods("forward returns four values (x_hat, z, mu, log_var)", forward=_forward_returns_z_too)
methods("reconstruct applies a second sigmoid", reconstruct=_reconstruct_sigmoid_again)
methods("reconstruct expects images and autoencodes them", reconstruct=_reconstruct_autoencodes)


# ---------------------------------------------------------------- encoder-decoder


def head(latent_size: int, *end: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 32), nn.LeakyReLU(), nn.Linear(32, latent_size), *end)


def body(input_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(input_size, 256), nn.LeakyReLU(), nn.Linear(256, 64), nn.LeakyReLU()
    )


class Encoder(nn.Module):
    """The lab's reference encoder; `mu_end` and `log_var_end` are layers after each head."""

    mu_end: tuple = ()
    log_var_end: tuple = ()

    def __init__(self, input_size: int, latent_size: int):
        super().__init__()
        self.body = body(input_size)
        self.mu = head(latent_size, *(layer() for layer in self.mu_end))
        self.log_var = head(latent_size, *(layer() for layer in self.log_var_end))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mu(h), self.log_var(h)


def decoder_layers(output_size: int, latent_size: int) -> list[nn.Module]:
    """The decoder's layers up to its last Linear (no final activation)."""
    return [
        nn.Linear(latent_size, 32),
        nn.LeakyReLU(),
        nn.Linear(32, 64),
        nn.LeakyReLU(),
        nn.Linear(64, 256),
        nn.LeakyReLU(),
        nn.Linear(256, output_size),
    ]


class Decoder(nn.Module):
    """The lab's reference decoder; `end` are the layers after the last Linear."""

    end: tuple = (nn.Sigmoid,)

    def __init__(self, output_size: int, latent_size: int):
        super().__init__()
        self.net = nn.Sequential(
            *decoder_layers(output_size, latent_size), *(layer() for layer in self.end)
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def networks(why: str, encoder: type = Encoder, decoder: type = Decoder, correct: bool = False):
    (cat.correct if correct else cat.mistake)("encoder-decoder", why)(
        lambda: {"Encoder": encoder, "Decoder": decoder, "latent_size": LATENT, "device": CPU}
    )


def encoder_ending(mu_end: tuple, log_var_end: tuple) -> type:
    return type("StudentEncoder", (Encoder,), {"mu_end": mu_end, "log_var_end": log_var_end})


def decoder_ending(*end: type) -> type:
    return type("StudentDecoder", (Decoder,), {"end": end})


networks("the reference", correct=True)


class ExplicitEncoder(nn.Module):
    """Every layer an attribute, heads registered before the body, F.leaky_relu in forward."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__()
        self.log_var_out, self.log_var_hidden = nn.Linear(32, latent_size), nn.Linear(64, 32)
        self.mu_out, self.mu_hidden = nn.Linear(32, latent_size), nn.Linear(64, 32)
        self.second, self.first = nn.Linear(256, 64), nn.Linear(input_size, 256)

    def head(self, h: Tensor, hidden: nn.Linear, out: nn.Linear) -> Tensor:
        return out(F.leaky_relu(hidden(h)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.leaky_relu(self.second(F.leaky_relu(self.first(x))))
        return self.head(h, self.mu_hidden, self.mu_out), self.head(
            h, self.log_var_hidden, self.log_var_out
        )


class FunctionalSigmoidDecoder(nn.Module):
    """Registered last layer first; torch.sigmoid applied in forward."""

    def __init__(self, output_size: int, latent_size: int):
        super().__init__()
        self.out = nn.Linear(256, output_size)
        self.hidden = nn.Sequential(*decoder_layers(256, latent_size)[:-1])

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.out(self.hidden(z)))


networks(
    "explicit layers registered heads first, F.leaky_relu in forward; torch.sigmoid in forward",
    ExplicitEncoder,
    FunctionalSigmoidDecoder,
    correct=True,
)


class CopiedHeadEncoder(Encoder):
    """The log_var head a deep copy of the mu head: its own weights, the same at the start."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__(input_size, latent_size)
        self.log_var = copy.deepcopy(self.mu)


class TanhSigmoidDecoder(Decoder):
    """sigmoid(a) written as (tanh(a / 2) + 1) / 2."""

    end = ()

    def forward(self, z: Tensor) -> Tensor:
        return (torch.tanh(self.net(z) / 2) + 1) / 2


networks(
    "the log_var head a copy.deepcopy of the mu head; sigmoid written as (tanh(a / 2) + 1) / 2",
    CopiedHeadEncoder,
    TanhSigmoidDecoder,
    correct=True,
)


class WiderEncoder(Encoder):
    """LeakyReLU(0.2) everywhere; nn.Sequential with named layers (OrderedDict)."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__(input_size, latent_size)
        for module in self.modules():
            if isinstance(module, nn.LeakyReLU):
                module.negative_slope = 0.2


class SigmoidModuleDecoder(nn.Module):
    """The Sigmoid a separate attribute, the layers in a ModuleList applied in a loop."""

    def __init__(self, output_size: int, latent_size: int):
        super().__init__()
        self.squash = nn.Sigmoid()
        self.layers = nn.ModuleList(decoder_layers(output_size, latent_size))

    def forward(self, z: Tensor) -> Tensor:
        for layer in self.layers:
            z = layer(z)
        return self.squash(z)


networks(
    "LeakyReLU(0.2) between the layers; decoder layers in a ModuleList, Sigmoid its own attribute",
    WiderEncoder,
    SigmoidModuleDecoder,
    correct=True,
)

networks("both heads end in a LeakyReLU", encoder_ending((nn.LeakyReLU,), (nn.LeakyReLU,)))
networks(
    "the log_var head ends in a Softplus to keep it positive", encoder_ending((), (nn.Softplus,))
)
networks("the mu head ends in a Tanh", encoder_ending((nn.Tanh,), ()))


class SameHeadEncoder(Encoder):
    """self.log_var = self.mu: one head for both."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__(input_size, latent_size)
        self.log_var = self.mu


class SharedHiddenEncoder(Encoder):
    """The two heads share their 64 -> 32 layer; only the last layers are their own."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__(input_size, latent_size)
        self.log_var[0] = self.mu[0]


class ShortHeadsEncoder(Encoder):
    """Heads 64 -> latent_size, without the hidden layer of 32."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__(input_size, latent_size)
        self.mu, self.log_var = nn.Linear(64, latent_size), nn.Linear(64, latent_size)


class VarianceEncoder(Encoder):
    """forward returns exp of the second head: a variance, always positive."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mu(h), self.log_var(h).exp()


class ReluAfterHeadsEncoder(Encoder):
    """forward applies F.relu to both heads' outputs."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return F.relu(self.mu(h)), F.relu(self.log_var(h))


class ClampedEncoder(Encoder):
    """forward clamps log_var to [-10, 10] 'for stability'."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mu(h), self.log_var(h).clamp(-10, 10)


class LinearEncoder(Encoder):
    """No activation anywhere: every layer a Linear."""

    def __init__(self, input_size: int, latent_size: int):
        super().__init__(input_size, latent_size)
        for seq in (self.body, self.mu, self.log_var):
            for i, module in enumerate(seq):
                if isinstance(module, nn.LeakyReLU):
                    seq[i] = nn.Identity()


networks("self.log_var = self.mu: one head for both", SameHeadEncoder)
networks("the two heads share their 64 -> 32 layer", SharedHiddenEncoder)
networks("heads 64 -> 8 without the layer of 32 the lab asks for", ShortHeadsEncoder)
networks("forward returns exp of the log_var head (a variance)", VarianceEncoder)
networks("forward applies F.relu after both heads", ReluAfterHeadsEncoder)
networks("forward clamps log_var to [-10, 10]", ClampedEncoder)
networks("no LeakyReLU between the encoder's layers", LinearEncoder)

networks("the decoder ends in its last Linear, without a Sigmoid", decoder=decoder_ending())
networks("the decoder ends in a ReLU", decoder=decoder_ending(nn.ReLU))
networks(
    "the decoder ends in a Softmax over the pixels", decoder=decoder_ending(lambda: nn.Softmax(1))
)
networks("the decoder applies the Sigmoid twice", decoder=decoder_ending(nn.Sigmoid, nn.Sigmoid))


class ShortDecoder(Decoder):
    """latent_size -> 64 -> 256 -> 784: the layer of 32 missing."""

    def __init__(self, output_size: int, latent_size: int):
        super().__init__(output_size, latent_size)
        self.net = nn.Sequential(*decoder_layers(output_size, latent_size)[2:], nn.Sigmoid())
        self.net[0] = nn.Linear(latent_size, 64)


networks("the decoder skips its layer of 32", decoder=ShortDecoder)


# ---------------------------------------------------------------- kl-divergence


class KLDivergence:
    """The lab's reference."""

    def __call__(self, mu: Tensor, log_var: Tensor) -> Tensor:
        return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1).mean()


def kl_answer(why: str, correct: bool = False):
    """Register `fn(mu, log_var)` as the __call__ of the student's KLDivergence."""

    def register(fn):
        kl_class = type("StudentKL", (), {"__call__": lambda self, mu, lv: fn(mu, lv)})
        (cat.correct if correct else cat.mistake)("kl-divergence", why)(
            lambda: {"KLDivergence": kl_class}
        )
        return fn

    return register


@kl_answer(
    "the reference: -1/2 sum(1 + log_var - mu^2 - exp(log_var)) over dim 1, mean over rows",
    correct=True,
)
def _kld_reference(mu, log_var):
    return KLDivergence()(mu, log_var)


@kl_answer(
    "torch.distributions.kl_divergence(Normal(mu, sigma), Normal(0, 1)), summed and averaged",
    correct=True,
)
def _kld_torch(mu, log_var):
    q = Normal(mu, torch.exp(0.5 * log_var))
    return kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1).mean()


@kl_answer("Independent(Normal(...), 1) against an Independent standard normal", correct=True)
def _kld_independent(mu, log_var):
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    return kl_divergence(q, p).mean()


@kl_answer(
    "1/2 (mu^2 + exp(log_var) - 1 - log_var), the mean of all elements times the latent size",
    correct=True,
)
def _kld_mean_times_size(mu, log_var):
    return 0.5 * (mu**2 + torch.exp(log_var) - 1 - log_var).mean() * mu.shape[-1]


@kl_answer(
    "1/2 (mu^2 + exp(log_var) - 1 - log_var) summed over everything, divided by len(mu)",
    correct=True,
)
def _kld_sum_over_len(mu, log_var):
    return 0.5 * (mu**2 + torch.exp(log_var) - 1 - log_var).sum() / len(mu)


@kl_answer("averaged over the batch first, then summed over the dimensions", correct=True)
def _kld_mean_then_sum(mu, log_var):
    return (-0.5 * (1 + log_var - mu.pow(2) - log_var.exp())).mean(0).sum()


class KLModule(nn.Module):
    """An nn.Module with forward; sigma^2 computed as exp(log_var / 2)^2."""

    def forward(self, mu: Tensor, log_var: Tensor) -> Tensor:
        sigma = torch.exp(log_var / 2)
        return torch.mean(torch.sum(0.5 * (mu**2 + sigma**2 - 1) - log_var / 2, dim=-1))


cat.correct("kl-divergence", "an nn.Module whose forward squares sigma = exp(log_var / 2)")(
    lambda: {"KLDivergence": KLModule}
)


@kl_answer("the sign flipped: +1/2 sum(1 + log_var - mu^2 - exp(log_var))")
def _kld_sign(mu, log_var):
    return -KLDivergence()(mu, log_var)


@kl_answer("forgets the factor 1/2")
def _kld_no_half(mu, log_var):
    return 2 * KLDivergence()(mu, log_var)


@kl_answer("averages over the latent dimensions instead of summing them")
def _kld_mean_dims(mu, log_var):
    return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).mean()


@kl_answer("sums over the batch instead of averaging")
def _kld_sum_batch(mu, log_var):
    return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum()


@kl_answer("returns one KL per row, not averaged over the batch")
def _kld_per_row(mu, log_var):
    return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=1)


@kl_answer("reads log_var as log sigma: variance exp(2 log_var)")
def _kld_log_sigma(mu, log_var):
    return -0.5 * (1 + 2 * log_var - mu.pow(2) - torch.exp(2 * log_var)).sum(dim=1).mean()


@kl_answer("uses the standard deviation exp(log_var / 2) where the variance belongs")
def _kld_std_for_var(mu, log_var):
    return -0.5 * (1 + log_var - mu.pow(2) - torch.exp(0.5 * log_var)).sum(dim=1).mean()


@kl_answer("forgets the 1 inside the sum")
def _kld_no_one(mu, log_var):
    return -0.5 * (log_var - mu.pow(2) - log_var.exp()).sum(dim=1).mean()


@kl_answer("detaches mu and log_var: no gradient reaches the encoder")
def _kld_detached(mu, log_var):
    return KLDivergence()(mu.detach(), log_var.detach())


@kl_answer("clamps log_var to [-10, 10] before the formula")
def _kld_clamped(mu, log_var):
    return KLDivergence()(mu, log_var.clamp(-10, 10))


@kl_answer("sums over the batch and averages over the dimensions")
def _kld_axes_swapped(mu, log_var):
    return -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(dim=0).mean()


@kl_answer("adds 1e-8 inside a log of the variance 'for stability'")
def _kld_log_epsilon(mu, log_var):
    var = log_var.exp()
    return -0.5 * (1 + torch.log(var + 1e-8) - mu.pow(2) - var).sum(dim=1).mean()


# ---------------------------------------------------------------- kl-weight-manager


class KLWeightManager:
    """The lab's reference."""

    def __init__(self, warm_up_rounds: int, annealing_rounds: int):
        self.warm_up_rounds = warm_up_rounds
        self.annealing_rounds = annealing_rounds

    def __call__(self, epoch: int) -> float:
        if epoch < self.warm_up_rounds:
            return 0.0
        if epoch >= self.warm_up_rounds + self.annealing_rounds:
            return 1.0
        return (epoch - self.warm_up_rounds) / self.annealing_rounds


def schedule(why: str, correct: bool = False):
    """Register `fn(self, epoch)` as the __call__ of the student's KLWeightManager."""

    def register(fn):
        manager = type("StudentKLWeightManager", (KLWeightManager,), {"__call__": fn})
        (cat.correct if correct else cat.mistake)("kl-weight-manager", why)(
            lambda: {"KLWeightManager": manager}
        )
        return fn

    return register


@schedule("the reference", correct=True)
def _weight_reference(self, epoch):
    return KLWeightManager.__call__(self, epoch)


@schedule("min(1, max(0, (epoch - warm_up_rounds) / annealing_rounds)) in one line", correct=True)
def _weight_min_max(self, epoch):
    return min(1, max(0, (epoch - self.warm_up_rounds) / self.annealing_rounds))


@schedule("a float32 tensor from torch.clamp", correct=True)
def _weight_tensor(self, epoch):
    ramp = torch.tensor(epoch - self.warm_up_rounds, dtype=torch.float32) / self.annealing_rounds
    return torch.clamp(ramp, 0, 1)


@schedule("np.clip of the ramp (a numpy float)", correct=True)
def _weight_numpy(self, epoch):
    return np.clip((epoch - self.warm_up_rounds) / self.annealing_rounds, 0.0, 1.0)


@schedule("remembers the weights it gave in a dict, keyed by epoch", correct=True)
def _weight_cached(self, epoch):
    cache = self.__dict__.setdefault("cache", {})
    if epoch not in cache:
        cache[epoch] = KLWeightManager.__call__(self, epoch)
    return cache[epoch]


@schedule(
    "epoch <= warm_up_rounds for the warm-up (the same weights: 0 at warm_up_rounds)", correct=True
)
def _weight_less_equal(self, epoch):
    if epoch <= self.warm_up_rounds:
        return 0.0
    return min(1.0, (epoch - self.warm_up_rounds) / self.annealing_rounds)


@schedule("np.interp(epoch, [warm_up, warm_up + annealing], [0, 1])", correct=True)
def _weight_interp(self, epoch):
    ends = [self.warm_up_rounds, self.warm_up_rounds + self.annealing_rounds]
    return float(np.interp(epoch, ends, [0.0, 1.0]))


@schedule("counts epochs from 1: every weight one epoch early")
def _weight_early(self, epoch):
    return KLWeightManager.__call__(self, epoch + 1)


@schedule("every weight one epoch late")
def _weight_late(self, epoch):
    return KLWeightManager.__call__(self, epoch - 1) if epoch > 0 else 0.0


@schedule("reaches 1 one epoch early: divides by annealing_rounds - 1")
def _weight_reaches_one_early(self, epoch):
    if epoch < self.warm_up_rounds:
        return 0.0
    return min(1.0, (epoch - self.warm_up_rounds) / (self.annealing_rounds - 1))


@schedule("forgets to subtract the warm-up: epoch / annealing_rounds after it")
def _weight_no_offset(self, epoch):
    if epoch < self.warm_up_rounds:
        return 0.0
    return min(1.0, epoch / self.annealing_rounds)


@schedule("never caps the weight at 1")
def _weight_uncapped(self, epoch):
    if epoch < self.warm_up_rounds:
        return 0.0
    return (epoch - self.warm_up_rounds) / self.annealing_rounds


@schedule("integer division //: 0 during annealing, then 1")
def _weight_floor_division(self, epoch):
    if epoch < self.warm_up_rounds:
        return 0
    return min(1, (epoch - self.warm_up_rounds) // self.annealing_rounds)


@schedule("counts its calls instead of reading the epoch it is given")
def _weight_counts_calls(self, epoch):
    calls = self.__dict__.get("calls", 0)
    self.calls = calls + 1
    return KLWeightManager.__call__(self, calls)


@schedule("warm-up and annealing rounds mixed up")
def _weight_swapped(self, epoch):
    if epoch < self.annealing_rounds:
        return 0.0
    return (
        min(1.0, (epoch - self.annealing_rounds) / self.warm_up_rounds)
        if self.warm_up_rounds
        else 1.0
    )


@schedule("1 during warm-up and 0 after it (the schedule reversed)")
def _weight_reversed(self, epoch):
    return 1.0 - KLWeightManager.__call__(self, epoch)


# ---------------------------------------------------------------- interpolate


def interpolate_linear(x: Tensor, y: Tensor, steps: int) -> Tensor:
    """The lab's reference."""
    t = torch.linspace(0, 1, steps, device=x.device).view(steps, *([1] * x.dim()))
    return (1 - t) * x + t * y


def path_answer(why: str, correct: bool = False):
    def register(fn):
        (cat.correct if correct else cat.mistake)("interpolate", why)(
            lambda: {"interpolate_linear": fn, "device": CPU}
        )
        return fn

    return register


def column(t: Tensor, x: Tensor) -> Tensor:
    return t.view(len(t), *([1] * x.dim()))


path_answer("the reference: (1 - t) x + t y with t = linspace(0, 1, steps)", correct=True)(
    interpolate_linear
)


@path_answer("torch.lerp(x, y, t)", correct=True)
def _path_lerp(x, y, steps):
    return torch.lerp(x, y, column(torch.linspace(0, 1, steps, device=x.device), x))


@path_answer("((n - k) x + k y) / n for k = 0..n, n = steps - 1", correct=True)
def _path_integer_weights(x, y, steps):
    k, n = column(torch.arange(steps, device=x.device), x), steps - 1
    return ((n - k) * x + k * y) / n


@path_answer("x + t (y - x) with float64 weights t = arange(steps) / (steps - 1)", correct=True)
def _path_float64(x, y, steps):
    t = torch.arange(steps, dtype=torch.float64, device=x.device) / (steps - 1)
    return x + column(t, x) * (y - x)


@path_answer("torch.einsum of the weights (1 - t, t) and the stacked endpoints", correct=True)
def _path_einsum(x, y, steps):
    t = torch.linspace(0, 1, steps, device=x.device)
    return torch.einsum("sk,k...->s...", torch.stack([1 - t, t], dim=1), torch.stack([x, y]))


@path_answer("t = arange(steps) / steps: stops one step short of y")
def _path_short(x, y, steps):
    t = column(torch.arange(steps, device=x.device) / steps, x)
    return (1 - t) * x + t * y


@path_answer("steps + 1 points")
def _path_one_more(x, y, steps):
    return interpolate_linear(x, y, steps + 1)


@path_answer("the weights as a column (steps, 1): right only for a 1-d x")
def _path_column(x, y, steps):
    t = torch.linspace(0, 1, steps, device=x.device).unsqueeze(1)
    return (1 - t) * x + t * y


@path_answer("torch.cat instead of stacking: the points concatenated along dim 0")
def _path_cat(x, y, steps):
    return torch.cat([(1 - t) * x + t * y for t in torch.linspace(0, 1, steps).tolist()])


@path_answer("from y to x: the path reversed")
def _path_reversed(x, y, steps):
    return interpolate_linear(y, x, steps)


@path_answer("forgets x: t (y - x) alone")
def _path_no_start(x, y, steps):
    return column(torch.linspace(0, 1, steps, device=x.device), x) * (y - x)


@path_answer("t^2 in place of t: the points are not equally spaced")
def _path_squared(x, y, steps):
    t = column(torch.linspace(0, 1, steps, device=x.device) ** 2, x)
    return (1 - t) * x + t * y


@path_answer("t = arange(1, steps + 1) / steps: starts one step after x")
def _path_late_start(x, y, steps):
    t = column(torch.arange(1, steps + 1, device=x.device) / steps, x)
    return (1 - t) * x + t * y


@path_answer("spherical interpolation (slerp) instead of a straight line")
def _path_slerp(x, y, steps):
    t = column(torch.linspace(0, 1, steps, device=x.device), x)
    omega = torch.acos((x * y).sum() / (x.norm() * y.norm()))
    return (torch.sin((1 - t) * omega) * x + torch.sin(t * omega) * y) / torch.sin(omega)


@path_answer("the points along the last dimension: shape (*x.shape, steps)")
def _path_last_dim(x, y, steps):
    t = torch.linspace(0, 1, steps, device=x.device)
    return (1 - t) * x.unsqueeze(-1) + t * y.unsqueeze(-1)


# ---------------------------------------------------------------- trained-vae

TRAINED: set = set()  # the names functions that need the trained reference (slow)


@functools.cache
def mnist() -> tuple[Tensor, Tensor]:
    from torchvision.datasets import MNIST

    from dgmlab.data import data_dir

    def load(train: bool) -> Tensor:
        return MNIST(data_dir(), train=train, download=True).data.float().div(255).flatten(1)

    return load(True), load(False)


TRAINING_SECONDS: list[float] = []


@functools.cache
def trained_state() -> dict:
    """The lab's reference VAE (its networks, loss and KLWeightManager), trained once per session
    on one CPU thread: its state_dict. The lab trains 8 epochs at lr 1e-3 (warm-up 1, annealing
    4); to save time this runs 4 epochs at lr 2e-3 (no warm-up, annealing over 2), which scored
    31.3 per held-out image (squared error + KL; KL 9.0) against the lab's 30.9, i.e. a negative
    ELBO of 480.0 nats with the decoder's constant 448.7: 1.2 nats under the hidden bar, 30
    times the spread of the judge's sampling (test_trained_reference_clears_the_hidden_bar)."""
    train_x, _ = mnist()
    start = time.perf_counter()
    torch.manual_seed(1)
    vae = VAE(Encoder(784, LATENT), Decoder(784, LATENT), CPU)
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    weights, kl = KLWeightManager(warm_up_rounds=0, annealing_rounds=2), KLDivergence()
    for epoch in range(4):
        weight = weights(epoch)
        for index in torch.randperm(len(train_x)).split(128):
            x = train_x[index]
            x_hat, mu, log_var = vae(x)
            loss = (x_hat - x).pow(2).sum(dim=1).mean() + weight * kl(mu, log_var)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    TRAINING_SECONDS.append(time.perf_counter() - start)
    return copy.deepcopy(vae.state_dict())


def trained_vae() -> VAE:
    """A fresh copy of the trained reference (a variant may change it)."""
    vae = VAE(Encoder(784, LATENT), Decoder(784, LATENT), CPU)
    vae.load_state_dict(trained_state())
    return vae


def trained(why: str, correct: bool = False, needs_training: bool = True):
    """Register `fn() -> (vae, test_x)` for the trained-vae item."""

    def register(fn):
        def names() -> dict:
            vae, test_x = fn()
            return {"vae": vae, "test_x": test_x}

        (cat.correct if correct else cat.mistake)("trained-vae", why)(names)
        if needs_training:
            TRAINED.add(names)
        return fn

    return register


@trained("the reference networks, loss and annealing, trained (4 epochs)", correct=True)
def _trained_reference():
    return trained_vae(), mnist()[1]


@trained("the trained model left in train mode; test_x converted to float64", correct=True)
def _trained_train_mode():
    return trained_vae().train(), mnist()[1].double()


@trained("the trained model moved to float64", correct=True)
def _trained_float64():
    return trained_vae().double(), mnist()[1]


class DecoderFirstVAE(nn.Module):
    """Registers the decoder before the encoder; the encoder returns a list."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.encoder = ListEncoder(encoder)


class ListEncoder(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.inner(x))


@trained(
    "the trained weights in a VAE that registers the decoder first, encoder returning a list",
    correct=True,
)
def _trained_rewrapped():
    vae = trained_vae()
    return DecoderFirstVAE(vae.encoder, vae.decoder), mnist()[1]


@trained("an untrained VAE", needs_training=False)
def _untrained():
    torch.manual_seed(0)
    return VAE(Encoder(784, LATENT), Decoder(784, LATENT), CPU), mnist()[1]


class ZeroEncoder(nn.Module):
    """The prior for every image: mu = 0, log_var = 0."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        zero = torch.zeros_like(x[:, :LATENT])
        return zero, zero.clone()


class AverageDecoder(nn.Module):
    """The average training image, whatever the code."""

    def __init__(self, average: Tensor):
        super().__init__()
        self.average = nn.Parameter(average)

    def forward(self, z: Tensor) -> Tensor:
        return self.average + 0 * z.sum(1, keepdim=True)


@trained("a collapsed model: posterior = prior, decoder = the average image", needs_training=False)
def _collapsed():
    return VAE(ZeroEncoder(), AverageDecoder(mnist()[0].mean(0)), CPU), mnist()[1]


class PassThrough(nn.Module):
    """mu = x with a tiny variance: a 784-dimensional code that copies the image."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, torch.full_like(x, -10.0)


@trained(
    "an encoder that copies the image into a 784-d code and an identity decoder",
    needs_training=False,
)
def _pass_through():
    return VAE(PassThrough(), nn.Identity(), CPU), mnist()[1]


@trained("the trained model with its decoder's Sigmoid removed (logits)")
def _trained_logits():
    vae = trained_vae()
    vae.decoder.net[-1] = nn.Identity()
    return vae, mnist()[1]


class SwappedEncoder(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_var = self.inner(x)
        return log_var, mu


@trained("the trained model's encoder returning (log_var, mu)")
def _trained_swapped():
    vae = trained_vae()
    vae.encoder = SwappedEncoder(vae.encoder)
    return vae, mnist()[1]


@trained("the trained model with the training images passed as test_x")
def _trained_on_train():
    return trained_vae(), mnist()[0][:10_000]


@trained("the trained model with the test images in another order")
def _trained_shuffled():
    test_x = mnist()[1]
    return trained_vae(), test_x[
        torch.randperm(len(test_x), generator=torch.Generator().manual_seed(0))
    ]


@trained("the trained model with test_x in 0..255, not divided by 255")
def _trained_unscaled():
    return trained_vae(), mnist()[1] * 255


@trained("the trained model with only half the test images")
def _trained_half():
    return trained_vae(), mnist()[1][:5000]


# ---------------------------------------------------------------- collapse-diagnostics


def kl_per_dimension(mu: Tensor, log_var: Tensor) -> Tensor:
    """The lab's reference."""
    return (0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)).mean(dim=0)


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """The lab's reference."""
    return int((mu.var(dim=0) > threshold).sum())


def diagnostics(why: str, kl=kl_per_dimension, active=active_units, correct: bool = False):
    """Register the student's kl_per_dimension and active_units (the reference's by default)."""
    (cat.correct if correct else cat.mistake)("collapse-diagnostics", why)(
        lambda: {"kl_per_dimension": kl, "active_units": active}
    )


diagnostics("the reference: the elementwise KL averaged over dim 0; var over dim 0", correct=True)


def _kl_torch_per_dimension(mu, log_var):
    q = Normal(mu, torch.exp(0.5 * log_var))
    return kl_divergence(q, Normal(torch.zeros_like(mu), torch.ones_like(mu))).mean(0)


def _active_biased(mu, threshold=0.01):
    return (mu.var(dim=0, correction=0) > threshold).sum()


diagnostics(
    "torch.distributions' KL averaged over the images; the biased variance, a tensor count",
    _kl_torch_per_dimension,
    _active_biased,
    correct=True,
)


def _kl_sum_divided(mu, log_var):
    return -0.5 * (1 + log_var - mu**2 - torch.exp(log_var)).sum(dim=0) / mu.shape[0]


def _active_centred(mu, threshold=0.01):
    centred = mu - mu.mean(dim=0, keepdim=True)
    return (centred.pow(2).mean(dim=0) > threshold).float().sum()


diagnostics(
    "-1/2 (1 + log_var - mu^2 - exp(log_var)) summed over the rows / rows; centred mean square, "
    "a float count",
    _kl_sum_divided,
    _active_centred,
    correct=True,
)


def _kl_independent(mu, log_var):
    q = Independent(Normal(mu.T, torch.exp(0.5 * log_var.T)), 1)
    p = Independent(Normal(torch.zeros_like(mu.T), torch.ones_like(mu.T)), 1)
    return kl_divergence(q, p) / mu.shape[0]


def _active_numpy(mu, threshold=0.01):
    return int(np.sum(np.var(mu.detach().cpu().numpy(), axis=0, ddof=1) > threshold))


diagnostics(
    "the transposed batch as one Independent Normal per dimension; numpy's variance",
    _kl_independent,
    _active_numpy,
    correct=True,
)


def _active_loop(mu, threshold=0.01):
    return sum(1 for j in range(mu.shape[1]) if torch.var(mu[:, j]).item() > threshold)


diagnostics("a loop over the latent dimensions, counting", active=_active_loop, correct=True)


def _elementwise_kl(mu, log_var):
    return 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var)


diagnostics(
    "the KL summed over dim 1: one value per image", lambda mu, lv: _elementwise_kl(mu, lv).sum(1)
)
diagnostics(
    "the KL averaged over dim 1: one value per image",
    lambda mu, lv: _elementwise_kl(mu, lv).mean(1),
)
diagnostics(
    "the KL summed over the images, not averaged", lambda mu, lv: _elementwise_kl(mu, lv).sum(0)
)
diagnostics("the KL without its factor 1/2", lambda mu, lv: 2 * kl_per_dimension(mu, lv))
diagnostics(
    "the lab's KLDivergence: summed over the dimensions, one number",
    lambda mu, lv: _elementwise_kl(mu, lv).sum(1).mean(),
)
diagnostics(
    "the KL of the averaged posterior: mu and log_var averaged over the images first",
    lambda mu, lv: _elementwise_kl(mu.mean(0), lv.mean(0)),
)
diagnostics(
    "log_var taken as the log of the standard deviation",
    lambda mu, lv: (0.5 * (mu.pow(2) + (2 * lv).exp() - 1 - 2 * lv)).mean(0),
)
diagnostics(
    "thresholds the standard deviation of mu",
    active=lambda mu, threshold=0.01: int((mu.std(0) > threshold).sum()),
)
diagnostics(
    "thresholds the mean of mu^2 (mu not centred)",
    active=lambda mu, threshold=0.01: int((mu.pow(2).mean(0) > threshold).sum()),
)
diagnostics(
    "the variance over dim 1, across the dimensions of each image",
    active=lambda mu, threshold=0.01: int((mu.var(1) > threshold).sum()),
)
diagnostics(
    "thresholds the mean of mu instead of its variance",
    active=lambda mu, threshold=0.01: int((mu.mean(0).abs() > threshold).sum()),
)
diagnostics(
    "counts the inactive units (<= threshold)",
    active=lambda mu, threshold=0.01: int((mu.var(0) <= threshold).sum()),
)
diagnostics(
    "ignores its threshold: always 0.01",
    active=lambda mu, threshold=0.01: int((mu.var(0) > 0.01).sum()),
)
diagnostics(
    "returns the mask of active dimensions, not their number",
    active=lambda mu, threshold=0.01: mu.var(0) > threshold,
)
diagnostics(
    "returns the fraction of active dimensions",
    active=lambda mu, threshold=0.01: (mu.var(0) > threshold).float().mean().item(),
)


# ---------------------------------------------------------------- the tests


def marked(variant: variants.Variant) -> object:
    marks = []
    if variant.item == "trained-vae":
        marks.append(pytest.mark.data)
        if variant.names in TRAINED:
            marks.append(pytest.mark.slow)
    return pytest.param(variant, marks=marks, id=str(variant))


@pytest.mark.parametrize("variant", [marked(v) for v in cat.mistakes])
def test_mistake_loses_its_item(variant: variants.Variant) -> None:
    cat.expect_fails(variant)


@pytest.mark.parametrize("variant", [marked(v) for v in cat.corrects])
def test_correct_variant_keeps_its_item(variant: variants.Variant) -> None:
    cat.expect_passes(variant)


def test_every_item_is_listed() -> None:
    cat.expect_complete()


STATISTICAL_MISTAKES = [v for v in cat.mistakes if v.statistical]
STATISTICAL_CORRECT = [v for v in cat.corrects if v.statistical]


@pytest.mark.slow  # 300 gradings each (about 12 s a variant on one core)
@pytest.mark.parametrize("variant", STATISTICAL_MISTAKES, ids=str)
def test_statistical_mistakes_caught_in_299_of_300(variant: variants.Variant) -> None:
    caught = cat.caught(variant)
    assert caught >= variants.POWER_MIN_CAUGHT, f"{variant}: caught under {caught} of 300"


@pytest.mark.slow
@pytest.mark.parametrize("variant", STATISTICAL_CORRECT, ids=str)
def test_statistical_correct_pass_300_of_300(variant: variants.Variant) -> None:
    assert cat.caught(variant) == 0, f"{variant} lost its item under some secret"


@pytest.mark.slow
@pytest.mark.data
def test_trained_reference_clears_the_hidden_bar() -> None:
    """The judge decodes one z per held-out image that it draws itself, so its score of one model
    varies from grading to grading. Under 20 judge seeds the trained reference's loss stays
    C = 5.5 sd below the hidden bar (the sd inflated by half for its own estimation error): a
    false failure below 3.8e-8 per grading; and its KL stays above the collapse bar."""
    from autograder.hidden import kl_vae as hidden
    from dgmlab.checks import program, stats
    from dgmlab.heldout import held_out_test_images

    vae = trained_vae().eval()
    images = held_out_test_images().flatten(1)
    with torch.no_grad():
        encoder = program.load_program(program.export_program(vae.encoder, (images[:20],)))
        z = vae.encoder(images[:20])[0]
        decoder = program.load_program(program.export_program(vae.decoder, (z,)))
    scores = []
    for seed in range(20):
        torch.manual_seed(seed)
        scores.append(checks.vae_scores(encoder, decoder, images))
    losses = torch.tensor([loss for loss, _ in scores], dtype=torch.float64)
    assert losses.std().item() <= checks.JUDGE_SD  # the sd the module's power statement uses
    sd = 1.5 * losses.std().item()
    assert losses.mean().item() + stats.C * sd < hidden.MAX_LOSS, (losses.mean().item(), sd)
    assert min(kl for _, kl in scores) > checks.MIN_KL
