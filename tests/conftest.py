import os
from pathlib import Path

import pytest
import torch

from clrepro.data import TensorDataset
from clrepro.scenarios import split

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("CLREPRO_DATA_MIRROR", REPO.parent / "shared" / "data"))
# Tests choose their mirror explicitly: the variable (CI sets it; it takes precedence over a
# mirror argument) must not leak into them or the processes they start.
os.environ.pop("CLREPRO_DATA_MIRROR", None)


@pytest.fixture
def toy_data():
    """A small 10-class problem: Gaussian blobs in 20 dimensions."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 20, generator=g) * 2

    def make(n):
        y = torch.arange(10).repeat_interleave(n)
        return TensorDataset(centres[y] + torch.randn(len(y), 20, generator=g), y)

    return make(40), make(10)


@pytest.fixture
def toy_bench(toy_data):
    def build(scenario, tasks=((0, 1), (2, 3), (4, 5))):
        return split(*toy_data, scenario, [list(t) for t in tasks])
    return build


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """A tiny MNIST (30 train / 10 test images per digit) in the real gzip'd IDX format, in a
    mirror folder: (mirror_folder, {file name: md5}). Shared by the session: copy before changing."""
    from mnist_format import write_mnist

    folder = tmp_path_factory.mktemp("mnist-mirror")
    return folder, write_mnist(folder, n_train_per_class=30, n_test_per_class=10, seed=0)


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """Tiny CIFAR-10 (10 classes) and CIFAR-100 (its first 50 classes), 8 train / 4 test images per
    class, as the real archives in one mirror folder: (mirror_folder, {archive or member path: md5})
    for both. Shared by the session: copy before changing."""
    from cifar_format import TINY, write_cifar

    folder = tmp_path_factory.mktemp("cifar-mirror")
    checksums = {}
    for name, params in TINY.items():
        checksums.update(write_cifar(folder, name, **params))
    return folder, checksums
