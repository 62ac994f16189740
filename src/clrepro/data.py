"""Datasets: fetch (official mirrors or a local mirror folder), verify, and load as device tensors.

Files are fetched into a temporary file beside the destination, md5-verified against the
checksums torchvision ships with its dataset classes, and only then renamed into place, so an
interrupted or corrupt download never leaves a half-written file in ``data/``.
"""
from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import MNIST
from torchvision.datasets.utils import calculate_md5, download_url

from .atomic import atomic_path

MIRROR_ENV = "CLREPRO_DATA_MIRROR"

#: dataset name -> (torchvision class, folder under the data root holding the raw files)
DATASETS = {"mnist": (MNIST, "MNIST/raw")}


class ChecksumError(RuntimeError):
    """A fetched file does not have the checksum it must have."""


@dataclass(frozen=True)
class TensorDataset:
    """Inputs as float tensors in [0, 1] (N, ...) and integer labels (N,), on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def to(self, device) -> "TensorDataset":
        return TensorDataset(self.x.to(device), self.y.to(device))


def resources(name: str, checksums: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(file name, md5) pairs of a dataset: torchvision's, unless ``checksums`` overrides them."""
    cls, _ = _lookup(name)
    res = list(cls.resources)
    if checksums:
        unknown = set(checksums) - {f for f, _ in res}
        if unknown:
            raise KeyError(f"data.checksums names files that {name} does not have: {sorted(unknown)}")
        res = [(f, checksums.get(f, md5)) for f, md5 in res]
    return res


def _lookup(name: str):
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


def raw_folder(root: str | os.PathLike, name: str) -> Path:
    return Path(root) / _lookup(name)[1]


def verify(path: Path, md5: str, name: str | None = None) -> None:
    actual = calculate_md5(str(path))
    if actual != md5:
        raise ChecksumError(f"checksum mismatch for {name or path.name}: expected md5 {md5}, got {actual}")


def fetch(name: str, root: str | os.PathLike, mirror: str | None = None,
          checksums: dict[str, str] | None = None) -> list[Path]:
    """Fetch, verify and unpack the raw files of ``name`` into ``root``; return the final paths.

    The ``CLREPRO_DATA_MIRROR`` environment variable, else ``mirror``, names a local folder with
    the official files, searched as given and under ``<mirror>/<Dataset>/raw``; without one the
    official mirrors are used.  Files already present and valid are kept.
    """
    mirror = os.environ.get(MIRROR_ENV) or mirror or None
    cls, sub = _lookup(name)
    dest = raw_folder(root, name)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for fname, md5 in resources(name, checksums):
        final = dest / fname
        if final.exists():
            verify(final, md5)
        else:
            with atomic_path(final) as tmp:
                if mirror:
                    shutil.copyfile(_find_in_mirror(Path(mirror), sub, fname), tmp)
                else:
                    _download(cls, fname, tmp)
                verify(tmp, md5, name=fname)
        out.append(final)
        if fname.endswith(".gz"):
            unpacked = final.with_suffix("")
            if not unpacked.exists():
                _gunzip_atomic(final, unpacked)
            out.append(unpacked)
    return out


def _find_in_mirror(mirror: Path, sub: str, fname: str) -> Path:
    for cand in (mirror / fname, mirror / sub / fname):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{fname} not found in the data mirror {mirror} (nor under {mirror / sub})")


def _download(cls, fname: str, target: Path) -> None:
    errors = []
    for base in cls.mirrors:
        try:
            download_url(base + fname, str(target.parent), filename=target.name, md5=None)
            return
        except Exception as exc:  # try the next official mirror
            errors.append(f"{base}: {exc}")
    raise RuntimeError(f"could not download {fname} from any mirror:\n  " + "\n  ".join(errors))


def _gunzip_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp, gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def load(name: str, root: str | os.PathLike, train: bool, checksums: dict[str, str] | None = None
         ) -> TensorDataset:
    """Load a split through torchvision's dataset class as one float tensor in [0, 1]."""
    cls, _ = _lookup(name)
    folder = raw_folder(root, name)
    for fname, md5 in resources(name, checksums):
        if not (folder / fname).exists():
            raise FileNotFoundError(f"{folder / fname} is missing: run `clrepro download {name}` first")
    # md5s are verified when fetching (``fetch``); here only the files' presence is checked.
    ds = cls(str(root), train=train, download=False)
    x = ds.data.to(torch.float32).div_(255.0)
    return TensorDataset(x.reshape(len(x), -1), ds.targets.to(torch.long))
