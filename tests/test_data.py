"""Fetching (local mirror), verification, atomic placement and loading of datasets."""
import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST

from clrepro import data
from conftest import SHARED_MNIST
from mnist_format import FILES, IMAGE_MAGIC, LABEL_MAGIC, idx_bytes, make_arrays

GZ = sorted(FILES.values())


def copy_mirror(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def assert_clean(folder: Path, absent: str | None = None):
    names = [p.name for p in folder.iterdir()]
    assert not [n for n in names if n.startswith(".")], f"leftover temporary entries: {names}"
    if absent is not None:
        assert absent not in names and Path(absent).stem not in names


def test_tiny_mnist_is_real_idx_format(tiny_mnist):
    """The helper itself: gzip'd, big-endian magic and dims, pixels after the header."""
    mirror, checksums = tiny_mnist
    assert sorted(checksums) == GZ
    raw = gzip.decompress((mirror / FILES["train_images"]).read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03" and int.from_bytes(raw[:4], "big") == IMAGE_MAGIC
    assert [int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12)] == [300, 28, 28]
    assert len(raw) == 16 + 300 * 28 * 28
    lab = gzip.decompress((mirror / FILES["test_labels"]).read_bytes())
    assert lab[:4] == b"\x00\x00\x08\x01" and int.from_bytes(lab[:4], "big") == LABEL_MAGIC
    assert int.from_bytes(lab[4:8], "big") == 100 and len(lab) == 8 + 100
    assert np.bincount(np.frombuffer(lab[8:], np.uint8), minlength=10).tolist() == [10] * 10
    for fname, digest in checksums.items():
        assert md5(mirror / fname) == digest


def test_fetch_from_mirror_copies_verifies_unpacks_and_loads(tiny_mnist, tmp_path):
    mirror, checksums = tiny_mnist
    root = tmp_path / "data"
    paths = data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)
    raw = root / "MNIST" / "raw"
    assert raw == data.raw_folder(root, "mnist")
    # every .gz and its unpacked file, in place
    assert sorted(p.name for p in raw.iterdir()) == sorted(GZ + [f[:-3] for f in GZ])
    assert set(paths) == set(raw.iterdir())
    arrays = make_arrays(30, 10, 0)
    for key, fname in FILES.items():
        assert md5(raw / fname) == checksums[fname]
        assert (raw / fname[:-3]).read_bytes() == idx_bytes(arrays[key])
    assert_clean(raw)

    train = data.load("mnist", root, train=True, checksums=checksums)
    test = data.load("mnist", root, train=False, checksums=checksums)
    assert train.x.shape == (300, 784) and test.x.shape == (100, 784)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.long
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) <= 1.0
    assert float(train.x.max()) == 1.0          # 255 occurs (noise clipped) -> exactly 1
    expected = torch.from_numpy(arrays["train_images"].reshape(300, 784)).float() / 255
    assert torch.equal(train.x, expected)
    assert torch.equal(test.x, torch.from_numpy(arrays["test_images"].reshape(100, 784)).float() / 255)
    assert torch.equal(train.y, torch.from_numpy(arrays["train_labels"]).long())
    assert torch.equal(test.y, torch.from_numpy(arrays["test_labels"]).long())
    # a pixel by hand: row 7, pixel (row 3, col 5) of the 28x28 image
    assert float(train.x[7, 3 * 28 + 5]) == pytest.approx(int(arrays["train_images"][7, 3, 5]) / 255)

    # already present and valid: a second fetch needs no mirror (and no network) and keeps them
    before = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    data.fetch("mnist", root, checksums=checksums)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == before


def test_a_preloaded_split_is_taken_once_while_its_files_are_unchanged(tiny_mnist, tmp_path, monkeypatch):
    """``preload`` (the warm worker, before it forks a job) verifies and decodes both splits; a
    ``load`` then takes each split from it once, and reads the files again, verifying them, once
    a file has changed: a corrupt file is still refused, naming it."""
    mirror, checksums = tiny_mnist
    root = tmp_path / "data"
    data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)
    monkeypatch.setattr(data, "_PRELOADED", {})
    assert data.preload("mnist", root, checksums) is True
    assert data.preload("mnist", root, checksums) is False            # held, unchanged: nothing read
    held = data._PRELOADED[data._preload_key("mnist", root, True, checksums)][1]
    first = data.load("mnist", tmp_path / "." / "data", train=True, checksums=checksums)  # the same folder
    assert first is held
    again = data.load("mnist", root, train=True, checksums=checksums)          # taken once: read anew
    assert again is not held and torch.equal(again.x, held.x) and torch.equal(again.y, held.y)

    data.preload("mnist", root, checksums)
    target = root / "MNIST" / "raw" / FILES["test_images"]
    target.write_bytes(target.read_bytes()[:-1])
    with pytest.raises(data.ChecksumError, match=FILES["test_images"]):
        data.load("mnist", root, train=False, checksums=checksums)


def test_fetch_finds_files_in_torchvision_layout_of_mirror(tiny_mnist, tmp_path):
    mirror, checksums = tiny_mnist
    nested = tmp_path / "mirror" / "MNIST" / "raw"
    shutil.copytree(mirror, nested)
    data.fetch("mnist", tmp_path / "data", mirror=str(tmp_path / "mirror"), checksums=checksums)
    assert (tmp_path / "data" / "MNIST" / "raw" / FILES["test_labels"]).is_file()


def test_corrupt_file_raises_checksum_error_and_leaves_nothing(tiny_mnist, tmp_path):
    mirror, checksums = tiny_mnist
    bad_mirror = copy_mirror(mirror, tmp_path / "mirror")
    bad = FILES["train_labels"]
    blob = bytearray((bad_mirror / bad).read_bytes())
    blob[-9] ^= 0xFF                      # flip a byte of the compressed stream
    (bad_mirror / bad).write_bytes(bytes(blob))
    root = tmp_path / "data"
    with pytest.raises(data.ChecksumError) as err:
        data.fetch("mnist", root, mirror=str(bad_mirror), checksums=checksums)
    msg = str(err.value)
    assert bad in msg and checksums[bad] in msg
    raw = root / "MNIST" / "raw"
    assert_clean(raw, absent=bad)
    # the file before it in torchvision's order was fetched; nothing after the bad one was
    assert sorted(p.name for p in raw.iterdir()) == sorted([FILES["train_images"], FILES["train_images"][:-3]])


def test_corrupt_file_already_in_place_is_refused(tiny_mnist, tmp_path):
    mirror, checksums = tiny_mnist
    root = tmp_path / "data"
    data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)
    target = root / "MNIST" / "raw" / FILES["test_images"]
    target.write_bytes(target.read_bytes()[:-1])
    with pytest.raises(data.ChecksumError, match=FILES["test_images"]):
        data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)


def test_env_mirror_used_without_argument(tiny_mnist, tmp_path, monkeypatch):
    mirror, checksums = tiny_mnist
    monkeypatch.setenv(data.MIRROR_ENV, str(mirror))
    root = tmp_path / "data"
    data.fetch("mnist", root, checksums=checksums)
    for fname in GZ:
        assert md5(root / "MNIST" / "raw" / fname) == checksums[fname]


def test_missing_file_in_mirror_raises_file_not_found(tiny_mnist, tmp_path):
    mirror, checksums = tiny_mnist
    partial = copy_mirror(mirror, tmp_path / "mirror")
    missing = FILES["test_labels"]
    (partial / missing).unlink()
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match=missing):
        data.fetch("mnist", root, mirror=str(partial), checksums=checksums)
    assert_clean(root / "MNIST" / "raw", absent=missing)


def test_load_before_fetch_raises(tmp_path, tiny_mnist):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        data.load("mnist", tmp_path, train=True, checksums=tiny_mnist[1])


def test_unknown_checksum_key_raises_key_error(tiny_mnist, tmp_path):
    mirror, _ = tiny_mnist
    with pytest.raises(KeyError, match="bogus-file.gz"):
        data.resources("mnist", {"bogus-file.gz": "0" * 32})
    with pytest.raises(KeyError, match="bogus-file.gz"):
        data.fetch("mnist", tmp_path, mirror=str(mirror), checksums={"bogus-file.gz": "0" * 32})


def test_resources_default_to_official_and_partial_override():
    official = dict(MNIST.resources)
    assert dict(data.resources("mnist")) == official
    over = dict(data.resources("mnist", {FILES["test_labels"]: "a" * 32}))
    assert over[FILES["test_labels"]] == "a" * 32
    assert over[FILES["train_images"]] == official[FILES["train_images"]]
    with pytest.raises(KeyError, match="cifar"):
        data.resources("cifar")


def _shared_mnist_mirror():
    for cand in (SHARED_MNIST, SHARED_MNIST / "MNIST" / "raw"):
        if all((cand / f).is_file() for f in GZ):
            return SHARED_MNIST
    return None


@pytest.mark.slow
@pytest.mark.skipif(_shared_mnist_mirror() is None, reason=f"no real MNIST under {SHARED_MNIST}")
def test_real_mnist_with_official_checksums(tmp_path):
    root = tmp_path / "data"
    data.fetch("mnist", root, mirror=str(_shared_mnist_mirror()))   # official md5s
    train = data.load("mnist", root, train=True)
    test = data.load("mnist", root, train=False)
    assert train.x.shape == (60000, 784) and test.x.shape == (10000, 784)
    assert train.y.shape == (60000,) and sorted(train.y.unique().tolist()) == list(range(10))
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert_clean(root / "MNIST" / "raw")
