"""Lab 03 (conv VAE): what its text says of the executed solution's numbers and figures.

The lab prints the numbers behind its claims: the grey-level floor, the test negative ELBO in
nats and bits per dimension, the importance-weighted bounds for K = 1 ... 1000 and the ELBO gap,
and the 2-D codes' coverage of the prior; the decoded grid is read back from its figure and
classified by a small MLP trained in the test. Each claim is a sentence of the lab's text.
"""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from nbformat import NotebookNode
from PIL import Image
from torch import nn

from tests.lab_claims import number_after, printed

PIXELS = 28 * 28
SAMPLE_COUNTS = (1, 10, 100, 1000)


def _bits(nats: float) -> float:
    return nats / (PIXELS * math.log(2))


def _units(text: str) -> None:
    """Grey levels cost ~45 nats per image against themselves; bits per dimension are nats / (784
    ln 2); the 16-dimensional model's test -ELBO after two epochs is about 112 nats."""
    floor = number_after(text, "grey test images scored against themselves:")
    assert 40 < floor < 50, f"the grey-level floor is {floor} nats per image"
    epochs = re.findall(
        r"epoch (\d): test -ELBO ([0-9.]+) = .*?\(([0-9.]+) bits per dimension\)", text
    )
    assert [e[0] for e in epochs] == ["1", "2"], f"training printed {epochs}"
    for _, nats, bits in epochs:
        assert abs(_bits(float(nats)) - float(bits)) < 1e-3 + _bits(0.05), (nats, bits)
    last = float(epochs[-1][1])
    assert 105 < last < 120, f"the text expects a test -ELBO of about 112 nats, got {last}"


def _importance_sampling(text: str) -> None:
    """-L_1 is the ELBO (within the noise of evaluate's one sample per image); -L_K falls as K
    grows, by less with every tenfold K; the ELBO gap is several nats."""
    nelbo = number_after(text, "-ELBO (closed-form KL):")
    losses = [number_after(text, f"-L_{K}:") for K in SAMPLE_COUNTS]
    # evaluate draws one z per image for 100 images: its reconstruction term's sd is ~0.3 nats
    assert abs(losses[0] - nelbo) < 2.0, f"-L_1 = {losses[0]}, -ELBO = {nelbo}"
    steps = [a - b for a, b in zip(losses, losses[1:], strict=False)]
    assert all(step > 0 for step in steps), f"-L_K should fall as K grows: {losses}"
    assert steps[0] > steps[1] > steps[2], f"each tenfold K should buy less: {steps}"
    gap = number_after(text, "ELBO gap: -ELBO - (-L_1000) =")
    assert abs(gap - (nelbo - losses[-1])) < 0.02, (gap, nelbo, losses)
    assert gap > 2, f"the text calls the ELBO gap several nats, got {gap}"
    for K, loss in zip(SAMPLE_COUNTS, losses, strict=True):
        bits = number_after(text, f"-L_{K}: {loss:.2f} nats per image,")
        assert abs(bits - _bits(loss)) < 1e-4 + _bits(0.005), (K, loss, bits)


def _grid_figure(nb: NotebookNode) -> bytes:
    """The PNG of the decoded 2-D latent space, as the executed solution drew it (a graded run
    draws its figures into the notebook too: the sandbox's matplotlib backend is the inline one)."""
    for cell in nb.cells:
        if cell.cell_type == "code" and 'title="decoded 2-D latent space"' in cell.source:
            for output in cell.get("outputs", []):
                if "image/png" in output.get("data", {}):
                    return base64.b64decode(output["data"]["image/png"])
            raise AssertionError("the cell of the decoded 2-D latent space drew no figure")
    raise AssertionError("the executed solution has no cell drawing the decoded 2-D latent space")


def _grid_images(png: bytes, side: int = 15) -> torch.Tensor:
    """The side x side decoded images of show()'s grid (torchvision's make_grid: 28-pixel images,
    2 pixels of white between them), cut out of the figure and brought back to 28 x 28."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) / 255
    dark = torch.from_numpy(image) < 0.5  # each image's black background; the title is thin
    rows = torch.nonzero(dark.float().mean(1) > 0.3).flatten()
    cols = torch.nonzero(dark.float().mean(0) > 0.3).flatten()
    top, left = rows.min().item(), cols.min().item()
    pitch = 30 * side - 2  # make_grid's pixels from the first image's edge to the last's
    scale_y = (rows.max().item() + 1 - top) / pitch
    scale_x = (cols.max().item() + 1 - left) / pitch
    pixels = torch.from_numpy(image)
    cells = []
    for i in range(side):
        for j in range(side):
            y, x = top + 30 * i * scale_y, left + 30 * j * scale_x
            crop = pixels[round(y) : round(y + 28 * scale_y), round(x) : round(x + 28 * scale_x)]
            cells.append(F.interpolate(crop[None, None], size=(28, 28), mode="area")[0])
    return torch.stack(cells)


def _digit_classifier() -> nn.Module:
    """A small MLP trained here on MNIST's grey training images (about 97% on the test set)."""
    from torchvision.datasets import MNIST

    from dgmlab.data import data_dir

    train = MNIST(data_dir(), train=True, download=True)
    images, labels = train.data.float().div(255).unsqueeze(1), train.targets
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(3):
            for index in torch.randperm(len(images)).split(128):
                loss = F.cross_entropy(model(images[index]), labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


def _grid(nb: NotebookNode, text: str) -> None:
    """The 2-D codes cover the prior's bulk (nine draws in ten or more have a code within 0.2),
    and the decoded grid shows at least eight digits: a classifier trained here names at least
    8 digits, each for 2 or more of the 225 decoded images with probability 0.5 or more (more
    than all other digits together). Blurred in-between shapes, which it names with less, do not
    count: the grid of the lab's earlier settings (lr 1e-3, batches of 128) shows 5 such digits,
    0, 4, 7, 8, 9, where counting every image would find 8."""
    nelbo = number_after(text, "test -ELBO with 2 latent dimensions:")
    assert 150 < nelbo < 180, f"the text expects about 165 nats with 2 latent dimensions: {nelbo}"
    covered = number_after(text, "prior draws with a test code within 0.2:")
    assert covered >= 90, f"the codes should cover the prior's bulk: {covered}% of its draws"
    figure = _grid_figure(nb)
    classifier = _digit_classifier()
    with torch.no_grad():
        confidence, digits = classifier(_grid_images(figure)).softmax(1).max(1)
    counts = torch.bincount(digits[confidence >= 0.5], minlength=10).tolist()
    shown = [d for d, n in enumerate(counts) if n >= 2]
    assert len(shown) >= 8, f"the decoded grid should show at least 8 digits: {counts}"


def check(nb: NotebookNode) -> list[str]:
    """Assert lab 03's claims on its executed solution; the names of the claims checked."""
    text = printed(nb)
    _units(text)
    _importance_sampling(text)
    _grid(nb, text)
    return ["units", "importance_sampling", "grid"]
