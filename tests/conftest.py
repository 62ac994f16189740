import os
from pathlib import Path

import pytest
import torch

from clrepro.data import TensorDataset
from clrepro.scenarios import split

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("CLREPRO_DATA_MIRROR", REPO.parent / "shared" / "data"))


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
