"""Datasets: fetch (official mirrors or a local mirror folder), verify, and load as tensors.

Every file is written to a temporary file beside its destination, md5-verified against the
checksums torchvision ships with its dataset classes (or ``checksums`` overrides, keyed by the
path relative to the dataset folder), and only then renamed into place, so an interrupted or
corrupt download never leaves a half-written file in ``data/``. MNIST's ``.gz`` files are
unpacked beside them; of a CIFAR archive only the expected regular files are extracted, each
verified, and its pickles are verified again before ``load`` unpickles them.

Pretrained weights are fetched the same way (``WEIGHTS``, into ``<root>/weights``): the file that
torchvision's weights API names, checked against the SHA-256 prefix its name carries (torch.hub's
convention, written ``sha256:<hex>`` where a dataset file has an md5).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torchvision.datasets import CIFAR10, CIFAR100, MNIST
from torchvision.datasets.utils import calculate_md5, download_url
from torchvision.models import SqueezeNet1_0_Weights

from .atomic import atomic_path

MIRROR_ENV = "CLREPRO_DATA_MIRROR"



def _torchvision_weights(weights) -> type:
    """A torchvision weights enum as a download: its file, from its folder URL, with the SHA-256
    prefix in its name (``squeezenet1_0-b66bff10.pth``: ``sha256:b66bff10``)."""
    folder, fname = weights.url.rsplit("/", 1)
    prefix = torch.hub.HASH_REGEX.search(fname).group(1)
    return type(fname, (), {"mirrors": [folder + "/"], "resources": [(fname, f"sha256:{prefix}")]})


class CORe50:
    """CORe50 (Lomonaco & Maltoni 2017), its official 128 x 128 archive: ``core50_128x128/s<session>/
    o<object>/C_<ss>_<oo>_<fff>.png``, 11 sessions of 50 objects in 10 categories of 5 (o1-o5 the
    first), ~300 frames per clip. ``load`` reads the PNGs straight from the verified zip, as the
    CRUMB reference samples them (dataloaders/task_setup.py): every 20th frame from the 10th to the
    290th (one a second), sessions 3, 7 and 10 for testing, the category as the label."""

    resources = [("core50_128x128.zip", "745f3373fed08d69343f1058ee559e13")]
    mirrors = ["http://bias.csr.unibo.it/maltoni/download/core50/"]
    test_sessions, frames, frame_step = (3, 7, 10), range(10, 300), 20


#: dataset name -> (torchvision class or its like, its folder under the data root)
DATASETS = {"mnist": (MNIST, "MNIST/raw"), "cifar10": (CIFAR10, "CIFAR10"), "cifar100": (CIFAR100, "CIFAR100"),
            "core50": (CORe50, "CORe50")}
#: pretrained weights -> (their download, the folder under the data root); fetched like datasets
WEIGHTS = {"squeezenet1_0": (_torchvision_weights(SqueezeNet1_0_Weights.IMAGENET1K_V1), "weights")}
#: everything ``fetch`` downloads
DOWNLOADS = {**DATASETS, **WEIGHTS}


class ChecksumError(RuntimeError):
    """A fetched file does not have the checksum it must have."""


@dataclass(frozen=True)
class TensorDataset:
    """Inputs as float tensors in [0, 1] (N, ...) and integer labels (N,), on one device; for a
    dataset of videos, ``clips`` (N,) names each sample's clip, whose frames are consecutive rows
    in temporal order."""

    x: torch.Tensor
    y: torch.Tensor
    clips: torch.Tensor | None = None

    def to(self, device) -> "TensorDataset":
        clips = None if self.clips is None else self.clips.to(device)
        return TensorDataset(self.x.to(device), self.y.to(device), clips)


def _lookup(name: str):
    try:
        return DOWNLOADS[name]
    except KeyError:
        raise KeyError(f"unknown dataset or weights {name!r}; known: {sorted(DOWNLOADS)}") from None


def _is_archive(cls) -> bool:
    return issubclass(cls, CIFAR10)


def weights_file(root: str | os.PathLike, name: str) -> Path:
    """Where ``fetch(name, root)`` leaves the pretrained weights ``name`` (a ``WEIGHTS`` key)."""
    if name not in WEIGHTS:
        raise KeyError(f"unknown pretrained weights {name!r}; known: {sorted(WEIGHTS)}")
    cls, sub = WEIGHTS[name]
    return Path(root) / sub / cls.resources[0][0]


def pretrained(root: str | os.PathLike, name: str, checksums: dict[str, str] | None = None) -> Path:
    """The fetched weights ``name``, verified against their checksum (``checksums`` overriding it)."""
    path = weights_file(root, name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `clrepro download {name}` first")
    (_, checksum), = resources(name, checksums)
    verify(path, checksum, str(path))
    return path


def _official(name: str) -> list[tuple[str, str]]:
    cls, _ = _lookup(name)
    if not _is_archive(cls):
        return [(f, md5) for f, md5 in cls.resources]
    members = cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]
    return [(cls.filename, cls.tgz_md5)] + [(f"{cls.base_folder}/{f}", md5) for f, md5 in members]


def check_checksums(names: list[str], checksums: dict[str, str]) -> None:
    """Raise KeyError naming the ``checksums`` keys that are files of none of the datasets ``names``."""
    known = {f for name in names for f, _ in _official(name)}
    unknown = sorted(set(checksums) - known)
    if unknown:
        raise KeyError(f"data.checksums names files that none of {sorted(names)} has: {unknown}")


def resources(name: str, checksums: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(path relative to ``raw_folder``, md5) of each file of a dataset (for CIFAR: the archive,
    then its members): torchvision's md5s, unless ``checksums`` overrides them. Keys of the other
    datasets are ignored; a key of no known dataset raises KeyError."""
    res = _official(name)
    if checksums:
        check_checksums(list(DOWNLOADS), checksums)
        res = [(f, checksums.get(f, md5)) for f, md5 in res]
    return res


def checksums_of(names: list[str], checksums: dict[str, str] | None = None) -> dict[str, str]:
    """{``<dataset>/<file>``: md5} of every file the datasets ``names`` are read from: what a
    run's data are, wherever they are stored."""
    return {f"{name}/{f}": md5 for name in names for f, md5 in resources(name, checksums)}


def raw_folder(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / _lookup(name)[1]


def dataset_folder(root: str | os.PathLike, name: str) -> Path:
    """The top folder of a dataset under the data root (``MNIST``, ``CIFAR10``, ...), what DVC tracks."""
    return Path(root) / _lookup(name)[1].split("/")[0]


def outputs(root: str | os.PathLike, name: str, checksums: dict[str, str] | None = None) -> list[Path]:
    """Every file ``fetch`` leaves in place: MNIST's ``.gz`` files and their unpacked copies, or
    CIFAR's archive and its extracted members."""
    cls, _ = _lookup(name)
    folder = raw_folder(root, name)
    out = []
    for f, _ in resources(name, checksums):
        out.append(folder / f)
        if not _is_archive(cls) and f.endswith(".gz"):
            out.append(folder / f[:-3])
    return out


def verify(path: Path, md5: str, name: str | None = None) -> None:
    """``md5``: an md5, or ``sha256:<hex>``, the first hex digits of the file's SHA-256."""
    if md5.startswith("sha256:"):
        want = md5.removeprefix("sha256:")
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
        if not want or actual[:len(want)] != want:
            raise ChecksumError(f"checksum mismatch for {name or path.name}: expected a SHA-256 beginning "
                                f"{want}, got {actual}")
        return
    actual = calculate_md5(str(path))
    if actual != md5:
        raise ChecksumError(f"checksum mismatch for {name or path.name}: expected md5 {md5}, got {actual}")


def fetch(name: str, root: str | os.PathLike, mirror: str | None = None,
          checksums: dict[str, str] | None = None) -> list[Path]:
    """Fetch, verify and unpack the files of ``name`` into ``root``; return ``outputs(...)``.

    The ``CLREPRO_DATA_MIRROR`` environment variable, else ``mirror``, names a local folder with
    the official files, searched as given and under ``<mirror>/<dataset folder>`` (``MNIST/raw``,
    ``CIFAR10``, ``CIFAR100``, ``weights``); without one the official mirrors are used. Files already present
    and valid are kept; present but invalid ones raise ChecksumError.
    """
    mirror = os.environ.get(MIRROR_ENV) or mirror or None
    cls, sub = _lookup(name)
    dest = raw_folder(root, name)
    dest.mkdir(parents=True, exist_ok=True)

    def get(fname: str) -> Callable[[Path], None]:
        if mirror:
            return lambda tmp: shutil.copyfile(_find_in_mirror(Path(mirror), sub, fname), tmp)
        return lambda tmp: _download(cls, fname, tmp)

    res = resources(name, checksums)
    if _is_archive(cls):
        (archive, md5), members = res[0], res[1:]
        _extract(_fetch_file(dest / archive, md5, archive, get(archive)), dest, members)
    else:
        for fname, md5 in res:
            gz = _fetch_file(dest / fname, md5, fname, get(fname))
            if fname.endswith(".gz") and not _unpacked_matches(gz):   # missing or damaged: unpack again
                _gunzip_atomic(gz, gz.with_suffix(""))
    return outputs(root, name, checksums)


def _fetch_file(final: Path, md5: str, label: str, write: Callable[[Path], None]) -> Path:
    """Keep ``final`` if present (it must match ``md5``); else ``write`` a temporary file beside it,
    verify it and rename it into place."""
    if final.exists():
        verify(final, md5, label)
    else:
        with atomic_path(final) as tmp:
            write(tmp)
            verify(tmp, md5, label)
    return final


def _find_in_mirror(mirror: Path, sub: str, fname: str) -> Path:
    for cand in (mirror / fname, mirror / sub / fname):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{fname} not found in the data mirror {mirror} (nor under {mirror / sub})")


def _download(cls, fname: str, target: Path) -> None:
    urls = [base + fname for base in cls.mirrors] if hasattr(cls, "mirrors") else [cls.url]
    errors = []
    for url in urls:
        target.unlink(missing_ok=True)      # else download_url takes the empty placeholder for the file
        try:
            download_url(url, str(target.parent), filename=target.name, md5=None)
            return
        except Exception as exc:  # try the next official mirror
            errors.append(f"{url}: {exc}")
    raise RuntimeError(f"could not download {fname}:\n  " + "\n  ".join(errors))


def _gunzip_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp, gzip.open(src, "rb") as fin:
        _save(fin, tmp)


def _md5_of_stream(stream) -> str:
    h = hashlib.md5()
    for block in iter(lambda: stream.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _unpacked_matches(gz: Path) -> bool:
    """Whether the unpacked copy beside ``gz`` holds exactly what ``gz`` unpacks to."""
    plain = gz.with_suffix("")
    if not plain.is_file():
        return False
    with open(plain, "rb") as f:
        have = _md5_of_stream(f)
    with gzip.open(gz, "rb") as f:
        return have == _md5_of_stream(f)


def _save(stream, path: Path) -> None:
    with open(path, "wb") as fout:
        shutil.copyfileobj(stream, fout)


def _extract(archive: Path, dest: Path, members: list[tuple[str, str]]) -> None:
    """Extract the regular files named ``members`` (path relative to ``dest``, md5) from the
    tarball, each verified; every other entry (links, absolute or ``..`` paths, extras) is
    ignored, and no member name is ever used as a path."""
    todo = {}
    for rel, md5 in members:
        if (dest / rel).exists():
            verify(dest / rel, md5, rel)
        else:
            todo[rel] = md5
    if not todo:
        return
    with tarfile.open(archive, "r|*") as tar:
        for entry in tar:
            rel = entry.name.removeprefix("./")
            if entry.isfile() and rel in todo:
                stream = tar.extractfile(entry)
                _fetch_file(dest / rel, todo.pop(rel), rel, lambda tmp: _save(stream, tmp))
    if todo:
        raise FileNotFoundError(f"{archive.name} has no regular file {', '.join(sorted(todo))}")


#: splits verified and decoded ahead (``preload``), each with the size and modification time of
#: the files it was read from: {(name, root, train, checksums): (files' state, dataset)}
_PRELOADED: dict[tuple, tuple[list, TensorDataset]] = {}


def _preload_key(name: str, root: str | os.PathLike, train: bool, checksums: dict[str, str] | None) -> tuple:
    return name, str(Path(root).resolve()), train, tuple(sorted((checksums or {}).items()))


def _files_state(name: str, root: str | os.PathLike, checksums: dict[str, str] | None) -> list | None:
    """(path, size, modification time) of every file the dataset is read from; None if one is missing."""
    try:
        return [(str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in outputs(root, name, checksums)]
    except OSError:
        return None


def preload(name: str, root: str | os.PathLike, checksums: dict[str, str] | None = None) -> bool:
    """Verify and decode both splits of ``name`` once, here, for the processes forked from this one
    (the warm worker's jobs): in each of them the first ``load`` of a split returns it, provided
    its files still have the size and modification time they had when verified; otherwise it
    reads and verifies them again. Returns whether it read anything (not when both splits were
    preloaded and unchanged)."""
    read = False
    for train in (True, False):
        key, state = _preload_key(name, root, train, checksums), _files_state(name, root, checksums)
        if state is None or (key in _PRELOADED and _PRELOADED[key][0] == state):
            continue
        ds, read = load(name, root, train, checksums), True
        if _files_state(name, root, checksums) == state:   # not changed while it was read
            _PRELOADED[key] = (state, ds)
    return read


def load(name: str, root: str | os.PathLike, train: bool, checksums: dict[str, str] | None = None
         ) -> TensorDataset:
    """Load a split through torchvision's dataset class: x float32 in [0, 1] (MNIST flattened to
    (N, 784), CIFAR (N, 3, 32, 32)), y long (CIFAR-100: the fine labels). A split ``preload``
    verified in this process's parent is taken from there, once."""
    if name in WEIGHTS:
        raise ValueError(f"{name!r} names pretrained weights, not a dataset (models.build loads them)")
    if _PRELOADED:
        state, ds = _PRELOADED.pop(_preload_key(name, root, train, checksums), (None, None))
        if ds is not None and state == _files_state(name, root, checksums):
            return ds
    cls, _ = _lookup(name)
    folder = raw_folder(root, name)
    md5s = dict(resources(name, checksums))
    if _is_archive(cls):
        return _load_cifar(cls, name, folder, train, md5s)
    _require(folder, md5s, name)
    if cls is CORe50:
        (archive, md5), = md5s.items()
        verify(folder / archive, md5, str(folder / archive))
        return _load_core50(folder / archive, train)
    for f, md5 in md5s.items():      # the split's archives, and what torchvision reads: their unpacked copies
        if f.endswith(".gz") and f.startswith("train" if train else "t10k"):
            verify(folder / f, md5, str(folder / f))
            if not _unpacked_matches(folder / f):
                raise ChecksumError(f"{folder / f[:-3]} is not what the verified {f} unpacks to (changed, truncated "
                                    f"or empty): delete it and run `clrepro download {name} --root {root}` (or the "
                                    f"DAG's download_{name} job), which unpacks it again")
    ds = cls(str(root), train=train, download=False)
    x = ds.data.to(torch.float32).div_(255.0)
    return TensorDataset(x.reshape(len(x), -1), ds.targets.to(torch.long))


def _load_cifar(cls, name: str, folder: Path, train: bool, md5s: dict[str, str]) -> TensorDataset:
    """The split's pickles and meta are md5-verified before anything is unpickled; torchvision
    then checks and reads exactly these files, with the same md5s."""
    base = cls.base_folder
    split = [[f, md5s[f"{base}/{f}"]] for f, _ in (cls.train_list if train else cls.test_list)]
    meta = {**cls.meta, "md5": md5s[f"{base}/{cls.meta['filename']}"]}
    files = {f"{base}/{f}": md5 for f, md5 in split + [[meta["filename"], meta["md5"]]]}
    _require(folder, files, name)
    for f, md5 in files.items():
        verify(folder / f, md5, f)
    checked = type(cls.__name__, (cls,), {"train_list": split if train else [],
                                          "test_list": [] if train else split, "meta": meta})
    ds = checked(str(folder), train=train, download=False)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)
    return TensorDataset(x, torch.tensor(ds.targets, dtype=torch.long))


_CORE50_FRAME = re.compile(r"core50_128x128/s(\d+)/o(\d+)/C_(\d+)_(\d+)_(\d+)\.png")


def _load_core50(archive: Path, train: bool) -> TensorDataset:
    """The split's sampled frames, in (session, object, frame) order: x (N, 3, 128, 128) in [0, 1],
    y the category 0-9, clips 100 x session + object."""
    import numpy as np
    from PIL import Image

    picked = []
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            m = _CORE50_FRAME.fullmatch(name)
            if not m:
                continue
            session, obj, frame = int(m[1]), int(m[2]), int(m[5])
            if (session in CORe50.test_sessions) != train and frame in CORe50.frames[::CORe50.frame_step]:
                picked.append((session, obj, frame, name))
        if not picked:
            raise ValueError(f"{archive} holds no CORe50 frame of the {'training' if train else 'test'} sessions")
        picked.sort()
        images = np.stack([np.asarray(Image.open(io.BytesIO(z.read(name))).convert("RGB")) for *_, name in picked])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(torch.float32).div_(255.0)
    return TensorDataset(x, torch.tensor([(obj - 1) // 5 for _, obj, _, _ in picked], dtype=torch.long),
                         torch.tensor([100 * session + obj for session, obj, _, _ in picked], dtype=torch.long))


def _require(folder: Path, files, name: str) -> None:
    for f in files:
        if not (folder / f).exists():
            raise FileNotFoundError(f"{folder / f} is missing: run `clrepro download {name}` first")
