"""Continual-learning metrics on hand-computed matrices."""
import math

import numpy as np
import pytest

from clrepro import metrics

# R[i][j]: accuracy on task j after training task i (T = 3)
R = [[0.90, 0.20, 0.10],
     [0.95, 0.80, 0.30],
     [0.50, 0.70, 0.95]]
# b[j]: the randomly initialised network on task j
B = [0.10, 0.15, 0.20]


def test_average_accuracy():
    # last row: (0.50 + 0.70 + 0.95) / 3 = 2.15 / 3 = 0.71666...
    assert metrics.average_accuracy(R) == pytest.approx(2.15 / 3)
    assert metrics.average_accuracy(R) == pytest.approx(0.7166666667)


def test_average_accuracy_curve():
    # after task 0: R00 = 0.90
    # after task 1: (R10 + R11) / 2 = (0.95 + 0.80) / 2 = 0.875
    # after task 2: (0.50 + 0.70 + 0.95) / 3 = 0.71666...
    curve = metrics.average_accuracy_curve(R)
    assert isinstance(curve, np.ndarray) and curve.shape == (3,)
    np.testing.assert_allclose(curve, [0.90, 0.875, 2.15 / 3])


def test_learned_and_per_task_accuracies():
    # learned: the diagonal (0.90 + 0.80 + 0.95) / 3; per task: last row and diagonal
    assert metrics.learned_accuracy(R) == pytest.approx(2.65 / 3)
    assert metrics.per_task(R) == {"acc_task1": 0.50, "acc_task2": 0.70, "acc_task3": 0.95,
                                   "learned_task1": 0.90, "learned_task2": 0.80, "learned_task3": 0.95}


def test_backward_transfer():
    # ((R20 - R00) + (R21 - R11)) / 2 = ((0.50 - 0.90) + (0.70 - 0.80)) / 2 = (-0.40 - 0.10) / 2 = -0.25
    assert metrics.backward_transfer(R) == pytest.approx(-0.25)


def test_forward_transfer():
    # ((R01 - b1) + (R12 - b2)) / 2 = ((0.20 - 0.15) + (0.30 - 0.20)) / 2 = (0.05 + 0.10) / 2 = 0.075
    assert metrics.forward_transfer(R, B) == pytest.approx(0.075)


def test_forgetting():
    # j = 0: max(R00, R10) - R20 = max(0.90, 0.95) - 0.50 = 0.45   (best accuracy, not the first)
    # j = 1: max(R11)      - R21 = 0.80 - 0.70             = 0.10
    # mean: (0.45 + 0.10) / 2 = 0.275  (differs from -BWT = 0.25 because R10 > R00)
    assert metrics.forgetting(R) == pytest.approx(0.275)


def test_forgetting_ignores_accuracy_before_a_task_was_learnt():
    # R01 = 0.99 (before task 1 was trained) must not count as task 1's best accuracy:
    # j = 0: max(0.6, 0.6) - 0.6 = 0;  j = 1: R11 - R21 = 0.8 - 0.8 = 0  ->  0
    R2 = [[0.6, 0.99, 0.1],
          [0.6, 0.80, 0.1],
          [0.6, 0.80, 0.9]]
    assert metrics.forgetting(R2) == pytest.approx(0.0)
    # and BWT is 0 too: (0.6 - 0.6 + 0.8 - 0.8) / 2
    assert metrics.backward_transfer(R2) == pytest.approx(0.0)


def test_summary_collects_all():
    s = metrics.summary(R, B)
    assert s == pytest.approx({"acc": 2.15 / 3, "bwt": -0.25, "fwt": 0.075, "forgetting": 0.275})


def test_single_task():
    assert metrics.average_accuracy([[0.7]]) == pytest.approx(0.7)
    np.testing.assert_allclose(metrics.average_accuracy_curve([[0.7]]), [0.7])
    assert np.isnan(metrics.backward_transfer([[0.7]]))
    assert np.isnan(metrics.forward_transfer([[0.7]], [0.1]))
    assert np.isnan(metrics.forgetting([[0.7]]))


def test_inputs_not_mutated():
    r_arr = np.array(R)
    b_arr = np.array(B)
    r_list = [row[:] for row in R]
    r_copy, b_copy = r_arr.copy(), b_arr.copy()
    for f in (metrics.average_accuracy, metrics.average_accuracy_curve, metrics.backward_transfer,
              metrics.forgetting):
        f(r_arr)
        f(r_list)
    metrics.forward_transfer(r_arr, b_arr)
    metrics.summary(r_arr, b_arr)
    assert np.array_equal(r_arr, r_copy) and np.array_equal(b_arr, b_copy)
    assert r_list == R


@pytest.mark.parametrize("bad", [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [0.1, 0.2], np.zeros((2, 2, 2))])
def test_non_square_raises(bad):
    for f in (metrics.average_accuracy, metrics.average_accuracy_curve, metrics.backward_transfer,
              metrics.forgetting):
        with pytest.raises(ValueError, match="square"):
            f(bad)
    with pytest.raises(ValueError, match="square"):
        metrics.forward_transfer(bad, [0.1, 0.1])


@pytest.mark.parametrize("b", [[0.1, 0.2], [0.1, 0.2, 0.3, 0.4], [[0.1, 0.2, 0.3]]])
def test_wrong_length_b_raises(b):
    with pytest.raises(ValueError, match="b must"):
        metrics.forward_transfer(R, b)


# Continual evaluation (De Lange et al. 2023): two tasks of two updates each, evaluated after every
# update; task 1 falls from 0.9 to 0.6 once task 2 starts, then recovers to 0.8.
CURVE = {"iteration": [0, 1, 2, 3, 4], "task": [0, 0, 1, 1, 1],
         "acc": [[0.1], [0.5], [0.9, 0.1], [0.6, 0.4], [0.8, 0.7]]}


def test_min_acc_is_the_lowest_accuracy_after_a_task_ended():
    # task 1 ended at iteration 2: its evaluations after it are 0.6 and 0.8 (its own 0.9 is not one)
    assert metrics.min_accuracy(CURVE, [2, 4]) == pytest.approx(0.6)
    assert math.isnan(metrics.min_accuracy(CURVE, [4]))


def test_wc_acc_weighs_the_last_task_against_the_worst_of_the_earlier():
    assert metrics.worst_case_accuracy(CURVE, [2, 4]) == pytest.approx(0.7 / 2 + 0.5 * 0.6)
    assert metrics.worst_case_accuracy({"iteration": [0], "task": [0], "acc": [[0.3]]}, [1]) == pytest.approx(0.3)


def test_windowed_forgetting_is_the_largest_drop_within_the_window():
    curve = {"iteration": [0, 1, 2], "task": [0, 0, 0], "acc": [[0.9], [0.8], [0.5]]}
    assert metrics.windowed_forgetting(curve, 2) == pytest.approx(0.3)     # 0.8 -> 0.5
    assert metrics.windowed_forgetting(curve, 3) == pytest.approx(0.4)     # 0.9 -> 0.5
    # CURVE: task 1 drops 0.9 -> 0.6, task 2 only rises: (0.3 + 0) / 2
    assert metrics.windowed_forgetting(CURVE, 2) == pytest.approx(0.15)
    assert metrics.continual(CURVE, [2, 2], 2) == pytest.approx({"min_acc": 0.6, "wc_acc": 0.65, "wf": 0.15})
    with pytest.raises(ValueError, match="window"):
        metrics.windowed_forgetting(CURVE, 1)


def test_the_tables_take_every_metric_from_R_and_the_recorded_curve(tmp_path):
    """A committed run of the stability-gap experiment whose stored summaries are wrong: the runs
    table computes ACC, BWT, FWT, forgetting, learned and the continual-evaluation metrics again."""
    import json

    from clrepro import aggregate
    from conftest import REPO

    record = json.loads((REPO / "reports/paper/runs/rotated_mnist_stability_gap/domain/er/seed0.json").read_text())
    record["metrics"] = dict.fromkeys(metrics.SUMMARY, -1.0)
    record["continual_eval"]["metrics"] = dict.fromkeys(metrics.CONTINUAL, -1.0)
    (tmp_path / "seed0.json").write_text(json.dumps(record))
    row = aggregate.runs_table(aggregate.load_results([tmp_path / "seed0.json"])).iloc[0]
    R, b, curve = record["R"], record["random_init"], record["continual_eval"]
    assert row.acc == pytest.approx(100 * np.mean(R[-1])) and row.learned == pytest.approx(100 * np.mean(np.diag(R)))
    assert row.fwt == pytest.approx(100 * metrics.forward_transfer(R, b))
    ends = np.cumsum(record["steps_per_task"]).tolist()
    assert row.min_acc == pytest.approx(100 * metrics.min_accuracy(curve, ends)) and row.min_acc > 0
    assert row.wf == pytest.approx(100 * metrics.windowed_forgetting(curve, curve["window"]))
