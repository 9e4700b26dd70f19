"""The held-out part of MNIST's test set: the grader scores trained models on it, unseen.

A graded kernel sees `public_copy`, a data directory whose test files hold only the first
PUBLIC_TEST images: a model cannot memorise, and a notebook cannot read, the last HELD_OUT.
Judges of trained models evaluate the student's exported model on those (read from the full
data directory, which only the grader, or a student's own self-check, can see).
"""

import functools
import os
import shutil
from pathlib import Path

import torch

from dgmlab.data import BINARIZE_SEED, FILES, binarize, data_dir, raw_dir
from dgmlab.mnist_format import array_to_idx, idx_to_array

HELD_OUT = 2000
PUBLIC_TEST = 10_000 - HELD_OUT


def held_out_test_images() -> torch.Tensor:
    """The HELD_OUT images, (2000, 28, 28) floats in [0, 1]; a new tensor every call."""
    return _held_out()[0].float().div(255)


def held_out_binarized_images() -> torch.Tensor:
    """The HELD_OUT images binarised once and for all (`binarize` with BINARIZE_SEED), as the
    labs with a Bernoulli likelihood score their test images; a new tensor every call."""
    return binarize(held_out_test_images(), seed=BINARIZE_SEED)


def held_out_test_labels() -> torch.Tensor:
    """The labels of the held-out images."""
    return _held_out()[1].clone()


@functools.cache
def _held_out() -> tuple[torch.Tensor, torch.Tensor]:
    raw = raw_dir(data_dir())
    images = idx_to_array((raw / "t10k-images-idx3-ubyte").read_bytes())
    labels = idx_to_array((raw / "t10k-labels-idx1-ubyte").read_bytes())
    if len(images) != 10_000:
        raise FileNotFoundError("the held-out test images are not in this data directory")
    return torch.from_numpy(images[PUBLIC_TEST:].copy()), torch.from_numpy(
        labels[PUBLIC_TEST:].copy()
    )


def public_copy(target: Path) -> Path:
    """A data directory like data_dir() but for the held-out test images; made once."""
    source, raw = raw_dir(data_dir()), raw_dir(target)
    done = raw / ".complete"
    if done.is_file():
        return target
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name.startswith("train"):
            _link_or_copy(source / name, raw / name)
        else:  # the test files, cut after PUBLIC_TEST records
            records = idx_to_array((source / name).read_bytes())[:PUBLIC_TEST]
            (raw / name).write_bytes(array_to_idx(records))
    done.touch()
    for path in (target, target / "MNIST", raw):
        path.chmod(0o755)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    target.chmod(0o644)
