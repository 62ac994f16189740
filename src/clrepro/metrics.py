"""Continual-learning metrics as pure functions of the accuracy matrix ``R`` (T x T), where
``R[i][j]`` is the test accuracy on task j after training task i, and of ``b``, the accuracy of the
randomly initialised network on each task (Lopez-Paz & Ranzato 2017, Sec. 4; Chaudhry et al.
2018, Eq. 4-6); and of a continual-evaluation curve (De Lange, van de Ven & Tuytelaars 2023,
Sec. 3). Inputs are never modified."""
from __future__ import annotations

import numpy as np


def _R(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"R must be a square T x T matrix, got shape {R.shape}")
    return R


def average_accuracy(R) -> float:
    """ACC = 1/T sum_j R[T-1, j]: mean accuracy over all tasks after the last one."""
    R = _R(R)
    return float(R[-1].mean())


def average_accuracy_curve(R) -> np.ndarray:
    """Mean accuracy over the tasks seen so far, after each task: 1/(i+1) sum_{j<=i} R[i, j]."""
    R = _R(R)
    return np.array([R[i, : i + 1].mean() for i in range(len(R))])


def backward_transfer(R) -> float:
    """BWT = 1/(T-1) sum_{j<T-1} (R[T-1, j] - R[j, j]); negative values mean forgetting."""
    R = _R(R)
    if len(R) < 2:
        return float("nan")
    return float(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


def forward_transfer(R, b) -> float:
    """FWT = 1/(T-1) sum_{j>0} (R[j-1, j] - b[j]), with b the random-init accuracies."""
    R, b = _R(R), np.asarray(b, dtype=float)
    if b.shape != (len(R),):
        raise ValueError(f"b must have one entry per task ({len(R)}), got shape {b.shape}")
    if len(R) < 2:
        return float("nan")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, len(R))]))


def forgetting(R) -> float:
    """Average forgetting = 1/(T-1) sum_{j<T-1} max_{l<T-1} (R[l, j] - R[T-1, j]) over l >= j."""
    R = _R(R)
    T = len(R)
    if T < 2:
        return float("nan")
    return float(np.mean([R[j:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]))


def learned_accuracy(R) -> float:
    """1/T sum_j R[j, j]: mean accuracy on each task right after training it."""
    return float(np.diag(_R(R)).mean())


def per_task(R) -> dict[str, float]:
    """Each task's final accuracy ``acc_task{j}`` = R[T-1, j-1] and its accuracy right after it was
    trained ``learned_task{j}`` = R[j-1, j-1] (tasks numbered from 1)."""
    R = _R(R)
    out = {f"acc_task{j + 1}": float(R[-1, j]) for j in range(len(R))}
    out.update({f"learned_task{j + 1}": float(R[j, j]) for j in range(len(R))})
    return out


def parse_task_metric(name: str) -> tuple[str, int] | None:
    """("acc" or "learned", task) of a per-task metric name of ``per_task``; None for others."""
    kind, sep, task = name.partition("_task")
    return (kind, int(task)) if sep and kind in ("acc", "learned") and task.isdigit() else None


#: every metric of a run's R (and b) the tables, figures and audit use, in the order they list
#: them; besides these, each task's ``per_task`` metrics and, with continual evaluation, ``CONTINUAL``
OF_R = {"acc": lambda R, b: average_accuracy(R), "bwt": lambda R, b: backward_transfer(R), "fwt": forward_transfer,
        "forgetting": lambda R, b: forgetting(R), "learned": lambda R, b: learned_accuracy(R)}
#: those a result records (``summary``)
SUMMARY = ("acc", "bwt", "fwt", "forgetting")
#: the continual-evaluation metrics (``continual``)
CONTINUAL = ("min_acc", "wc_acc", "wf")


def summary(R, b) -> dict[str, float]:
    return {m: OF_R[m](R, b) for m in SUMMARY}


def is_metric_of_R(name: str) -> bool:
    """Whether ``name`` is a metric of R: one of ``OF_R`` or a per-task one."""
    return name in OF_R or parse_task_metric(name) is not None


# -- continual evaluation: ``points`` = {"iteration": [g], "task": [t], "acc": [[A_0 .. A_t]]}, the
# accuracy on tasks 0..t of the network after g updates (``train.ContinualEval``); ``ends[i]``: the
# iteration at which task i's training ended (n_i).

def task_curve(points: dict, task: int) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, accuracies) of the evaluations of one task."""
    pairs = [(g, row[task]) for g, row in zip(points["iteration"], points["acc"]) if len(row) > task]
    return np.array([g for g, _ in pairs], dtype=float), np.array([a for _, a in pairs], dtype=float)


def min_accuracy(points: dict, ends) -> float:
    """min-ACC = 1/(T-1) sum_{i<T-1} min_{n_i < g} A_i(g): per earlier task, the lowest accuracy
    at any evaluation after its training ended (the stability gap's depth), averaged."""
    if len(ends) < 2:
        return float("nan")
    lows = []
    for i in range(len(ends) - 1):
        g, acc = task_curve(points, i)
        after = acc[g > ends[i]]
        lows.append(after.min() if len(after) else float("nan"))
    return float(np.mean(lows))


def worst_case_accuracy(points: dict, ends) -> float:
    """WC-ACC = 1/T A_T(end) + (1 - 1/T) min-ACC: the last task's final accuracy against the worst
    seen on the earlier ones (T = 1: the accuracy itself)."""
    T = len(ends)
    last = points["acc"][-1][T - 1]
    return float(last) if T == 1 else float(last / T + (1 - 1 / T) * min_accuracy(points, ends))


def windowed_forgetting(points: dict, window: int) -> float:
    """WF^w: per task, the largest drop A(m) - A(n), m < n, among any ``window`` consecutive
    evaluations of it (0 if it never drops), averaged over the tasks evaluated (as the authors'
    code, ``WindowedForgettingPluginMetric``, which counts the window in evaluations)."""
    if window < 2:
        raise ValueError(f"window must span at least 2 evaluations, got {window}")
    drops = []
    for task in range(max(len(row) for row in points["acc"])):
        acc = task_curve(points, task)[1]
        worst = 0.0
        for n in range(1, len(acc)):
            worst = max(worst, acc[max(0, n - window + 1):n].max() - acc[n])
        drops.append(worst)
    return float(np.mean(drops))


def continual(points: dict, steps, window: int) -> dict[str, float]:
    """The continual-evaluation metrics of a run whose task i took ``steps[i]`` updates."""
    ends = np.cumsum(steps).tolist()
    return dict(zip(CONTINUAL, (min_accuracy(points, ends), worst_case_accuracy(points, ends),
                                windowed_forgetting(points, window))))
