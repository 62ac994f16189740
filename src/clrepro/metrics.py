"""Continual-learning metrics as pure functions of the accuracy matrix ``R`` (T x T), where
``R[i][j]`` is the test accuracy on task j after training task i, and of ``b``, the accuracy of the
randomly initialised network on each task (Lopez-Paz & Ranzato 2017, Sec. 4; Chaudhry et al.
2018, Eq. 4-6). Inputs are never modified."""
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


def summary(R, b) -> dict[str, float]:
    return {"acc": average_accuracy(R), "bwt": backward_transfer(R),
            "fwt": forward_transfer(R, b), "forgetting": forgetting(R)}
