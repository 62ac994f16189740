"""Split and permuted benchmarks in the three scenarios (van de Ven & Tolias 2019, Sec. 2)."""
import numpy as np
import pytest
import torch

from clrepro import scenarios
from clrepro.data import TensorDataset

PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def rows_of(ds: TensorDataset, classes) -> torch.Tensor:
    return ds.x[torch.isin(ds.y, torch.tensor(list(classes)))]


# -- split -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", scenarios.SCENARIOS)
def test_split_fixed_order_tasks_hold_their_pairs(toy_data, scenario):
    train, test = toy_data
    bench = scenarios.split(train, test, scenario, PAIRS)
    assert bench.n_tasks == 5 and bench.classes_per_task == 2 and bench.input_dim == 20
    assert bench.meta["class_order"] == list(range(10))
    assert bench.meta["task_classes"] == PAIRS
    for t, pair in enumerate(PAIRS):
        for ds, task, n in ((train, bench.train[t], 80), (test, bench.test[t], 20)):
            assert len(task) == n                                  # 2 classes x 40 (10) samples
            assert torch.equal(task.x, rows_of(ds, pair))          # exactly the pair's rows, in order
            assert sorted(task.p.unique().tolist()) == [2 * t, 2 * t + 1]
            # fixed order: the global label is the digit itself
            assert torch.equal(task.p, ds.y[torch.isin(ds.y, torch.tensor(pair))])
            assert task.perm is None and torch.equal(task.inputs(), task.x)


def test_split_shuffled_order_uses_positions_in_order(toy_data):
    train, test = toy_data
    bench = scenarios.split(train, test, "class", PAIRS, order_seed=3)
    order = bench.meta["class_order"]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert bench.meta["task_classes"] == [order[2 * t:2 * t + 2] for t in range(5)]
    for t, group in enumerate(bench.meta["task_classes"]):
        task = bench.train[t]
        assert torch.equal(task.x, rows_of(train, group))
        digits = train.y[torch.isin(train.y, torch.tensor(group))]
        # p = position of the digit in the class order: group[0] -> 2t, group[1] -> 2t+1
        expected = torch.where(digits == group[0], 2 * t, 2 * t + 1)
        assert torch.equal(task.p, expected)


def test_reference_order_has_the_reference_codes_pairs(toy_data):
    # The reference code (data.py) relabels digit y as np.random.permutation(10)[y] after
    # np.random.seed(seed); its task t holds the new labels 2t, 2t+1. Its own data pipeline, run
    # with --seed=1, puts digits 4, 6 in task 1 (labels 0, 1), then 0/5, 3/9, 2/7, 8/1.
    assert scenarios.class_order(PAIRS, 1, reference=True) == [4, 6, 0, 5, 3, 9, 2, 7, 8, 1]
    assert scenarios.class_order(PAIRS, 0, reference=True) == list(range(10))   # its seed-0 exception
    bench = scenarios.split(*toy_data, "class", PAIRS, order_seed=2, reference_order=True)
    np.random.seed(2)
    relabel = np.random.permutation(list(range(10)))
    for t, task in enumerate(bench.train):
        digits = toy_data[0].y[torch.isin(toy_data[0].y, torch.tensor(bench.meta["task_classes"][t]))]
        assert task.p.tolist() == relabel[digits.numpy()].tolist()     # the reference's label of each sample
        assert sorted(task.p.unique().tolist()) == [2 * t, 2 * t + 1]


def test_task_il_heads_and_targets(toy_data):
    bench = scenarios.split(*toy_data, "task", PAIRS)
    assert bench.n_outputs == 10
    for t in range(5):
        for upto in range(5):
            assert bench.active(t, upto) == (2 * t, 2 * t + 2)
        y = bench.targets(bench.train[t].p, t)
        assert sorted(y.unique().tolist()) == [0, 1]
        assert torch.equal(y, bench.train[t].p - 2 * t)
    # hand case: global labels 6, 7 of task 3 -> targets 0, 1
    assert bench.targets(torch.tensor([6, 7]), 3).tolist() == [0, 1]


def test_domain_il_shared_head(toy_data):
    bench = scenarios.split(*toy_data, "domain", PAIRS)
    assert bench.n_outputs == 2
    for t in range(5):
        for upto in range(5):
            assert bench.active(t, upto) == (0, 2)
        y = bench.targets(bench.test[t].p, t)
        assert sorted(y.unique().tolist()) == [0, 1]
    assert bench.targets(torch.tensor([8, 9, 9]), 4).tolist() == [0, 1, 1]


def test_class_il_growing_head_and_global_targets(toy_data):
    bench = scenarios.split(*toy_data, "class", PAIRS)
    assert bench.n_outputs == 10
    for i in range(5):          # last task trained
        for j in range(5):      # task evaluated
            assert bench.active(j, i) == (0, 2 * (max(i, j) + 1))
    # hand cases: task 1 after task 3 -> 8 units; task 4 after task 0 -> all 10 units
    assert bench.active(1, 3) == (0, 8) and bench.active(4, 0) == (0, 10) and bench.active(0, 0) == (0, 2)
    for t in range(5):
        assert torch.equal(bench.targets(bench.train[t].p, t), bench.train[t].p)


def test_class_il_with_all_outputs_keeps_one_full_head(toy_data):
    """The SDM-MLP protocol: every unit active from the first task on, global targets."""
    bench = scenarios.split(*toy_data, "class", PAIRS, all_outputs=True)
    assert all(bench.active(j, i) == (0, 10) for i in range(5) for j in range(5))
    assert bench.to("cpu").all_outputs
    with pytest.raises(ValueError, match="benchmark.outputs"):
        scenarios.split(*toy_data, "task", PAIRS, all_outputs=True)


def test_n_outputs_per_scenario_with_three_tasks(toy_bench):
    assert toy_bench("task").n_outputs == 6
    assert toy_bench("domain").n_outputs == 2
    assert toy_bench("class").n_outputs == 6


def test_class_order_seeded_permutation():
    a = scenarios.class_order(PAIRS, 5)
    assert sorted(a) == list(range(10))
    assert scenarios.class_order(PAIRS, 5) == a                  # deterministic per seed
    others = [scenarios.class_order(PAIRS, s) for s in (6, 7, 8)]
    assert all(o != a for o in others)                           # different seeds, different orders
    assert scenarios.class_order(PAIRS, None) == list(range(10))  # fixed: 0/1, 2/3, ...
    # the configured order is what gets permuted (not 0..9)
    custom = [[9, 3], [1, 0]]
    assert scenarios.class_order(custom, None) == [9, 3, 1, 0]
    assert sorted(scenarios.class_order(custom, 1)) == [0, 1, 3, 9]


def test_split_different_seeds_give_different_pairs(toy_data):
    b1 = scenarios.split(*toy_data, "task", PAIRS, order_seed=1)
    b1again = scenarios.split(*toy_data, "task", PAIRS, order_seed=1)
    b2 = scenarios.split(*toy_data, "task", PAIRS, order_seed=2)
    assert b1.meta["task_classes"] == b1again.meta["task_classes"]
    assert torch.equal(b1.train[0].x, b1again.train[0].x)
    assert b1.meta["task_classes"] != b2.meta["task_classes"]


def test_split_rejects_bad_input(toy_data):
    with pytest.raises(ValueError, match="scenario"):
        scenarios.split(*toy_data, "instance", PAIRS)
    with pytest.raises(ValueError):
        scenarios.split(*toy_data, "task", [[0, 1], [2, 3, 4]])


# -- permuted --------------------------------------------------------------------------------------

def test_permutations_deterministic_distinct_valid():
    perms = scenarios.permutations(4, 50, seed=11)
    again = scenarios.permutations(4, 50, seed=11)
    other = scenarios.permutations(4, 50, seed=12)
    assert all(torch.equal(a, b) for a, b in zip(perms, again))
    assert torch.equal(perms[0], torch.arange(50))               # first task unpermuted
    for p in perms:
        assert torch.equal(p.sort().values, torch.arange(50))    # a valid permutation
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(perms[i], perms[j])
    assert not torch.equal(perms[1], other[1])
    free = scenarios.permutations(4, 50, seed=11, first_identity=False)
    assert not torch.equal(free[0], torch.arange(50))
    assert all(torch.equal(a, b) for a, b in zip(free[1:], perms[1:]))   # identity only replaces #0


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS)
def test_permuted_benchmark_inputs_and_labels(toy_data, scenario):
    train, test = toy_data
    bench = scenarios.permuted(train, test, scenario, n_tasks=3, perm_seed=4)
    perms = scenarios.permutations(3, 20, 4)
    assert bench.n_tasks == 3 and bench.classes_per_task == 10
    assert bench.n_outputs == (10 if scenario == "domain" else 30)
    assert bench.train[0].perm is None and torch.equal(bench.train[0].inputs(), train.x)
    for t in range(3):
        for ds, task in ((train, bench.train[t]), (test, bench.test[t])):
            assert len(task) == len(ds.y)
            assert torch.equal(task.p, ds.y + 10 * t)            # p = digit + 10 t
            if t > 0:
                assert torch.equal(task.perm, perms[t])
            x = task.inputs()
            # manual indexing: pixel c of the task's input is pixel perm[c] of the original
            perm = perms[t].tolist()
            for i in (0, 5, len(ds.y) - 1):
                for c in (0, 7, 19):
                    assert x[i, c] == ds.x[i, perm[c]]
            assert torch.equal(x, ds.x[:, perms[t]])
        # train and test of a task share its permutation
        idx = torch.tensor([3, 1, 4])
        assert torch.equal(bench.train[t].inputs(idx), train.x[idx][:, perms[t]])
        assert torch.equal(bench.test[t].inputs(idx), test.x[idx][:, perms[t]])
    if scenario == "domain":
        assert torch.equal(bench.targets(bench.train[2].p, 2), train.y)
    elif scenario == "task":
        assert bench.active(2, 0) == (20, 30)
    else:
        assert bench.active(1, 1) == (0, 20) and torch.equal(bench.targets(bench.train[2].p, 2), train.y + 20)


def test_permuted_inputs_hand_example():
    x = torch.tensor([[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    task = scenarios.Task(x, torch.tensor([0, 1]), torch.tensor([2, 0, 1]))
    assert task.inputs().tolist() == [[12.0, 10.0, 11.0], [22.0, 20.0, 21.0]]
    assert task.inputs(torch.tensor([1])).tolist() == [[22.0, 20.0, 21.0]]


def test_permuted_invalid_scenario(toy_data):
    with pytest.raises(ValueError, match="scenario"):
        scenarios.permuted(*toy_data, "classes", 3, 0)


def test_benchmark_to_keeps_everything(toy_data):
    bench = scenarios.permuted(*toy_data, "task", 2, 1)
    moved = bench.to("cpu")
    assert moved.meta == bench.meta and moved.n_outputs == bench.n_outputs
    assert torch.equal(moved.train[1].perm, bench.train[1].perm)
    assert np.array_equal(moved.test[1].inputs().numpy(), bench.test[1].inputs().numpy())


def test_permuted_reference_input_format_pads_to_32_and_permutes_every_task():
    """The reference code's permuted MNIST (van de Ven & Tolias 2019, data.py): 28x28 images framed
    by 2 pixels of zeros (32x32), all 1024 positions permuted, task 1 too; fixed per seed."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 28 * 28, generator=g)
    ds = TensorDataset(x, torch.arange(6) % 3)
    bench = scenarios.permuted(ds, ds, "domain", n_tasks=3, perm_seed=7, first_identity=False, pad=2)
    assert bench.input_shape == (1024,)
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[2:30, 2:30] = False
    for task in bench.train:
        assert task.perm is not None and sorted(task.perm.tolist()) == list(range(1024))
        assert task.perm.tolist() != list(range(1024))
        img = task.inputs().reshape(6, 1024)
        unpermuted = torch.empty_like(img)
        unpermuted[:, task.perm] = img                        # undo the permutation
        unpermuted = unpermuted.reshape(6, 32, 32)
        assert torch.equal(unpermuted[:, 2:30, 2:30].reshape(6, -1), x)
        assert (unpermuted[:, frame] == 0).all()
    again = scenarios.permuted(ds, ds, "domain", n_tasks=3, perm_seed=7, first_identity=False, pad=2)
    assert all(torch.equal(a.perm, b.perm) for a, b in zip(bench.train, again.train))
    other = scenarios.permuted(ds, ds, "domain", n_tasks=3, perm_seed=8, first_identity=False, pad=2)
    assert not torch.equal(bench.train[0].perm, other.train[0].perm)
    assert all(torch.equal(a.perm, b.perm) for a, b in zip(bench.train, bench.test))   # same per task in test
    with pytest.raises(ValueError, match="benchmark.pad: the inputs are not square"):
        scenarios.permuted(TensorDataset(torch.rand(4, 20), torch.arange(4) % 2), ds, "task", 2, 0, pad=2)


# -- rotated ---------------------------------------------------------------------------------------

def test_rotated_tasks_are_the_images_turned_by_their_angle():
    """Task t: every image rotated by angles[t] counter-clockwise (90 degrees: exactly np.rot90),
    labels p = digit + 10 t; 0 degrees leaves the images as they are."""
    g = torch.Generator().manual_seed(0)
    train = TensorDataset(torch.rand(20, 36, generator=g), torch.arange(10).repeat(2))
    test = TensorDataset(torch.rand(10, 36, generator=g), torch.arange(10))
    bench = scenarios.rotated(train, test, "domain", [0, 90, 45])
    assert bench.n_tasks == 3 and bench.n_outputs == 10 and bench.meta == {"angles": [0, 90, 45]}
    assert torch.equal(bench.train[0].inputs(), train.x)
    turned = np.rot90(train.x.reshape(-1, 6, 6).numpy(), 1, axes=(1, 2)).reshape(-1, 36)
    assert torch.equal(bench.train[1].inputs(), torch.from_numpy(turned.copy()))
    assert torch.equal(bench.test[2].p, test.y + 20)
    assert not torch.equal(bench.train[2].inputs(), bench.train[1].inputs())
    with pytest.raises(ValueError, match="not square"):
        scenarios.rotated(TensorDataset(torch.rand(4, 20), torch.arange(4)), test, "domain", [0, 80])
