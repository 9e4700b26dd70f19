# ruff: noqa: F821, F841
# The partly correct submission of labs/01-autoencoders.md for the demo: every answer cell holds
# the reference solution except these two, which hold typical mistakes.

# %% answer-AddGaussianNoise
class AddGaussianNoise:
    def __init__(self, mean: float, std: float):
        self.mean = mean
        self.std = std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # forgot to clip back into [0, 1]
        return x + self.mean + self.std * torch.randn_like(x)

# %% answer-DAE
class DAE(nn.Module):
    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor, noise_factor: float = 0.5) -> torch.Tensor:
        noisy = x + noise_factor * torch.randn_like(x)
        return self.autoencoder(x)  # passes the clean input, not the noisy one
