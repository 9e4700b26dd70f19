# ruff: noqa: F821 (nn, torch and F come from the notebook's first cell)
# The partly correct submission of labs/03-conv-vae.md: every answer cell holds the reference
# solution except the ones below, which hold typical student mistakes.

# %% answer-ConvVAE
class ConvVAE(nn.Module):
    """A VAE with a convolutional encoder and a transposed-convolutional Bernoulli decoder."""

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
        """A sample of N(mu, exp(log_var)) per element, differentiable in mu and log_var."""
        std = torch.exp(log_var)  # mistake: this is the variance; sigma is exp(log_var / 2)
        return mu + std * torch.randn_like(std)

    def encoder(self, x):
        """(mu, log_var, z) for images x of shape (B, 1, 28, 28), with z ~ q(z | x)."""
        h = F.relu(self.conv2(F.relu(self.conv1(x)))).flatten(1)
        mu, log_var = self.fc_mu(h), self.fc_log_var(h)
        return mu, log_var, self.reparameterize(mu, log_var)

    def decoder(self, z):
        """Bernoulli probabilities of shape (B, 1, 28, 28) for codes z of shape (B, latent_features)."""
        h = F.relu(self.fc_up(z)).view(-1, 32, 7, 7)
        return torch.sigmoid(self.deconv2(F.relu(self.deconv1(h))))

    def forward(self, x):
        """(x_hat, mu, log_var): the decoded posterior sample and the posterior's parameters."""
        mu, log_var, z = self.encoder(x)
        return self.decoder(z), mu, log_var


# %% answer-linear_interpolation
def linear_interpolation(x0, x1):
    """alpha * x1 + (1 - alpha) * x0 for alpha = 0, 0.1, ..., 1: shape (11, *x0.shape)."""
    # mistake: 10 values of alpha, so the step is 1/9 and there are 10 points, not 11
    alpha = torch.linspace(0, 1, 10, device=x0.device).view(-1, *[1] * x0.dim())
    return alpha * x1 + (1 - alpha) * x0
