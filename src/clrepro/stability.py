"""The stability gap (De Lange, van de Ven & Tuytelaars 2023): what a continual-evaluation curve
(``train.ContinualEval``) shows at a task switch, and an experiment's qualitative checks of it.

A check (``checks:`` in an experiment file) names a method, a task ``task`` and the switch after
task ``after`` (tasks numbered from 1), and states either

- a **drop**: the accuracy on ``task`` falls by at least ``min_drop`` points below its level at
  the switch within the first ``within`` iterations after it (``switch_drop``), or
- a **recovery**: by the end of the next task it is back within ``max_gap`` points of that level
  (``recovery_gap``).

Each is measured per run, and holds when the mean over the runs (seeds) does."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .aggregate import load_results, write_csv
from .metrics import task_curve

COLUMNS = ["check", "claim", "method", "scenario", "quantity", "expected", "mean", "sem", "n", "runs", "held"]


def _level_at_switch(points: dict, ends, task: int, after: int) -> tuple[np.ndarray, np.ndarray, float]:
    g, acc = task_curve(points, task - 1)
    at = np.flatnonzero(g == ends[after - 1])
    if not len(at):
        raise ValueError(f"no evaluation at the end of task {after} (iteration {ends[after - 1]})")
    return g, acc, float(acc[at[0]])


def switch_drop(points: dict, ends, task: int, after: int, within: int) -> float:
    """Level of ``task`` at the end of task ``after`` minus its lowest accuracy in the ``within``
    iterations that follow (percentage points when the curve is in percent)."""
    g, acc, level = _level_at_switch(points, ends, task, after)
    window = acc[(g > ends[after - 1]) & (g <= ends[after - 1] + within)]
    if not len(window):
        raise ValueError(f"no evaluation within {within} iterations after task {after}")
    return level - float(window.min())


def recovery_gap(points: dict, ends, task: int, after: int) -> float:
    """Level of ``task`` at the end of task ``after`` minus its accuracy at the end of the next."""
    g, acc, level = _level_at_switch(points, ends, task, after)
    end = np.flatnonzero(g == ends[after])
    if not len(end):
        raise ValueError(f"no evaluation at the end of task {after + 1}")
    return level - float(acc[end[0]])


def measure(check: dict, points: dict, ends) -> float:
    """A check's quantity on one run's curve, in percentage points."""
    pct = dict(points, acc=[[100 * a for a in row] for row in points["acc"]])
    if "min_drop" in check:
        return switch_drop(pct, ends, check["task"], check["after"], check["within"])
    return recovery_gap(pct, ends, check["task"], check["after"])


def checks_table(results: list[dict], checks: list[dict]) -> pd.DataFrame:
    """One row per check: the quantity measured on every run of its method (mean, SEM, n, the
    runs' values) and whether the mean is as the check expects."""
    rows = []
    for check in checks:
        runs = [r for r in results if r["method"] == check["method"] and r.get("continual_eval")
                and r["scenario"] == check.get("scenario", r["scenario"])]
        values = [measure(check, r["continual_eval"], np.cumsum(r["steps_per_task"]).tolist()) for r in runs]
        drop = "min_drop" in check
        mean = float(np.mean(values)) if values else float("nan")
        sem = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        rows.append({
            "check": check["id"], "claim": check["claim"], "method": check["method"],
            "scenario": check.get("scenario", runs[0]["scenario"] if runs else ""),
            "quantity": (f"drop of task {check['task']} within {check['within']} iterations after task "
                         f"{check['after']} (pp)") if drop else
                        f"task {check['task']}: level at the end of task {check['after']} minus at the end of "
                        f"task {check['after'] + 1} (pp)",
            "expected": f">= {check['min_drop']}" if drop else f"<= {check['max_gap']}",
            "mean": mean, "sem": sem, "n": len(values), "runs": json.dumps([round(v, 2) for v in values]),
            "held": "not run" if not values else
                    ("held" if (mean >= check["min_drop"] if drop else mean <= check["max_gap"]) else "not held"),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def main(result_paths, checks: list[dict], out) -> None:
    write_csv(checks_table(load_results(result_paths), checks), out)
