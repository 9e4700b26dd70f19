# The partly correct submission of labs/04-elbo-estimators.md: every answer cell holds the
# reference solution except the ones below, which hold typical student mistakes. Expected:
# mc-latent-loss (3), reshape-layer (1), mix-images (2) fail, and trained-vaes (3), because the
# Monte-Carlo run trains with the broken loss (its scales shrink to 0: the grader scores it at
# ~100 nats per held-out image); 12 of the 21 autograded points. The vae check passes: given the
# student's own loss functions, it runs forward with the references in their place.
# ruff: noqa: F821  (the cells run in the notebook, where torch, nn, Tensor and VAE are defined)

# %% answer-mc_latent_loss
def mc_latent_loss(z: Tensor, eps: Tensor, scale: Tensor) -> Tensor:
    """One-sample estimate of log q(z|x) - log p(z), summed over dimensions, batch mean."""
    # forgot the -log(scale) term: the entropy of q is gone
    return (z.pow(2) / 2 - eps.pow(2) / 2).sum(1).mean()

# %% answer-ReshapeLayer
class ReshapeLayer(nn.Module):
    """Reshapes a batch (N, prod(view_shape)) to (N, *view_shape)."""

    def __init__(self, view_shape: tuple[int, ...]):
        super().__init__()
        self.view_shape = tuple(view_shape)

    def forward(self, x: Tensor) -> Tensor:
        # no check: rows of the wrong length silently change the batch size
        return x.view(-1, *self.view_shape)

# %% answer-mix_images
@torch.no_grad()
def mix_images(model: VAE, x1: Tensor, x2: Tensor, alpha: float) -> Tensor:
    """[x1, decoded z1, decoded (1 - alpha) z1 + alpha z2, decoded z2, x2], z = the means."""
    z1, z2 = model.encoder(torch.stack([x1, x2]))[0]
    # alpha the wrong way round: alpha = 0 shows the second digit
    decoded = model.decoder(torch.stack([z1, alpha * z1 + (1 - alpha) * z2, z2]))
    return torch.cat([x1[None], decoded, x2[None]])
