"""Lab 03 (conv VAE): the plausible mistakes every graded item must catch and the correct
variants it must accept (issue 10), applied to the lab's own test cells as the grader applies
them (tests/variants.py). Each entry's `why` says, in plain words, what the student wrote.

The trained-model item needs MNIST (marked `data`); its variants built on a trained model share
one reference training per test session (marked `slow`). The log-weights item is statistical too:
its judge compares the answer's log-weights on stand-in VAEs with its own draws, and its power
and false failures under 300 secrets are slow tests. The model item's statistics (the
eval-mode sampler's) are drawn by its judge from the exported encoder: their power is measured
under 300 secrets with the kernel's evidence collected 3 times (see `sampling_caught`).
"""

import copy
import functools
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from autograder import verdict
from dgmlab.checks import conv_vae as checks
from dgmlab.checks import evidence
from dgmlab.data import BINARIZE_SEED, binarize
from tests import sampler_variants, variants
from tests.test_checks_conv_vae import ref

LAB = "03-conv-vae"
CPU = torch.device("cpu")
cat = variants.Catalogue(LAB)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def answer(item: str, why: str, name: str, correct: bool = False, statistical: bool = False):
    """Register the decorated function as the student's `name` for `item`."""

    def register(fn):
        kind = cat.correct if correct else cat.mistake
        kind(item, why, statistical=statistical)(lambda: {name: fn})
        return fn

    return register


# ---------------------------------------------------------------- vae-loss


def loss(why: str, correct: bool = False):
    return answer("vae-loss", why, "vae_loss", correct)


def _bce(output, images):
    return F.binary_cross_entropy(output, images, reduction="sum")


def _kl(mu, log_var):
    return 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum()


@loss("the reference: F.binary_cross_entropy(reduction='sum') and the closed-form KL", True)
def _loss_reference(output, mu, log_var, images):
    return ref("vae_loss")(output, mu, log_var, images)


@loss("the Bernoulli log-likelihood written out, logs clamped at -100 as BCE does", True)
def _loss_by_hand(output, mu, log_var, images):
    log_p, log_q = output.log().clamp(min=-100), (1 - output).log().clamp(min=-100)
    reconstruction = -(images * log_p + (1 - images) * log_q).sum()
    return reconstruction, -0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp())


@loss("torch.distributions: Bernoulli(probs).log_prob and kl_divergence(Normal, Normal)", True)
def _loss_distributions(output, mu, log_var, images):
    likelihood = Bernoulli(probs=output, validate_args=False)  # grey levels are not in {0, 1}
    posterior = Normal(mu, torch.exp(0.5 * log_var))
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return -likelihood.log_prob(images).sum(), kl_divergence(posterior, prior).sum()


@loss("reduction='none' summed per image, then over the batch", True)
def _loss_per_image(output, mu, log_var, images):
    per_pixel = F.binary_cross_entropy(output, images, reduction="none")
    per_image_kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(dim=1)
    return per_pixel.flatten(1).sum(dim=1).sum(), per_image_kl.sum()


@loss(
    "BCE's default mean times the number of elements; the KL through sigma = exp(log_var/2)", True
)
def _loss_mean_times_numel(output, mu, log_var, images):
    sigma = torch.exp(0.5 * log_var)
    kl = 0.5 * torch.sum(mu**2 + sigma**2 - 1 - torch.log(sigma**2))
    return F.binary_cross_entropy(output, images) * images.numel(), kl


@loss("returns a list [reconstruction, kl] rather than a tuple", True)
def _loss_list(output, mu, log_var, images):
    return [_bce(output, images), _kl(mu, log_var)]


@loss("both terms means over every element (BCE's default reduction, KL .mean())")
def _loss_mean(output, mu, log_var, images):
    kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).mean()
    return F.binary_cross_entropy(output, images), kl


@loss("both terms summed per image but averaged over the batch")
def _loss_mean_over_batch(output, mu, log_var, images):
    return _bce(output, images) / len(images), _kl(mu, log_var) / len(images)


@loss("the reconstruction averaged over the batch, the KL summed")
def _loss_mixed_reductions(output, mu, log_var, images):
    return _bce(output, images) / len(images), _kl(mu, log_var)


@loss("returns the sum of the two terms as one tensor")
def _loss_added(output, mu, log_var, images):
    return _bce(output, images) + _kl(mu, log_var)


@loss("returns (reconstruction + KL, KL)")
def _loss_total_first(output, mu, log_var, images):
    return _bce(output, images) + _kl(mu, log_var), _kl(mu, log_var)


@loss("returns (KL, reconstruction): the terms in the wrong order")
def _loss_swapped_order(output, mu, log_var, images):
    return _kl(mu, log_var), _bce(output, images)


@loss("the KL with its sign flipped")
def _loss_kl_sign(output, mu, log_var, images):
    return _bce(output, images), -_kl(mu, log_var)


@loss("the KL without its factor 1/2")
def _loss_kl_no_half(output, mu, log_var, images):
    return _bce(output, images), 2 * _kl(mu, log_var)


@loss("the KL with sigma where the variance belongs: exp(log_var / 2)")
def _loss_kl_sigma_for_variance(output, mu, log_var, images):
    kl = 0.5 * (mu.pow(2) + torch.exp(0.5 * log_var) - 1 - log_var).sum()
    return _bce(output, images), kl


@loss("the KL without its -1 per latent dimension")
def _loss_kl_no_minus_one(output, mu, log_var, images):
    return _bce(output, images), 0.5 * (mu.pow(2) + log_var.exp() - log_var).sum()


@loss("the KL summed over the latent dimensions only: one number per image")
def _loss_kl_per_image(output, mu, log_var, images):
    return _bce(output, images), 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(dim=1)


@loss("the reconstruction with a factor 1/2, as in a Gaussian's squared error")
def _loss_half_reconstruction(output, mu, log_var, images):
    return 0.5 * _bce(output, images), _kl(mu, log_var)


@loss("binary_cross_entropy(images, output): prediction and target swapped")
def _loss_swapped(output, mu, log_var, images):
    return F.binary_cross_entropy(images, output, reduction="sum"), _kl(mu, log_var)


@loss("binary_cross_entropy_with_logits on the probabilities")
def _loss_with_logits(output, mu, log_var, images):
    return F.binary_cross_entropy_with_logits(output, images, reduction="sum"), _kl(mu, log_var)


@loss("a squared error instead of the binary cross-entropy")
def _loss_squared_error(output, mu, log_var, images):
    return F.mse_loss(output, images, reduction="sum"), _kl(mu, log_var)


@loss("returns Python floats (.item()), so nothing can be differentiated")
def _loss_floats(output, mu, log_var, images):
    return _bce(output, images).item(), _kl(mu, log_var).item()


@loss("detaches mu and log_var in the KL: the encoder gets no gradient from it")
def _loss_kl_detached(output, mu, log_var, images):
    return _bce(output, images), _kl(mu.detach(), log_var.detach())


# ---------------------------------------------------------------- reparameterize


def sampler_names(sampler) -> dict:
    """The lab's ConvVAE with `sampler` as its reparameterize method."""
    vae = type("StudentVAE", (ref("ConvVAE"),), {"reparameterize": lambda _, m, v: sampler(m, v)})
    return {"ConvVAE": vae, "device": CPU}


sampler_variants.register(cat, "reparameterize", sampler_names)  # the shared samplers


# ---------------------------------------------------------------- conv-vae


def model(why: str, correct: bool = False, statistical: bool = False):
    """Register the decorated class as the student's ConvVAE."""

    def register(cls):
        kind = cat.correct if correct else cat.mistake
        kind("conv-vae", why, statistical=statistical)(lambda: {"ConvVAE": cls, "device": CPU})
        return cls

    return register


def reference_model():
    return ref("ConvVAE")


def changed(**methods) -> type:
    """The lab's ConvVAE with some methods replaced."""
    return type("StudentVAE", (reference_model(),), methods)


def _encoder(self, x):
    return reference_model().encoder(self, x)


class Explicit(nn.Module):
    """The table's layers as separate attributes, the activations written in forward code."""

    def __init__(self, latent_features=16):
        super().__init__()
        self.latent_features = latent_features
        self.conv1 = nn.Conv2d(1, 16, kernel_size=4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=4, stride=2, padding=1)
        self.fc_mu = nn.Linear(32 * 7 * 7, latent_features)
        self.fc_log_var = nn.Linear(32 * 7 * 7, latent_features)
        self.fc_up = nn.Linear(latent_features, 32 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1)

    def reparameterize(self, mu, log_var):
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def features(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x)))).view(-1, 32 * 7 * 7)

    def heads(self, h):
        return self.fc_mu(h), self.fc_log_var(h)

    def encoder(self, x):
        mu, log_var = self.heads(self.features(x))
        return mu, log_var, self.reparameterize(mu, log_var)

    def logits(self, z):
        h = F.relu(self.fc_up(z)).view(-1, 32, 7, 7)
        return self.deconv2(F.relu(self.deconv1(h)))

    def decoder(self, z):
        return torch.sigmoid(self.logits(z))

    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var


model("the reference: nn.Sequential blocks and two nn.Linear heads, as the lab writes it", True)(
    reference_model()
)
model("separate layer attributes, F.relu in code, view for the reshapes, helper methods", True)(
    Explicit
)


@model("the decoder's layers registered before the encoder's, under other names", True)
class DecoderFirst(nn.Module):
    def __init__(self, latent_features=16):
        super().__init__()
        self.latent_features = latent_features
        self.dec = nn.Sequential(
            nn.Linear(latent_features, 32 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (32, 7, 7)),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )
        self.log_var = nn.Linear(32 * 7 * 7, latent_features)
        self.mean = nn.Linear(32 * 7 * 7, latent_features)
        self.enc = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )

    def reparameterize(self, mu, log_var):
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def encoder(self, x):
        h = self.enc(x)
        mu, log_var = self.mean(h), self.log_var(h)
        return mu, log_var, self.reparameterize(mu, log_var)

    def decoder(self, z):
        return self.dec(z)

    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var


@model("one nn.Linear(1568, 2d) whose output is split into mu and log_var", True)
class OneMatrixForBothHeads(Explicit):
    def __init__(self, latent_features=16):
        super().__init__(latent_features)
        del self.fc_mu, self.fc_log_var
        self.fc_heads = nn.Linear(32 * 7 * 7, 2 * latent_features)

    def heads(self, h):
        mu, log_var = self.fc_heads(h).chunk(2, dim=1)
        return mu, log_var


@model("z from torch.distributions.Normal(mu, sigma).rsample()", True)
class DistributionsSampler(Explicit):
    def reparameterize(self, mu, log_var):
        return Normal(mu, torch.exp(0.5 * log_var)).rsample()


@model("the probabilities clamped to [1e-6, 1 - 1e-6] after the sigmoid, for a safe log", True)
class ClampedProbabilities(Explicit):
    def decoder(self, z):
        return torch.sigmoid(self.logits(z)).clamp(1e-6, 1 - 1e-6)


@model("the sigmoid written as (1 + tanh(logits / 2)) / 2", True)
class TanhSigmoid(Explicit):
    def decoder(self, z):
        return 0.5 * (1 + torch.tanh(self.logits(z) / 2))


@model("nn.ReLU(inplace=True) everywhere", True)
class InPlaceReLU(nn.Module):
    def __init__(self, latent_features=16):
        super().__init__()
        self.latent_features = latent_features
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.mu_head = nn.Linear(32 * 7 * 7, latent_features)
        self.log_var_head = nn.Linear(32 * 7 * 7, latent_features)
        self.generator = nn.Sequential(
            nn.Linear(latent_features, 32 * 7 * 7),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (32, 7, 7)),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    reparameterize = Explicit.reparameterize
    encoder = _encoder

    def decoder(self, z):
        return self.generator(z)

    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var


@model("the decoder returns logits: no sigmoid at the end")
class Logits(Explicit):
    def decoder(self, z):
        return self.logits(z)


@model("the decoder ends with a ReLU: non-negative, but not bounded by 1")
class ReluOutput(Explicit):
    def decoder(self, z):
        return F.relu(self.logits(z))


@model("the decoder clamps its output to [0, 1] instead of a sigmoid")
class ClampOutput(Explicit):
    def decoder(self, z):
        return self.logits(z).clamp(0, 1)


@model("the decoder ends with a softmax over the 784 pixels")
class SoftmaxOutput(Explicit):
    def decoder(self, z):
        return F.softmax(self.logits(z).flatten(1), dim=1).view(-1, 1, 28, 28)


@model("the decoder ends with tanh, as for images scaled to [-1, 1]")
class TanhOutput(Explicit):
    def decoder(self, z):
        return torch.tanh(self.logits(z))


@model("the decoder's transposed convolutions pad wrongly: 32 x 32 images")
class Decoder32(Explicit):
    def decoder(self, z):
        return F.pad(torch.sigmoid(self.logits(z)), (2, 2, 2, 2))


@model("the decoder returns flat images of shape (B, 784)")
class FlatDecoder(Explicit):
    def decoder(self, z):
        return torch.sigmoid(self.logits(z)).flatten(1)


@model("the mean head ends with a ReLU, like the layers before it")
class ReluMean(Explicit):
    def heads(self, h):
        return F.relu(self.fc_mu(h)), self.fc_log_var(h)


@model("the log-variance head ends with a ReLU 'so that the variance is positive'")
class ReluLogVar(Explicit):
    def heads(self, h):
        return self.fc_mu(h), F.relu(self.fc_log_var(h))


@model("both heads end with tanh")
class TanhHeads(Explicit):
    def heads(self, h):
        return torch.tanh(self.fc_mu(h)), torch.tanh(self.fc_log_var(h))


@model("the log-variance head ends with a softplus")
class SoftplusLogVar(Explicit):
    def heads(self, h):
        return self.fc_mu(h), F.softplus(self.fc_log_var(h))


@model("log_var comes from the mean head again: one nn.Linear used twice")
class SameHead(Explicit):
    def heads(self, h):
        return self.fc_mu(h), self.fc_mu(h)


@model("the encoder returns sigma = exp(log_var / 2) where log_var belongs")
class SigmaForLogVar(Explicit):
    def encoder(self, x):
        mu, log_var = self.heads(self.features(x))
        return mu, torch.exp(0.5 * log_var), self.reparameterize(mu, log_var)


@model("forward returns the variance exp(log_var) instead of log_var")
class ForwardVariance(Explicit):
    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var.exp()


@model("forward squashes mu with tanh after the encoder")
class ForwardTanhMean(Explicit):
    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), torch.tanh(mu), log_var


@model("forward returns (x_hat, mu, z): the sample where log_var belongs")
class ForwardSample(Explicit):
    def forward(self, x):
        mu, _, z = self.encoder(x)
        return self.decoder(z), mu, z


@model("forward returns x_hat only")
class ForwardImageOnly(Explicit):
    def forward(self, x):
        return self.decoder(self.encoder(x)[2])


@model("the encoder returns (mu, log_var) without the sample z")
class EncoderTwo(Explicit):
    def encoder(self, x):
        return self.heads(self.features(x))

    def forward(self, x):
        mu, log_var = self.encoder(x)
        return self.decoder(self.reparameterize(mu, log_var)), mu, log_var


@model("z = mu in evaluation mode")
class MeanInEval(Explicit):
    def encoder(self, x):
        mu, log_var = self.heads(self.features(x))
        return mu, log_var, self.reparameterize(mu, log_var) if self.training else mu


@model("fully connected layers instead of convolutions")
class FullyConnected(Explicit):
    def __init__(self, latent_features=16):
        super().__init__(latent_features)
        del self.conv1, self.conv2
        self.fc_in = nn.Linear(784, 32 * 7 * 7)

    def features(self, x):
        return F.relu(self.fc_in(x.flatten(1)))


@model("the sampler uses the variance exp(log_var) as sigma (the lab's architecture)")
class VarianceSampler(Explicit):
    def reparameterize(self, mu, log_var):
        return mu + torch.exp(log_var) * torch.randn_like(mu)


# The statistical variants of the model item: a one-filter-bank convolutional VAE with the lab's
# interface, so that the judge runs its 4096 sampling images in milliseconds under each of 300
# secrets; the judge's inputs spread log_var over several nats for it as for the lab's model
# (tests/test_checks_conv_vae.py measures the lab's architecture).


class Small(nn.Module):
    """A small convolutional VAE: Conv2d(1, 4, 7, stride 7), two heads, a transposed conv back."""

    def __init__(self, latent_features=16):
        super().__init__()
        self.latent_features = latent_features
        self.conv = nn.Conv2d(1, 4, 7, stride=7)
        self.mu_head = nn.Linear(64, latent_features)
        self.log_var_head = nn.Linear(64, latent_features)
        self.up = nn.Linear(latent_features, 16)
        self.deconv = nn.ConvTranspose2d(1, 1, 7, stride=7)

    def sample(self, mu, log_var):
        return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)

    def encoder(self, x):
        h = F.relu(self.conv(x)).flatten(1)
        mu, log_var = self.mu_head(h), self.log_var_head(h)
        return mu, log_var, self.sample(mu, log_var)

    def decoder(self, z):
        return torch.sigmoid(self.deconv(F.relu(self.up(z)).view(-1, 1, 4, 4)))

    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var


def small(why: str, correct: bool = False, statistical: bool = True):
    """Register Small with the decorated sampler (statistical: a small bias, or a reference)."""

    def register(fn):
        cls = type("StudentVAE", (Small,), {"sample": lambda self, m, v: fn(self, m, v)})
        return model(f"small model: {why}", correct, statistical)(cls)

    return register


@small("z = mu + exp(log_var / 2) * randn_like(mu)", True)
def _small_reference(self, mu, log_var):
    return mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)


@small("eps drawn first, z = eps * sqrt(exp(log_var)) + mu", True, statistical=False)
def _small_eps_first(self, mu, log_var):
    eps = torch.randn(mu.shape, dtype=mu.dtype, device=mu.device)
    return eps * torch.sqrt(torch.exp(log_var)) + mu


@small("the variance exp(log_var) used as sigma")
def _small_variance(self, mu, log_var):
    return mu + torch.exp(log_var) * torch.randn_like(mu)


@small("half the noise in evaluation mode ('a cooler sample at test time')", statistical=False)
def _small_cool_eval(self, mu, log_var):
    scale = 1.0 if self.training else 0.5
    return mu + scale * torch.exp(0.5 * log_var) * torch.randn_like(mu)


@small("sigma 3% too large")
def _small_scale_off(self, mu, log_var):
    return mu + 1.03 * torch.exp(0.5 * log_var) * torch.randn_like(mu)


@small("uniform noise of unit variance in evaluation mode", statistical=False)
def _small_uniform_eval(self, mu, log_var):
    if self.training:
        eps = torch.randn_like(mu)
    else:
        eps = (torch.rand_like(mu) - 0.5) * math.sqrt(12)
    return mu + torch.exp(0.5 * log_var) * eps


# ---------------------------------------------------------------- trained-vae

TRAINED: set = set()  # the names functions that need the trained reference (slow)
TRAINING_SECONDS: list[float] = []


@functools.cache
def mnist(train: bool) -> torch.Tensor:
    """MNIST's grey levels, (N, 1, 28, 28) in [0, 1]."""
    from torchvision.datasets import MNIST

    from dgmlab.data import data_dir

    return MNIST(data_dir(), train=train, download=True).data.float().div(255).unsqueeze(1)


@functools.cache
def binarized_test() -> torch.Tensor:
    """The test set as the notebook loads it: binarised once, with BINARIZE_SEED."""
    return binarize(mnist(False), seed=BINARIZE_SEED)


def train(vae: nn.Module, steps: int, lr: float = 2e-3, batch: int = 64) -> nn.Module:
    """Adam on the lab's loss, `steps` batches of shuffled training images, each binarised
    afresh as the lab's train_epoch does."""
    images, vae_loss = mnist(True), ref("vae_loss")
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    done = 0
    while done < steps:
        for index in torch.randperm(len(images), generator=generator).split(batch)[: steps - done]:
            x = binarize(images[index])
            reconstruction, kl = vae_loss(*vae(x), x)
            optimizer.zero_grad()
            ((reconstruction + kl) / len(x)).backward()
            optimizer.step()
            done += 1
    return vae


@functools.cache
def trained_state() -> dict:
    """The lab's ConvVAE (latent 16) trained once per session: 900 batches of 64 at 2e-3, each
    binarised afresh, which scores 113.98 nats on the binarised held-out images (the hidden bar
    is 6.5 above; the lab's own budget, 2 epochs of 128 at 1e-3, 114.05 at seed 0). Seed 2 scores
    112.60; seed 1 collapses at this rate (215.08: its codes fall onto the prior before the
    decoder uses them), which is why this reference is seeded, as every run here is on the CPU."""
    start = time.perf_counter()
    torch.manual_seed(0)
    vae = train(reference_model()(16), steps=900)
    TRAINING_SECONDS.append(time.perf_counter() - start)
    return copy.deepcopy(vae.state_dict())


def trained_vae(cls: type | None = None) -> nn.Module:
    """A fresh copy of the trained reference, as `cls` (a subclass of the lab's ConvVAE)."""
    vae = (cls or reference_model())(16)
    vae.load_state_dict(trained_state())
    return vae.eval()


def trained(why: str, correct: bool = False, needs_training: bool = True):
    """Register the decorated function's names for trained-vae (slow if it trains)."""

    def register(fn):
        (cat.correct if correct else cat.mistake)("trained-vae", why)(fn)
        if needs_training:
            TRAINED.add(fn)
        return fn

    return register


@trained("the trained model in evaluation mode", True)
def _trained_eval():
    return {"vae": trained_vae(), "test_x": binarized_test()}


@trained("the trained model left in training mode", True)
def _trained_train_mode():
    return {"vae": trained_vae().train(), "test_x": binarized_test()}


def _mean_in_eval(self, x):
    mu, log_var, z = reference_model().encoder(self, x)
    return mu, log_var, z if self.training else mu


@trained("a trained model whose encoder returns z = mu in evaluation mode (graded elsewhere)", True)
def _trained_mean_in_eval():
    return {"vae": trained_vae(changed(encoder=_mean_in_eval)), "test_x": binarized_test()}


class Holder(nn.Module):
    """Another module around the trained one, passing encoder and decoder on."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def encoder(self, x):
        return self.inner.encoder(x)

    def decoder(self, z):
        return self.inner.decoder(z)

    def forward(self, x):
        return self.inner(x)


@trained("the trained model held inside another module that passes encoder and decoder on", True)
def _trained_held():
    return {"vae": Holder(trained_vae()), "test_x": binarized_test()}


@trained("an untrained model", needs_training=False)
def _untrained():
    torch.manual_seed(0)
    return {"vae": reference_model()(16), "test_x": binarized_test()}


class MeanImage(nn.Module):
    """A collapsed posterior (mu = 0, log_var = 0) and a decoder that draws the average image."""

    def __init__(self, mean: torch.Tensor):
        super().__init__()
        self.mean = nn.Parameter(mean.clamp(1e-3, 1 - 1e-3))
        self.unused = nn.Linear(1, 16)

    def encoder(self, x):
        mu = torch.zeros(len(x), 16, device=x.device) + 0 * self.unused.bias
        return mu, torch.zeros_like(mu), mu + torch.randn_like(mu)

    def decoder(self, z):
        return self.mean.expand(len(z), 1, 28, 28) + 0 * z.sum()

    def forward(self, x):
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var


@trained(
    "a collapsed posterior: every code decodes to the average training image", needs_training=False
)
def _collapsed():
    return {"vae": MeanImage(mnist(True).mean(0)), "test_x": binarized_test()}


@trained("the trained model's decoder without its sigmoid: logits, not probabilities")
def _trained_logits():
    logits = changed(decoder=lambda self, z: self.generator[:-1](z))
    return {"vae": trained_vae(logits), "test_x": binarized_test()}


@trained("a posterior variance shrunk by exp(-8), where training without the KL term drifts")
def _trained_no_kl():
    vae = trained_vae()
    with torch.no_grad():
        vae.log_var_head.bias -= 8
    return {"vae": vae, "test_x": binarized_test()}


@trained("the trained model, but test_x is the first 1000 test images")
def _trained_subset():
    return {"vae": trained_vae(), "test_x": binarized_test()[:1000]}


@trained("the trained model, but test_x is shuffled")
def _trained_shuffled():
    order = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))
    return {"vae": trained_vae(), "test_x": binarized_test()[order]}


@trained("the trained model, but test_x holds grey levels 0-255 (not divided by 255)")
def _trained_bytes():
    return {"vae": trained_vae(), "test_x": mnist(False) * 255}


@trained("the trained model, but test_x holds the grey levels: the binarisation left out")
def _trained_grey():
    return {"vae": trained_vae(), "test_x": mnist(False)}


@trained("the trained model, but test_x binarised afresh (no seed) instead of with BINARIZE_SEED")
def _trained_other_binarisation():
    torch.manual_seed(0)
    return {"vae": trained_vae(), "test_x": binarize(mnist(False))}


# ---------------------------------------------------------------- log-weights


def weights(why: str, correct: bool = False, statistical: bool = False):
    """Register the decorated function as the student's log_importance_weights (on the CPU)."""

    def register(fn):
        kind = cat.correct if correct else cat.mistake
        names = {"log_importance_weights": fn, "device": CPU}
        kind("log-weights", why, statistical=statistical)(lambda: names)
        return fn

    return register


STANDARD = Normal(0.0, 1.0)


def _log_likelihood(x_hat, x):
    """log p(x | z) per decoded sample: x_hat (K, B, 1, 28, 28) against x (B, 1, 28, 28)."""
    bce = F.binary_cross_entropy(x_hat, x.expand_as(x_hat), reduction="none")
    return -bce.flatten(2).sum(-1)


def _decoded(vae, z, x):
    """The K x B codes z decoded as one batch, viewed as (K, B, 1, 28, 28)."""
    return vae.decoder(z.flatten(0, 1)).view(*z.shape[:2], *x.shape[1:])


def _posterior(vae, x):
    mu, log_var, _ = vae.encoder(x)
    return mu, log_var, Normal(mu, torch.exp(0.5 * log_var))


@weights("the reference: Normal(mu, sigma).rsample((K,)), decoded as one batch", True, True)
def _weights_reference(vae, x, K):
    return ref("log_importance_weights")(vae, x, K)


@weights("the Gaussian log-densities written out, z = mu + sigma * randn(K, B, d)", True)
def _weights_by_hand(vae, x, K):
    mu, log_var, _ = vae.encoder(x)
    eps = torch.randn(K, *mu.shape, device=mu.device)
    z = mu + torch.exp(0.5 * log_var) * eps
    log_2pi = math.log(2 * math.pi)
    log_prior = -0.5 * (z**2 + log_2pi).sum(-1)
    log_q = -0.5 * (eps**2 + log_var + log_2pi).sum(-1)
    return _log_likelihood(_decoded(vae, z, x), x) + log_prior - log_q


@weights("a loop of K calls to vae.encoder, each sample its own z, stacked", True)
def _weights_loop(vae, x, K):
    rows = []
    for _ in range(K):
        mu, log_var, z = vae.encoder(x)
        q = Normal(mu, torch.exp(0.5 * log_var))
        x_hat = vae.decoder(z)
        log_px = -F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(1)
        rows.append(log_px + STANDARD.log_prob(z).sum(1) - q.log_prob(z).sum(1))
    return torch.stack(rows)


@weights("the images repeated K times (x.repeat), encoded and decoded as one big batch", True)
def _weights_repeated(vae, x, K):
    big = x.repeat(K, 1, 1, 1)  # image b of copy k at row k * B + b
    mu, log_var, z = vae.encoder(big)
    q = Normal(mu, torch.exp(0.5 * log_var))
    x_hat = vae.decoder(z)
    log_px = -F.binary_cross_entropy(x_hat, big, reduction="none").flatten(1).sum(1)
    log_w = log_px + STANDARD.log_prob(z).sum(1) - q.log_prob(z).sum(1)
    return log_w.view(K, len(x))


@weights("Bernoulli(probs).log_prob and Independent(Normal, 1) for the densities", True)
def _weights_distributions(vae, x, K):
    mu, log_var, _ = vae.encoder(x)
    q = Independent(Normal(mu, torch.exp(0.5 * log_var)), 1)
    prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    z = q.rsample((K,))
    x_hat = _decoded(vae, z, x)
    log_px = Independent(Bernoulli(probs=x_hat), 3).log_prob(x.expand_as(x_hat))
    return log_px + prior.log_prob(z) - q.log_prob(z)


@weights("log p(z) left out: log p(x | z) - log q(z | x)")
def _weights_no_prior(vae, x, K):
    _, _, q = _posterior(vae, x)
    z = q.rsample((K,))
    return _log_likelihood(_decoded(vae, z, x), x) - q.log_prob(z).sum(-1)


@weights("log q(z | x) added instead of subtracted")
def _weights_q_sign(vae, x, K):
    _, _, q = _posterior(vae, x)
    z = q.rsample((K,))
    x_hat = _decoded(vae, z, x)
    return _log_likelihood(x_hat, x) + STANDARD.log_prob(z).sum(-1) + q.log_prob(z).sum(-1)


@weights("one z, the encoder's, used for all K samples")
def _weights_one_z(vae, x, K):
    mu, log_var, z = vae.encoder(x)
    q = Normal(mu, torch.exp(0.5 * log_var))
    z = z.expand(K, *z.shape)
    x_hat = _decoded(vae, z, x)
    return _log_likelihood(x_hat, x) + STANDARD.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


@weights("the closed-form KL in place of log p(z) - log q(z | x)")
def _weights_closed_form_kl(vae, x, K):
    mu, log_var, q = _posterior(vae, x)
    z = q.rsample((K,))
    kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(-1)
    return _log_likelihood(_decoded(vae, z, x), x) - kl


@weights("log p(x | z) of the decoded mean, vae.decoder(mu), for every sample")
def _weights_decoded_mean(vae, x, K):
    mu, _, q = _posterior(vae, x)
    z = q.rsample((K,))
    log_px = _log_likelihood(vae.decoder(mu).expand(K, *x.shape), x)
    return log_px + STANDARD.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


@weights("z drawn with the variance exp(log_var) as sigma")
def _weights_variance_as_sigma(vae, x, K):
    mu, log_var, q = _posterior(vae, x)
    z = mu + torch.exp(log_var) * torch.randn(K, *mu.shape)
    x_hat = _decoded(vae, z, x)
    return _log_likelihood(x_hat, x) + STANDARD.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


@weights("q's log-density at mu, not at the sample z")
def _weights_q_at_mean(vae, x, K):
    mu, _, q = _posterior(vae, x)
    z = q.rsample((K,))
    x_hat = _decoded(vae, z, x)
    return _log_likelihood(x_hat, x) + STANDARD.log_prob(z).sum(-1) - q.log_prob(mu).sum(-1)


@weights("log p(x | z) as a mean over the pixels (F.binary_cross_entropy's default)")
def _weights_pixel_mean(vae, x, K):
    _, _, q = _posterior(vae, x)
    z = q.rsample((K,))
    x_hat = _decoded(vae, z, x)
    bce = F.binary_cross_entropy(x_hat, x.expand_as(x_hat), reduction="none").flatten(2).mean(-1)
    return -bce + STANDARD.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


@weights("the weights returned as (B, K), one row per image")
def _weights_transposed(vae, x, K):
    return ref("log_importance_weights")(vae, x, K).T


@weights("x.repeat_interleave(K): image b meets the codes of other images")
def _weights_interleaved(vae, x, K):
    _, _, q = _posterior(vae, x)
    z = q.rsample((K,))  # (K, B, d): row k * B + b once flattened
    x_hat = vae.decoder(z.flatten(0, 1))
    images = x.repeat_interleave(K, dim=0)  # row b * K + k
    log_px = -F.binary_cross_entropy(x_hat, images, reduction="none").flatten(1).sum(1)
    return log_px.view(K, len(x)) + STANDARD.log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


# ---------------------------------------------------------------- iwae-bound


def bound(why: str, correct: bool = False):
    return answer("iwae-bound", why, "iwae_bound", correct)


@bound("the reference: torch.logsumexp(log_w, dim=0) - math.log(K)", True)
def _bound_reference(log_w):
    return ref("iwae_bound")(log_w)


@bound("the largest log-weight subtracted by hand before exp, added back after", True)
def _bound_by_hand(log_w):
    top = log_w.max(dim=0).values
    return top + (log_w - top).exp().mean(dim=0).log()


@bound("logsumexp of log_w - log K", True)
def _bound_shifted(log_w):
    return torch.logsumexp(log_w - math.log(len(log_w)), dim=0)


@bound("torch.special.logsumexp, log K as a tensor", True)
def _bound_special(log_w):
    K = torch.tensor(float(log_w.shape[0]), dtype=log_w.dtype)
    return torch.special.logsumexp(log_w, 0) - torch.log(K)


@bound("computed in float64, returned in float64", True)
def _bound_float64(log_w):
    return log_w.double().logsumexp(0) - math.log(log_w.shape[0])


@bound("the mean of the log-weights: the ELBO estimate, not the bound")
def _bound_mean_of_logs(log_w):
    return log_w.mean(0)


@bound("logsumexp without - log K: the log of the sum of the weights")
def _bound_sum(log_w):
    return torch.logsumexp(log_w, dim=0)


@bound("log(mean(exp(log_w))) as written: exp under- and overflows")
def _bound_naive(log_w):
    return log_w.exp().mean(0).log()


@bound("logsumexp over dimension 1, the images")
def _bound_wrong_dim(log_w):
    return torch.logsumexp(log_w, dim=1) - math.log(log_w.shape[1])


@bound("the largest log-weight minus log K")
def _bound_max(log_w):
    return log_w.max(0).values - math.log(log_w.shape[0])


@bound("logsumexp divided by K")
def _bound_divided(log_w):
    return torch.logsumexp(log_w, dim=0) / log_w.shape[0]


@bound("one number: the bound averaged over the batch")
def _bound_batch_mean(log_w):
    return (torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])).mean()


# ---------------------------------------------------------------- linear-interpolation


def path(why: str, correct: bool = False):
    return answer("linear-interpolation", why, "linear_interpolation", correct)


def _alpha_like(x0, steps: int = 11, start: float = 0.0, end: float = 1.0):
    return torch.linspace(start, end, steps, dtype=x0.dtype).view(-1, *[1] * x0.dim())


@path("the reference: torch.linspace(0, 1, 11) viewed as (11, 1, ..., 1)", True)
def _path_reference(x0, x1):
    return ref("linear_interpolation")(x0, x1)


@path("x0 + alpha * (x1 - x0)", True)
def _path_difference(x0, x1):
    return x0 + _alpha_like(x0) * (x1 - x0)


@path("torch.lerp(x0, x1, alpha)", True)
def _path_lerp(x0, x1):
    return torch.lerp(x0.expand(11, *x0.shape), x1.expand(11, *x1.shape), _alpha_like(x0))


@path("((10 - k) * x0 + k * x1) / 10 for k = 0, ..., 10", True)
def _path_integer_weights(x0, x1):
    k = torch.arange(11, dtype=x0.dtype).view(-1, *[1] * x0.dim())
    return ((10 - k) * x0 + k * x1) / 10


@path("a loop over the 11 values of alpha, stacked along dimension 0", True)
def _path_loop(x0, x1):
    return torch.stack([a * x1 + (1 - a) * x0 for a in torch.linspace(0, 1, 11).tolist()])


@path("alpha in float64 whatever the inputs' dtype, indexed with None", True)
def _path_float64_alpha(x0, x1):
    alpha = torch.arange(11, dtype=torch.float64) / 10
    alpha = alpha[(...,) + (None,) * x0.dim()]
    return alpha * x1 + (1 - alpha) * x0


@path("alpha runs from 1 to 0: the path goes from x1 to x0")
def _path_reversed(x0, x1):
    return _alpha_like(x0, start=1.0, end=0.0) * x1 + (1 - _alpha_like(x0, start=1.0, end=0.0)) * x0


@path("10 values of alpha: 10 points, steps of 1/9")
def _path_ten(x0, x1):
    return _alpha_like(x0, steps=10) * x1 + (1 - _alpha_like(x0, steps=10)) * x0


@path("alpha = k / 11: the path stops short of x1")
def _path_eleventh(x0, x1):
    alpha = (torch.arange(11, dtype=x0.dtype) / 11).view(-1, *[1] * x0.dim())
    return alpha * x1 + (1 - alpha) * x0


@path("the points stacked along the last dimension")
def _path_stacked_last(x0, x1):
    return torch.stack([a * x1 + (1 - a) * x0 for a in torch.linspace(0, 1, 11)], dim=-1)


@path("torch.cat instead of torch.stack: the points joined along the first dimension")
def _path_concatenated(x0, x1):
    return torch.cat([a * x1 + (1 - a) * x0 for a in torch.linspace(0, 1, 11)])


@path("returns a Python list of the 11 points")
def _path_list(x0, x1):
    return [a * x1 + (1 - a) * x0 for a in torch.linspace(0, 1, 11)]


@path("alpha viewed as (11, 1): works for latent codes, not for images")
def _path_codes_only(x0, x1):
    alpha = torch.linspace(0, 1, 11).view(-1, 1)
    return alpha * x1 + (1 - alpha) * x0


@path("x0 + alpha * x1: the weight of x0 never decreases")
def _path_no_one_minus(x0, x1):
    return x0 + _alpha_like(x0) * x1


@path("squeezes the result: size-1 dimensions disappear")
def _path_squeezed(x0, x1):
    return (_alpha_like(x0) * x1 + (1 - _alpha_like(x0)) * x0).squeeze()


# ---------------------------------------------------------------- latent-interpolation


def decoded(why: str, correct: bool = False):
    return answer("latent-interpolation", why, "latent_linear_interpolation", correct)


@decoded("the reference: vae.decoder(linear_interpolation(z0, z1))", True)
def _decoded_reference(z0, z1, vae):
    return vae.decoder(ref("linear_interpolation")(z0, z1))


@decoded("the codes interpolated with torch.lerp, decoded under torch.no_grad()", True)
def _decoded_lerp(z0, z1, vae):
    with torch.no_grad():
        return vae.decoder(_path_lerp(z0, z1))


@decoded("each code decoded on its own in a loop, the images concatenated", True)
def _decoded_loop(z0, z1, vae):
    return torch.cat([vae.decoder(z[None]) for z in ref("linear_interpolation")(z0, z1)])


@decoded("the codes as ((10 - k) z0 + k z1) / 10, the images detached", True)
def _decoded_integer_weights(z0, z1, vae):
    return vae.decoder(_path_integer_weights(z0, z1)).detach()


@decoded("decodes z0 and z1, then mixes the two images pixel by pixel")
def _decoded_mixed_pixels(z0, z1, vae):
    ends = vae.decoder(torch.stack([z0, z1]))
    return ref("linear_interpolation")(ends[0], ends[1])


@decoded("10 codes: steps of 1/9")
def _decoded_ten(z0, z1, vae):
    return vae.decoder(_path_ten(z0, z1))


@decoded("from z1 to z0: the arguments swapped")
def _decoded_reversed(z0, z1, vae):
    return vae.decoder(ref("linear_interpolation")(z1, z0))


@decoded("a great circle (slerp) between the codes instead of a straight line")
def _decoded_slerp(z0, z1, vae):
    omega = torch.arccos((z0 @ z1 / (z0.norm() * z1.norm())).clamp(-1, 1))
    alpha = torch.linspace(0, 1, 11).view(-1, 1)
    codes = (torch.sin((1 - alpha) * omega) * z0 + torch.sin(alpha * omega) * z1) / torch.sin(omega)
    return vae.decoder(codes)


@decoded("returns the interpolated codes without decoding them")
def _decoded_codes(z0, z1, vae):
    return ref("linear_interpolation")(z0, z1)


@decoded("each code decoded on its own, the batches of one stacked: shape (11, 1, 1, 28, 28)")
def _decoded_stacked(z0, z1, vae):
    return torch.stack([vae.decoder(z[None]) for z in ref("linear_interpolation")(z0, z1)])


@decoded("calls vae(codes), the whole VAE, instead of vae.decoder")
def _decoded_forward(z0, z1, vae):
    return vae(ref("linear_interpolation")(z0, z1))


@decoded("the codes normalised to unit length before they are interpolated")
def _decoded_normalised(z0, z1, vae):
    return vae.decoder(ref("linear_interpolation")(z0 / z0.norm(), z1 / z1.norm()))


# ---------------------------------------------------------------- the tests


def marked(variant: variants.Variant):
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


def sampling_caught(variant: variants.Variant, seeds: int = variants.POWER_SEEDS) -> int:
    """Under how many of `seeds` secrets the conv-vae item (check_conv_vae) fails the variant.

    The judge draws the sampler's test images and every sample itself, from its own seed: the
    statistics depend on the secret through the judge's seed and through the model's
    initialisation. So the kernel's evidence is collected under 3 secrets (3 initialisations on
    their own inputs, 6 exports) and each of the `seeds` secrets judges one of them (secret n
    judges collection n % 3 with secret n's judge seed, as the grader derives it). Running the
    whole item under 300 secrets, 600 exports, would take most of an hour here."""
    statements = variants.test_cells(LAB)[variant.item]
    index = next(i for i, s in enumerate(statements) if s.check is checks.check_conv_vae)
    statement = statements[index]
    names = {**variants.checks_namespace(LAB), **variant.names()}
    answers = tuple(eval(source, names) for source in statement.answers)  # noqa: S307
    check, collected, caught = statement.check, [], 0
    for n in range(3):
        secret = variants.secret(n)
        inputs = check.make_inputs(
            verdict.derive_seed(secret, variant.item, index, "inputs"), statement.params
        )
        seed = verdict.derive_seed(secret, variant.item, index, "collect")
        found = check.collect(answers, inputs, statement.params, seed)
        collected.append((inputs, evidence.admit(evidence.to_evidence(found))))
    for n in range(seeds):
        inputs, found = collected[n % 3]
        seed = verdict.derive_seed(variants.secret(n), variant.item, index, "judge")
        try:  # a copy: the judge zeroes its programs' parameters
            check.verdict(inputs, copy.deepcopy(found), statement.params, seed)
        except checks.CheckFailed:
            caught += 1
    return caught


def power(variant: variants.Variant) -> int:
    return sampling_caught(variant) if variant.item == "conv-vae" else cat.caught(variant)


def powered(variant: variants.Variant):
    """The model item's 300 judgements of a full exported model run ~20 s each, the log-weights
    item's (the judge's own 40 000 draws through a 784-pixel decoder) a few seconds: slow."""
    marks = [pytest.mark.slow] if variant.item in ("conv-vae", "log-weights") else []
    return pytest.param(variant, marks=marks, id=str(variant))


STATISTICAL_MISTAKES = [powered(v) for v in cat.mistakes if v.statistical]
STATISTICAL_CORRECT = [powered(v) for v in cat.corrects if v.statistical]


@pytest.mark.parametrize("variant", STATISTICAL_MISTAKES)
def test_statistical_mistakes_caught_in_299_of_300(variant: variants.Variant) -> None:
    caught = power(variant)
    assert caught >= variants.POWER_MIN_CAUGHT, f"{variant}: caught under {caught} of 300"


@pytest.mark.parametrize("variant", STATISTICAL_CORRECT)
def test_statistical_correct_pass_300_of_300(variant: variants.Variant) -> None:
    assert power(variant) == 0, f"{variant} lost its item under some secret"
