# The partly correct submission of labs/02-kl-vae.md: every answer cell holds the reference
# solution except the ones below, which hold typical student mistakes. Expected: the checks
# vae-methods (2), kl-weight-manager (2) and interpolate (2) fail; everything else passes.
# ruff: noqa: F821  (the cells run in the notebook, where torch, nn and Tensor are imported)

# %% answer-VAE
class VAE(nn.Module):
    """A VAE built from an encoder x -> (mu, log_var) and a decoder z -> x_hat."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, device: torch.device):
        super().__init__()
        self.encoder = encoder.to(device)
        self.decoder = decoder.to(device)
        self.device = device

    def reparameterize(self, mu: Tensor, log_var: Tensor) -> Tensor:
        std = torch.exp(0.5 * log_var)
        return mu + std * torch.randn_like(std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, log_var = self.encoder(x)
        z = self.reparameterize(mu, log_var)
        return self.decoder(z), mu, log_var

    def encode(self, x: Tensor) -> Tensor:
        # forgot torch.no_grad(): the result still tracks gradients
        mu, log_var = self.encoder(x)
        return mu

    def reconstruct(self, z: Tensor) -> Tensor:
        with torch.no_grad():
            return self.decoder(z)


# %% answer-KLWeightManager
class KLWeightManager:
    """The KL weight of an epoch: 0 during warm-up, then linear up to 1, then 1."""

    def __init__(self, warm_up_rounds: int, annealing_rounds: int):
        self.warm_up_rounds = warm_up_rounds
        self.annealing_rounds = annealing_rounds

    def __call__(self, epoch: int) -> float:
        # counts epochs from 1: every weight comes one epoch early
        if epoch + 1 <= self.warm_up_rounds:
            return 0.0
        return min(1.0, (epoch + 1 - self.warm_up_rounds) / self.annealing_rounds)


# %% answer-interpolate_linear
def interpolate_linear(x: Tensor, y: Tensor, steps: int) -> Tensor:
    """`steps` equally spaced points from x to y (both included), shape (steps, *x.shape)."""
    # weights 0, 1/steps, ..., (steps-1)/steps: the path stops one step short of y
    t = torch.arange(steps, device=x.device) / steps
    return x + t.view(steps, *([1] * x.dim())) * (y - x)
