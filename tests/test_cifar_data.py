"""CIFAR-10/100: the test archives' format, fetching (local mirror), safe extraction, verification
before unpickling, and loading through torchvision."""
import functools
import hashlib
import http.server
import io
import os
import pickle
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100, MNIST

from clrepro import data
from cifar_format import LAYOUT, TINY, make_arrays, write_archive

NAMES = ["cifar10", "cifar100"]
CLS = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def tree(folder: Path) -> set[Path]:
    return {p for p in Path(folder).rglob("*") if not p.is_dir()}


def assert_no_temporaries(folder: Path):
    left = [p for p in Path(folder).rglob(".*")]
    assert not left, f"leftover temporary entries: {left}"


def archive_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def arrays(name):
    return make_arrays(name, **TINY[name])


class Mkdir:
    """Unpickling this runs ``os.mkdir(path)``: a stand-in for any code a tampered pickle runs."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_tiny_cifar_is_real_format(tiny_cifar):
    mirror, checksums = tiny_cifar
    data.check_checksums(NAMES, checksums)          # every key is a file of one of the two
    for name in NAMES:
        archive, top, train_files, test_file, meta_file = LAYOUT[name]
        assert archive == CLS[name].filename and top == CLS[name].base_folder
        assert checksums[archive] == md5(mirror / archive)
        with tarfile.open(mirror / archive, "r:gz") as tar:
            entries = tar.getmembers()
            files = {m.name: tar.extractfile(m).read() for m in entries if m.isfile()}
        assert entries[0].name == top and entries[0].isdir()
        expected = [f"{top}/{f}" for f in train_files + [test_file, meta_file]]
        assert sorted(files) == sorted(expected + ([f"{top}/readme.html"] if name == "cifar10" else []))
        assert {f: checksums[f] for f in expected} == {f: hashlib.md5(files[f]).hexdigest() for f in expected}

        a = arrays(name)
        rows, labels = [], []
        for f in train_files:
            blob = files[f"{top}/{f}"]
            assert blob[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct\n" in blob
            batch = pickle.loads(blob, encoding="bytes")        # the official recipe: byte-string keys
            label_key = b"labels" if name == "cifar10" else b"fine_labels"
            assert set(batch) == {b"batch_label", b"data", b"filenames", label_key} | (
                set() if name == "cifar10" else {b"coarse_labels"})
            assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape[1] == 3072
            assert len(batch[b"filenames"]) == len(batch[b"data"]) == len(batch[label_key])
            rows.append(batch[b"data"])
            labels += batch[label_key]
        rows = np.concatenate(rows)
        # row = 1024 red, then 1024 green, then 1024 blue values, each plane row-major
        assert np.array_equal(rows[:, :1024].reshape(-1, 32, 32), a["train_x"][:, 0])
        assert np.array_equal(rows[:, 2048:].reshape(-1, 32, 32), a["train_x"][:, 2])
        assert labels == a["train_y"].tolist()
        meta = pickle.loads(files[f"{top}/{meta_file}"], encoding="latin1")
        key = CLS[name].meta["key"]
        assert len(meta[key]) == (10 if name == "cifar10" else 100)
        if name == "cifar100":
            assert len(meta["coarse_label_names"]) == 20
            assert sorted(set(labels)) == list(range(50))      # the first 50 classes, real indices
        else:
            assert meta["num_vis"] == 3072 and sorted(set(labels)) == list(range(10))


@pytest.mark.parametrize("name", NAMES)
def test_fetch_from_mirror_extracts_verifies_and_loads(tiny_cifar, tmp_path, name):
    mirror, checksums = tiny_cifar
    root = tmp_path / "data"
    paths = data.fetch(name, root, mirror=str(mirror), checksums=checksums)
    folder = data.raw_folder(root, name)
    assert folder == root / CLS[name].__name__
    assert paths == data.outputs(root, name, checksums)
    assert tree(root) == set(paths)                         # exactly the outputs, nothing else
    assert [p.relative_to(folder).as_posix() for p in paths] == [f for f, _ in data.resources(name, checksums)]
    assert paths[0] == folder / CLS[name].filename and paths[1].parent == folder / CLS[name].base_folder
    for p in paths:
        assert md5(p) == checksums[p.relative_to(folder).as_posix()]
    assert_no_temporaries(root)

    a = arrays(name)
    for train, split in ((True, "train"), (False, "test")):
        ds = data.load(name, root, train=train, checksums=checksums)
        n = len(a[f"{split}_y"])
        assert ds.x.shape == (n, 3, 32, 32) and ds.x.is_contiguous()
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.long
        assert torch.equal(ds.x, torch.from_numpy(a[f"{split}_x"]).float() / 255)
        assert torch.equal(ds.y, torch.from_numpy(a[f"{split}_y"]))
        assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    # channel order by hand: image 3, green (channel 1), row 5, column 7 of the first training batch
    base = folder / CLS[name].base_folder
    with open(base / CLS[name].train_list[0][0], "rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][3]
    train = data.load(name, root, train=True, checksums=checksums)
    assert float(train.x[3, 1, 5, 7]) == pytest.approx(int(row[1024 + 5 * 32 + 7]) / 255)

    # already present and valid: a second fetch needs no mirror (and no network) and keeps them
    before = {p: p.stat().st_mtime_ns for p in tree(root)}
    assert data.fetch(name, root, checksums=checksums) == paths
    assert {p: p.stat().st_mtime_ns for p in tree(root)} == before


def test_classes_are_learnable(tiny_cifar, tmp_path):
    """Nearest class mean on the raw pixels already separates the tiny classes."""
    mirror, checksums = tiny_cifar
    data.fetch("cifar100", tmp_path, mirror=str(mirror), checksums=checksums)
    train = data.load("cifar100", tmp_path, train=True, checksums=checksums)
    test = data.load("cifar100", tmp_path, train=False, checksums=checksums)
    classes = train.y.unique()
    means = torch.stack([train.x[train.y == c].flatten(1).mean(0) for c in classes])
    pred = classes[torch.cdist(test.x.flatten(1), means).argmin(1)]
    assert (pred == test.y).float().mean() > 0.9


def test_fetch_finds_archive_in_torchvision_layout_of_mirror_and_env(tiny_cifar, tmp_path, monkeypatch):
    mirror, checksums = tiny_cifar
    nested = tmp_path / "mirror" / "CIFAR10"
    nested.mkdir(parents=True)
    shutil.copy(mirror / CIFAR10.filename, nested)
    monkeypatch.setenv(data.MIRROR_ENV, str(tmp_path / "mirror"))
    data.fetch("cifar10", tmp_path / "data", checksums=checksums)
    assert (tmp_path / "data" / "CIFAR10" / "cifar-10-batches-py" / "test_batch").is_file()


def test_archive_missing_from_mirror(tmp_path, tiny_cifar):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(FileNotFoundError, match=CIFAR100.filename):
        data.fetch("cifar100", tmp_path / "data", mirror=str(tmp_path / "mirror"), checksums=tiny_cifar[1])
    assert tree(tmp_path / "data") == set()


def test_corrupt_archive_raises_checksum_error_and_leaves_nothing(tiny_cifar, tmp_path):
    mirror, checksums = tiny_cifar
    bad = tmp_path / "mirror"
    bad.mkdir()
    blob = bytearray((mirror / CIFAR10.filename).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (bad / CIFAR10.filename).write_bytes(bytes(blob))
    root = tmp_path / "data"
    with pytest.raises(data.ChecksumError) as err:
        data.fetch("cifar10", root, mirror=str(bad), checksums=checksums)
    assert CIFAR10.filename in str(err.value) and checksums[CIFAR10.filename] in str(err.value)
    assert tree(root) == set() and not list(root.rglob(".*"))


def test_corrupt_member_of_valid_archive_raises_and_leaves_nothing_half_written(tiny_cifar, tmp_path):
    mirror, checksums = tiny_cifar
    members = archive_members(mirror / CIFAR10.filename)
    bad = "cifar-10-batches-py/data_batch_2"
    blob = bytearray(members[bad])
    blob[-200] ^= 0xFF                                      # a pixel byte: still a valid pickle
    members[bad] = bytes(blob)
    (tmp_path / "mirror").mkdir()
    override = dict(checksums)
    override[CIFAR10.filename] = write_archive(tmp_path / "mirror" / CIFAR10.filename, members,
                                               "cifar-10-batches-py")
    root = tmp_path / "data"
    with pytest.raises(data.ChecksumError) as err:
        data.fetch("cifar10", root, mirror=str(tmp_path / "mirror"), checksums=override)
    assert bad in str(err.value) and checksums[bad] in str(err.value)
    folder = root / "CIFAR10"
    # the archive (valid by its override) and the member before the bad one are in place, complete
    assert tree(root) == {folder / CIFAR10.filename, folder / "cifar-10-batches-py" / "data_batch_1"}
    assert_no_temporaries(root)


def test_corrupt_file_already_in_place_is_refused(tiny_cifar, tmp_path):
    mirror, checksums = tiny_cifar
    root = tmp_path / "data"
    data.fetch("cifar100", root, mirror=str(mirror), checksums=checksums)
    target = root / "CIFAR100" / "cifar-100-python" / "meta"
    target.write_bytes(target.read_bytes() + b"\0")
    with pytest.raises(data.ChecksumError, match="cifar-100-python/meta"):
        data.fetch("cifar100", root, mirror=str(mirror), checksums=checksums)


@pytest.mark.parametrize("name,train,member", [("cifar10", True, "cifar-10-batches-py/data_batch_1"),
                                               ("cifar10", False, "cifar-10-batches-py/batches.meta"),
                                               ("cifar100", False, "cifar-100-python/test")])
def test_load_refuses_tampered_pickle_before_unpickling(tiny_cifar, tmp_path, name, train, member):
    mirror, checksums = tiny_cifar
    root = tmp_path / "data"
    data.fetch(name, root, mirror=str(mirror), checksums=checksums)
    # the payload is live: unpickling it runs its code
    pickle.loads(pickle.dumps(Mkdir(tmp_path / "proof"), protocol=2))
    assert (tmp_path / "proof").is_dir()
    marker = tmp_path / "unpickled"
    (data.raw_folder(root, name) / member).write_bytes(pickle.dumps(Mkdir(marker), protocol=2))
    with pytest.raises(data.ChecksumError) as err:
        data.load(name, root, train=train, checksums=checksums)
    assert member in str(err.value) and checksums[member] in str(err.value)
    assert not marker.exists()


def test_load_before_fetch_raises(tmp_path, tiny_cifar):
    with pytest.raises(FileNotFoundError, match="clrepro download cifar10"):
        data.load("cifar10", tmp_path, train=False, checksums=tiny_cifar[1])


def _evil_archive(path: Path, members: dict[str, bytes], links: dict[str, tuple[bytes, str]]) -> str:
    """``members`` plus entries that must never be extracted: ``..`` paths, an absolute path (a
    sibling ``absolute`` of the archive's folder), and ``links`` {name: (type, target)}."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in {**members, "../escaped": b"x", str(path.parent.parent / "absolute"): b"x",
                              "cifar-10-batches-py/../../escaped2": b"x"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, (kind, target) in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return md5(path)


def test_only_expected_regular_files_are_extracted(tiny_cifar, tmp_path):
    mirror, checksums = tiny_cifar
    members = archive_members(mirror / CIFAR10.filename)
    (tmp_path / "mirror").mkdir()
    links = {"cifar-10-batches-py/passwd": (tarfile.SYMTYPE, "/etc/passwd"),
             "cifar-10-batches-py/up": (tarfile.SYMTYPE, "../../.."),
             "cifar-10-batches-py/hard": (tarfile.LNKTYPE, "/etc/passwd")}
    override = dict(checksums)
    override[CIFAR10.filename] = _evil_archive(tmp_path / "mirror" / CIFAR10.filename, members, links)
    root = tmp_path / "work" / "data"
    paths = data.fetch("cifar10", root, mirror=str(tmp_path / "mirror"), checksums=override)
    assert {p for p in (tmp_path / "work").rglob("*") if not p.is_dir()} == set(paths)
    assert not any(p.is_symlink() for p in (tmp_path / "work").rglob("*"))
    assert not (tmp_path / "work" / "escaped").exists() and not (root / "escaped2").exists()
    assert not (tmp_path / "absolute").exists()


def test_member_present_only_as_link_is_missing(tiny_cifar, tmp_path):
    mirror, checksums = tiny_cifar
    members = archive_members(mirror / CIFAR10.filename)
    target = "cifar-10-batches-py/test_batch"
    del members[target]
    (tmp_path / "mirror").mkdir()
    override = dict(checksums)
    override[CIFAR10.filename] = _evil_archive(tmp_path / "mirror" / CIFAR10.filename, members,
                                               {target: (tarfile.SYMTYPE, "/etc/passwd")})
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match=target):
        data.fetch("cifar10", root, mirror=str(tmp_path / "mirror"), checksums=override)
    assert not (root / "CIFAR10" / target).exists() and not (root / "CIFAR10" / target).is_symlink()
    assert_no_temporaries(root)


def test_resources_official_overrides_and_keys_of_other_datasets():
    res = data.resources("cifar10")
    assert res[0] == ("cifar-10-python.tar.gz", CIFAR10.tgz_md5)
    assert res[1] == ("cifar-10-batches-py/data_batch_1", CIFAR10.train_list[0][1])
    assert res[-1] == ("cifar-10-batches-py/batches.meta", CIFAR10.meta["md5"])
    assert [f for f, _ in data.resources("cifar100")] == [
        "cifar-100-python.tar.gz", "cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"]
    # one dict holds the overrides of several datasets: each takes its own
    shared = {"cifar-100-python/meta": "a" * 32, "train-images-idx3-ubyte.gz": "b" * 32}
    over = dict(data.resources("cifar100", shared))
    assert over["cifar-100-python/meta"] == "a" * 32 and over["cifar-100-python/train"] == CIFAR100.train_list[0][1]
    assert dict(data.resources("cifar10", shared)) == dict(res)
    assert dict(data.resources("mnist", shared))["train-images-idx3-ubyte.gz"] == "b" * 32
    with pytest.raises(KeyError, match="data_batch_9"):               # a key of no dataset at all
        data.resources("cifar10", {"cifar-10-batches-py/data_batch_9": "0" * 32})


def test_check_checksums_names_unknown_keys():
    data.check_checksums(["mnist", "cifar10"], {"cifar-10-python.tar.gz": "0" * 32,
                                                "t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(KeyError, match="t10k-labels-idx1-ubyte.gz"):
        data.check_checksums(["cifar10", "cifar100"], {"t10k-labels-idx1-ubyte.gz": "0" * 32})
    with pytest.raises(KeyError, match="data_batch_1") as err:        # CIFAR keys are relative paths
        data.check_checksums(["cifar10"], {"data_batch_1": "0" * 32, "cifar-10-batches-py/test_batch": "0" * 32})
    assert "test_batch" not in str(err.value)


def test_mnist_outputs_match_fetch(tiny_mnist, tmp_path):
    mirror, checksums = tiny_mnist
    assert data.fetch("mnist", tmp_path, mirror=str(mirror), checksums=checksums) == data.outputs(
        tmp_path, "mnist", checksums)
    assert tree(tmp_path) == set(data.outputs(tmp_path, "mnist"))


@pytest.fixture
def serve():
    """serve(folder) -> base URL of ``folder`` served over HTTP on the loopback."""
    servers = []

    def start(folder) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", NAMES)
def test_download_without_mirror(tiny_cifar, serve, tmp_path, monkeypatch, name):
    """The official URL (here a local server) is downloaded into the temporary file, then verified."""
    mirror, checksums = tiny_cifar
    monkeypatch.setattr(CLS[name], "url", serve(mirror) + CLS[name].filename)
    paths = data.fetch(name, tmp_path, checksums=checksums)
    assert tree(tmp_path) == set(paths) and md5(paths[0]) == checksums[CLS[name].filename]


def test_mnist_download_falls_back_to_next_official_mirror(tiny_mnist, serve, tmp_path, monkeypatch):
    mirror, checksums = tiny_mnist
    base = serve(mirror)
    monkeypatch.setattr(MNIST, "mirrors", [base + "missing/", base])
    paths = data.fetch("mnist", tmp_path, checksums=checksums)
    assert tree(tmp_path) == set(paths) == set(data.outputs(tmp_path, "mnist", checksums))
