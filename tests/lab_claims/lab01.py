"""What lab 01's text says of its executed run (tests/lab_claims/__init__.py).

Part 1 prints the training throughput at one image and at 128 images per step. Part 6 prints, for a CAE before training, the mean square of the images and of the activations
after each of its five ReLUs, and the spread of its output across images, once with PyTorch's
default initialisation and once with `he_init`; part 7 prints the mean squared error per pixel
of the noisy input and of each denoiser's output on the same noisy test images.
"""

from __future__ import annotations

import re

from nbformat import NotebookNode

from tests.lab_claims import number_after, printed


def scales(text: str, name: str) -> tuple[list[float], float]:
    """The mean squares and the output's spread printed on the line of initialisation `name`."""
    found = re.search(
        rf"^{re.escape(name)}\s+mean squares: ([0-9., ]+); output spread across images: "
        r"([0-9.]+)$",
        text,
        re.MULTILINE,
    )
    assert found, f"the executed solution never printed the activation scales of {name!r}"
    values = [float(v) for v in found.group(1).split(",")]
    assert len(values) == 6, f"{name}: expected the images' and five ReLUs' mean squares: {values}"
    return values, float(found.group(2))


def check_initialisation(text: str) -> list[str]:
    default, default_spread = scales(text, "default")
    he, he_spread = scales(text, "he_init")
    # "the mean square falls from about 0.1 for the images to less than a hundredth in the
    # decoder ... its spread is a few ten-thousandths"
    assert 0.05 < default[0] < 0.2, f"the images' mean square is {default[0]}, not about 0.1"
    assert max(default[4:]) < 0.01, f"default init, decoder's mean squares {default[4:]}"
    assert default_spread < 0.001, f"default init, output spread {default_spread}"
    # "with he_init the activations stay between a few hundredths and a few units"
    assert all(0.01 < v < 5 for v in he[1:]), f"he_init, mean squares {he[1:]}"
    # "the output's spread is dozens to hundreds of times larger"
    assert he_spread > 20 * default_spread, (
        f"he_init's output spread {he_spread} is not dozens of times default's {default_spread}"
    )
    return ["default init: activations vanish in the decoder", "he_init: output 20x more spread"]


def check_denoisers(text: str) -> list[str]:
    label = "mean squared error per pixel"
    noisy = number_after(text, f"noisy input      {label}")
    fc = number_after(text, f"fully connected  {label}")
    conv = number_after(text, f"convolutional    {label}")
    # "the fully connected one leaves about half of the noisy input's error, the convolutional
    # one less than two fifths of it"
    assert 0.35 * noisy < fc < 0.6 * noisy, f"fully connected {fc}, noisy input {noisy}"
    assert conv < 0.4 * noisy, f"convolutional {conv} is not below 2/5 of noisy input's {noisy}"
    # "leaves at least a quarter less error than the fully connected one"
    assert conv < 0.75 * fc, f"convolutional {conv} against fully connected {fc}"
    return ["FC leaves about half the noisy error", "conv under two fifths", "conv 25% below FC"]


def check_batches(text: str) -> list[str]:
    rates = {}
    for size in (1, 128):
        found = re.search(rf"batch of +{size}: +([0-9,.]+) images/s", text)
        assert found, f"the executed solution never printed the rate of a batch of {size}"
        rates[size] = float(found.group(1).replace(",", ""))
    # "One image per step is tens of times slower"
    assert rates[128] > 20 * rates[1], f"images per second: {rates}"
    return ["one image per step is tens of times slower"]


def check(nb: NotebookNode) -> list[str]:
    text = printed(nb)
    return check_batches(text) + check_initialisation(text) + check_denoisers(text)
