"""A short training run on the real MNIST (local mirror): the loop must learn."""
import pytest

from clrepro import config, data, train
from conftest import REPO, SHARED_MNIST

pytestmark = pytest.mark.skipif(not (SHARED_MNIST / "MNIST" / "raw").exists(),
                                reason="no local MNIST mirror")


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    data.fetch("mnist", root, mirror=str(SHARED_MNIST))
    return root


@pytest.mark.parametrize("scenario,method,minimum", [("task", "none", 0.80), ("class", "joint", 0.70)])
def test_short_split_mnist_run_is_far_above_chance(mnist_root, tmp_path, scenario, method, minimum):
    cfg = config.load(REPO / "config" / "config.yaml", {"data": {"root": str(mnist_root)}})
    spec = config.resolve(cfg, config.Run("split_mnist_vdv19", scenario, method, 0))
    spec["iters_per_task"] = 50
    spec["spec_hash"] = config.spec_hash(spec)
    result = train.run(spec, tmp_path / "result.json", device="cpu", threads=2)
    # chance: 50% (task-IL, 2 classes per task); 10% (class-IL over all 10 digits)
    assert result["metrics"]["acc"] > minimum
    assert result["provenance"]["packages"]["torch"]
