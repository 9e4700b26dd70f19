"""Reparameterization samplers a student could write, shared by the VAE labs' catalogues.

A sampler is `(mu, log_var) -> z`; the lab says z = mu + sigma * eps with sigma = exp(log_var / 2)
and eps ~ N(0, I) drawn fresh on every call, differentiable in mu and log_var. `register` adds
these to a lab's catalogue for its reparameterization item, through `names_for`, which turns a
sampler into the names the lab's test cell uses (a VAE class whose method it is, say).
"""

from collections.abc import Callable

import torch

Sampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sigma(log_var: torch.Tensor) -> torch.Tensor:
    return torch.exp(0.5 * log_var)


def reference(mu, log_var):
    return mu + _sigma(log_var) * torch.randn_like(mu)


def with_distributions(mu, log_var):
    return torch.distributions.Normal(mu, _sigma(log_var)).rsample()


def independent_normal(mu, log_var):
    return torch.distributions.Independent(
        torch.distributions.Normal(mu, _sigma(log_var)), 1
    ).rsample()


def sqrt_of_variance(mu, log_var):
    eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype)
    return mu + torch.sqrt(torch.exp(log_var)) * eps


def in_place_classic(mu, log_var):
    std = log_var.mul(0.5).exp()
    eps = std.new_empty(std.size()).normal_()
    return eps.mul(std).add(mu)


def eps_first(mu, log_var):
    eps = torch.randn_like(log_var)
    return eps * torch.exp(log_var / 2) + mu


def multivariate_diagonal(mu, log_var):
    scale = torch.diag_embed(_sigma(log_var))
    return torch.distributions.MultivariateNormal(mu, scale_tril=scale).rsample()


CORRECT: list[tuple[str, Sampler, bool]] = [
    ("mu + exp(log_var / 2) * randn_like(mu), as the lab writes it", reference, True),
    ("torch.distributions.Normal(mu, sigma).rsample()", with_distributions, True),
    ("Independent(Normal(mu, sigma), 1).rsample()", independent_normal, False),
    (
        "sigma as sqrt(exp(log_var)), noise from torch.randn(shape, device=...)",
        sqrt_of_variance,
        False,
    ),
    ("the classic std.new_empty(...).normal_() with mul/add", in_place_classic, True),
    ("eps drawn like log_var, written eps * sigma + mu", eps_first, False),
    ("MultivariateNormal with a diagonal scale_tril, rsample()", multivariate_diagonal, False),
]


def variance_for_sigma(mu, log_var):
    return mu + torch.exp(log_var) * torch.randn_like(mu)


def log_var_as_sigma(mu, log_var):
    return mu + log_var * torch.randn_like(mu)


def half_of_variance(mu, log_var):
    return mu + 0.5 * torch.exp(log_var) * torch.randn_like(mu)


def uniform_noise(mu, log_var):
    return mu + _sigma(log_var) * torch.rand_like(mu)


def uniform_unit_variance(mu, log_var):
    # uniform on [-sqrt(3), sqrt(3)]: mean 0 and variance 1, but no Gaussian tails
    return mu + _sigma(log_var) * (torch.rand_like(mu) - 0.5) * 12**0.5


def noise_shared_by_rows(mu, log_var):
    return mu + _sigma(log_var) * torch.randn(mu.shape[-1], device=mu.device)


def noise_shared_by_columns(mu, log_var):
    return mu + _sigma(log_var) * torch.randn(mu.shape[0], 1, device=mu.device)


def reseeded_every_call(mu, log_var):
    generator = torch.Generator(device=mu.device).manual_seed(0)
    eps = torch.randn(mu.shape, generator=generator, device=mu.device)
    return mu + _sigma(log_var) * eps


def no_noise(mu, log_var):
    return mu + 0 * log_var


def detached_sigma(mu, log_var):
    return mu + _sigma(log_var).detach() * torch.randn_like(mu)


def torch_normal(mu, log_var):
    # torch.normal draws from N(mu, sigma) but its gradient with respect to both is zero
    return torch.normal(mu, _sigma(log_var))


def sample_not_rsample(mu, log_var):
    return torch.distributions.Normal(mu, _sigma(log_var)).sample()


def sigma_plus_stability_epsilon(mu, log_var):
    return mu + (_sigma(log_var) + 0.01) * torch.randn_like(mu)


def noise_clipped(mu, log_var):
    return mu + _sigma(log_var) * torch.randn_like(mu).clamp(-2.5, 2.5)


def log_var_clamped(mu, log_var):
    # a "numerical safety" clamp that changes sigma wherever |log_var| > 1
    return mu + _sigma(log_var.clamp(-1, 1)) * torch.randn_like(mu)


MISTAKES: list[tuple[str, Sampler, bool]] = [
    ("uses the variance exp(log_var) as the standard deviation", variance_for_sigma, False),
    ("uses log_var itself as the standard deviation", log_var_as_sigma, False),
    ("reads exp(log_var / 2) as exp(log_var) / 2", half_of_variance, False),
    ("uniform noise torch.rand_like instead of a standard normal", uniform_noise, False),
    ("uniform noise scaled to mean 0 and variance 1", uniform_unit_variance, False),
    ("one noise vector shared by every row of the batch", noise_shared_by_rows, False),
    ("one noise value per row shared by every latent column", noise_shared_by_columns, False),
    ("re-seeds its generator on every call: the same noise each time", reseeded_every_call, False),
    ("returns mu: no noise at all", no_noise, False),
    ("detaches sigma: no gradient reaches log_var", detached_sigma, False),
    ("torch.normal(mu, sigma): the right law, but no gradient", torch_normal, False),
    ("Normal(...).sample() instead of rsample(): no gradient", sample_not_rsample, False),
    ("adds 0.01 to sigma 'for stability'", sigma_plus_stability_epsilon, True),
    ("clips the noise to [-2.5, 2.5] 'to avoid outliers'", noise_clipped, True),
    ("clamps log_var to [-1, 1] before the exponential", log_var_clamped, False),
]


def register(
    catalogue, item: str, names_for: Callable[[Sampler], dict], power: bool = False
) -> None:
    """Add the shared samplers to `catalogue` for `item`. With `power`, the statistical ones
    run under 300 secrets: one lab does (02, whose item is the sampler alone); every lab
    sharing the check runs each sampler once, which shows its wrapper reaches the check."""
    for why, sampler, statistical in CORRECT:
        catalogue.correct(item, why, statistical=statistical and power)(
            lambda s=sampler: names_for(s)
        )
    for why, sampler, statistical in MISTAKES:
        catalogue.mistake(item, why, statistical=statistical and power)(
            lambda s=sampler: names_for(s)
        )
