# ruff: noqa: F821, F841
# The partly correct submission of labs/01-autoencoders.md for the demo: every answer cell holds
# the reference solution except these two, which hold typical mistakes. The noise forgets its
# mean: at mean 0, as in the visible test and in training, it is the reference's, so only the
# hidden test (mean 0.05) fails it, and the denoiser trains exactly as the reference's does and
# clears both of its bars whatever the grading secret. Expected: 11 of the 17 automatic points
# (AE 2, CAE 2, denoiser 3 + 2, fc_denoise 2; AddGaussianNoise and DAE 0).

# %% answer-AddGaussianNoise
class AddGaussianNoise:
    def __init__(self, mean: float, std: float):
        self.mean = mean
        self.std = std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # forgot the mean: standard deviation std around x, whatever mean says
        return (x + self.std * torch.randn_like(x)).clamp(0, 1)


# %% answer-DAE
class DAE(nn.Module):
    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor, noise_factor: float = 0.5) -> torch.Tensor:
        noisy = x + noise_factor * torch.randn_like(x)
        return self.autoencoder(x)  # passes the clean input, not the noisy one
