"""Collect run results into tidy tables (all accuracies in percent):

- ``runs.csv``: one row per run, with everything that produced it (method, variant and
  hyperparameters, seeds, preset, code version, package versions, device);
- ``accuracy.csv``: long format, one row per run and R[i][j] (``after_task`` 0 = untrained);
- ``summary.csv``: mean, sd, sem and n over seeds of each metric per experiment/scenario/method.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics, stale
from .atomic import atomic_path

KEYS = ["experiment", "scenario", "method", "label"]


def load_results(paths) -> list[dict]:
    """The results, each with the rerun written beside it (``<seed>.rerun.json``: a rerun of a
    committed result that gave other numbers) under ``"rerun"``."""
    out = []
    for p in paths:
        try:
            result = json.loads(Path(p).read_text())
            rerun = Path(p).with_name(f"{Path(p).stem}.rerun.json")
            if rerun.exists():
                result["rerun"] = json.loads(rerun.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read run result {p}: {err}") from None
        out.append(result)
    return out


def cpu_seconds(r: dict) -> float | None:
    """A run's training CPU time: the sum of ``cpu_seconds_per_task``, or None where a task lacks it
    (a run resumed from a checkpoint written before CPU times were kept) or the run predates it."""
    cpu = r.get("cpu_seconds_per_task") or [None]
    return None if None in cpu else float(sum(cpu))


def runs_table(results: list[dict], labels: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    rows = []
    code = stale.statuses(results)
    for r, training_code in zip(results, code):
        prov = r["provenance"]
        row = {k: r[k] for k in ("experiment", "scenario", "method", "seed", "preset", "method_class")}
        row["label"] = (labels or {}).get((r["experiment"], r["method"]), r["method"])
        row.update({m: 100 * of(r["R"], r["random_init"]) for m, of in metrics.OF_R.items()})
        if r.get("continual_eval"):   # from the curve the run recorded
            curve = r["continual_eval"]
            row.update({m: 100 * v for m, v in metrics.continual(curve, r["steps_per_task"], curve["window"]).items()})
        row.update({k: 100 * v for k, v in metrics.per_task(r["R"]).items()})
        row.update({f"hp.{k}": v for k, v in sorted(r["hyperparameters"].items())})
        row["hyperparameters"] = json.dumps(r["hyperparameters"], sort_keys=True)
        row.update({f"seed.{k}": v for k, v in r["seeds"].items() if k != "seed"})
        row["task_classes"] = json.dumps(r.get("task_classes"))
        row["iters_per_task"] = r["protocol"].get("iters_per_task")
        row["epochs_per_task"] = r["protocol"].get("epochs_per_task")
        row["steps"] = json.dumps(r.get("steps_per_task"))
        row["method_log"] = json.dumps(r["method_log"]) if r.get("method_log") else ""
        row["batch_size"] = r["protocol"]["batch_size"]
        row["model"] = json.dumps(r["protocol"]["model"], sort_keys=True)
        row["train_seconds"] = sum(r["seconds_per_task"])
        row["cpu_seconds"] = cpu_seconds(r)
        row["stored"] = r.get("memory", {}).get("stored")
        row["memory_bytes"] = r.get("memory", {}).get("bytes")
        row["peak_rss_mb"] = r.get("peak_rss_mb")
        row["resumed"] = r.get("resumed", False)
        row["spec_hash"] = r["spec_hash"]
        row["git_commit"] = prov["git"]["commit"]
        row["git_dirty"] = prov["git"]["dirty"]
        row["training_code"] = training_code
        row.update({f"version.{k}": v for k, v in prov["packages"].items()})
        row["device"] = prov["device"]
        row["precision"] = prov.get("precision", "fp32")
        row["channels_last"] = prov.get("channels_last", False)
        row["adam"] = prov.get("adam", "foreach")   # earlier results: the per-parameter loop, bit-identical
        row["denormals"] = prov.get("denormals", "keep")   # earlier results computed with them
        row["host"] = prov.get("hostname", "")
        row["slurm_job"] = prov.get("scheduler", {}).get("SLURM_JOB_ID", "")
        if "rerun" in r:
            row["rerun_acc"] = 100 * metrics.summary(r["rerun"]["R"], r["rerun"]["random_init"])["acc"]
            row["rerun_device"] = r["rerun"]["provenance"]["device"]
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(["experiment", "scenario", "method", "seed"]).reset_index(drop=True)


def accuracy_table(results: list[dict], labels: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    rows = []
    for r in results:
        base = {k: r[k] for k in ("experiment", "scenario", "method", "seed", "preset")}
        base["label"] = (labels or {}).get((r["experiment"], r["method"]), r["method"])
        for j, b in enumerate(r["random_init"]):
            rows.append({**base, "after_task": 0, "task": j + 1, "accuracy": 100 * b})
        for i, row in enumerate(r["R"]):
            for j, a in enumerate(row):
                rows.append({**base, "after_task": i + 1, "task": j + 1, "accuracy": 100 * a})
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (ddof 1), sem and n over seeds of each metric (the overall ones and, per task, the
    final and just-learned accuracies)."""
    per_task = sorted((c for c in runs.columns if metrics.parse_task_metric(c)),
                      key=lambda c: (metrics.parse_task_metric(c)[0] != "acc", metrics.parse_task_metric(c)[1]))
    present = [m for m in [*metrics.OF_R, *metrics.CONTINUAL] if m in runs.columns] + per_task
    long = runs.melt(id_vars=KEYS + ["preset", "seed"], value_vars=present,
                     var_name="metric").dropna(subset=["value"])
    g = long.groupby(KEYS + ["preset", "metric"], sort=False)["value"]
    out = g.agg(mean="mean", sd=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan, n="count").reset_index()
    out["sem"] = out["sd"] / np.sqrt(out["n"])
    return out[KEYS + ["preset", "metric", "mean", "sd", "sem", "n"]]


def read_csv(path) -> pd.DataFrame:
    """Read a table of ours or targets.csv; only empty cells are missing ("None" is a method)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def write_csv(df: pd.DataFrame, path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def main(results, runs_csv, accuracy_csv, summary_csv, labels: dict | None = None) -> None:
    res = load_results(results)
    runs = runs_table(res, labels)
    write_csv(runs, runs_csv)
    write_csv(accuracy_table(res, labels), accuracy_csv)
    write_csv(summarise(runs), summary_csv)
