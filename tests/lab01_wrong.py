"""Reference answers of lab 01 and the wrong answers that its checks must reject.

The references mirror the solution cells of `labs/01-autoencoders.md`; each wrong answer is a
small, plausible student mistake named after what it gets wrong.
"""

import math

import torch
from torch import nn


class AE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid()
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))


class AddGaussianNoise:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, x):
        return (x + self.mean + self.std * torch.randn_like(x)).clamp(0, 1)


class DAE(nn.Module):
    def __init__(self, autoencoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x, noise_factor=0.5):
        return self.autoencoder(x + noise_factor * torch.randn_like(x))


class CAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14 -> 7
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7 -> 3
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 3, stride=2),
            nn.ReLU(),  # 3 -> 7
            nn.ConvTranspose2d(32, 16, 2, stride=2),
            nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(16, 1, 2, stride=2),
            nn.Sigmoid(),  # 14 -> 28
        )

    def forward(self, x):
        return self.decoder(self.encoder(x))


def he_init(model):
    for layer in model.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = layer.in_channels * math.prod(layer.kernel_size)
            if isinstance(layer, nn.ConvTranspose2d):
                fan_in /= math.prod(layer.stride)
            nn.init.normal_(layer.weight, std=math.sqrt(2 / fan_in))
            nn.init.zeros_(layer.bias)
    return model


@torch.no_grad()
def fc_denoise(fc_dae, noisy):
    return fc_dae.autoencoder(noisy.flatten(1)).view_as(noisy)


def train(model, x, epochs, corrupt=None, batch_size=128, lr=1e-3):
    """The lab's training loop, without its progress bar."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), device=x.device).split(batch_size):
            clean = x[idx]
            inputs = clean if corrupt is None else corrupt(clean)
            loss = nn.functional.binary_cross_entropy(model(inputs), clean)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


# --- AE ------------------------------------------------------------------------------------


class AENoSigmoid(AE):
    def __init__(self):
        super().__init__()
        self.decoder[-1] = nn.Identity()


class AEWideCode(AE):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU())


class AEDoubleSigmoid(AE):
    """A second sigmoid after the decoder's: outputs stay in [0, 1], but only in [0.5, 0.73]."""

    def forward(self, x):
        return torch.sigmoid(self.decoder(self.encoder(x)))


# --- AddGaussianNoise -----------------------------------------------------------------------


class NoiseUniform(AddGaussianNoise):
    def __call__(self, x):
        uniform = (torch.rand_like(x) * 2 - 1) * 3**0.5  # unit variance, but no Gaussian tails
        return (x + self.mean + self.std * uniform).clamp(0, 1)


class NoiseSharedAcrossBatch(AddGaussianNoise):
    def __call__(self, x):
        noise = torch.randn(x.shape[1:], device=x.device)  # one noise image for the whole batch
        return (x + self.mean + self.std * noise).clamp(0, 1)


class NoiseNotClipped(AddGaussianNoise):
    def __call__(self, x):
        return x + self.mean + self.std * torch.randn_like(x)


class NoiseClippedToPlusMinusOne(AddGaussianNoise):
    def __call__(self, x):
        return (x + self.mean + self.std * torch.randn_like(x)).clamp(-1, 1)


class NoiseInPlace(AddGaussianNoise):
    def __call__(self, x):
        return x.add_(self.mean + self.std * torch.randn_like(x)).clamp_(0, 1)


class NoiseIgnoresStd(AddGaussianNoise):
    def __call__(self, x):
        return (x + self.mean + torch.randn_like(x)).clamp(0, 1)


class NoiseIgnoresMean(AddGaussianNoise):
    def __call__(self, x):
        return (x + self.std * torch.randn_like(x)).clamp(0, 1)


class NoiseStd2(AddGaussianNoise):
    """The variance taken for the standard deviation: scale by std**2."""

    def __call__(self, x):
        return (x + self.mean + self.std**2 * torch.randn_like(x)).clamp(0, 1)


class NoiseFrozen(AddGaussianNoise):
    """One noise tensor drawn on the first call and reused on every later call."""

    def __call__(self, x):
        if not hasattr(self, "noise"):
            self.noise = torch.randn_like(x)
        return (x + self.mean + self.std * self.noise).clamp(0, 1)


# --- DAE ------------------------------------------------------------------------------------


class DAENotScaled(DAE):
    def forward(self, x, noise_factor=0.5):
        return self.autoencoder(x + torch.randn_like(x))


class DAEUniform(DAE):
    def forward(self, x, noise_factor=0.5):
        return self.autoencoder(x + noise_factor * (torch.rand_like(x) * 2 - 1) * 3**0.5)


class DAESharedAcrossBatch(DAE):
    def forward(self, x, noise_factor=0.5):
        return self.autoencoder(x + noise_factor * torch.randn(x.shape[1:], device=x.device))


class DAECleanInput(DAE):
    def forward(self, x, noise_factor=0.5):
        return self.autoencoder(x)


class DAENoiseAfter(DAE):
    def forward(self, x, noise_factor=0.5):
        return self.autoencoder(x) + noise_factor * torch.randn_like(x)


class DAEInPlace(DAE):
    def forward(self, x, noise_factor=0.5):
        return self.autoencoder(x.add_(noise_factor * torch.randn_like(x)))


class DAEClipped(DAE):
    def forward(self, x, noise_factor=0.5):
        return self.autoencoder((x + noise_factor * torch.randn_like(x)).clamp(0, 1))


class DAENotRegistered(DAE):
    def __init__(self, autoencoder):
        nn.Module.__init__(self)
        self.parts = [autoencoder]  # a plain list hides the autoencoder's parameters

    def forward(self, x, noise_factor=0.5):
        return self.parts[0](x + noise_factor * torch.randn_like(x))


# --- CAE ------------------------------------------------------------------------------------


class CAE26(CAE):
    """Crops a border pixel, as a student might to silence a size mismatch."""

    def forward(self, x):
        return super().forward(x)[..., 1:-1, 1:-1]


class CAETwoChannels(CAE):
    def __init__(self):
        super().__init__()
        self.decoder[4] = nn.ConvTranspose2d(16, 2, 2, stride=2)


class CAENoSigmoid(CAE):
    def __init__(self):
        super().__init__()
        self.decoder[5] = nn.Identity()


class CAEWide(CAE):
    """A wide decoder: 130,017 parameters, more than a quarter of the AE's."""

    def __init__(self):
        super().__init__()
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(64, 128, 3, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 2, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 2, stride=2),
            nn.Sigmoid(),
        )
