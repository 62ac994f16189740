"""What a configuration costs to run: per experiment, its runs and the CPU- or GPU-hours of
training they take, estimated from the training times of the committed runs of the paper preset
(``reports/paper/runs/<experiment>/<scenario>/<method>/seed<N>.json``, every committed run whether
the report shows it or not): a CPU run's CPU time (``cpu_seconds_per_task``), where it has it for
every task, else its wall time (``seconds_per_task``, which also counts the time it was paused or
waited for a core), and a GPU run's wall time; where some of a cell's CPU runs have CPU times, the
estimate uses only those. Experiments without committed paper runs, and other presets, are "not
measured"."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from . import config as clconfig
from .aggregate import cpu_seconds, load_results

#: the committed results whose training times are the estimates
MEASURED = Path(__file__).resolve().parents[2] / "reports" / "paper" / "runs"
COLUMNS = ["experiment", "scenario", "method", "method_class", "train_seconds", "device", "kind", "clock"]


def measured_times(root: str | Path = MEASURED) -> pd.DataFrame:
    """experiment, scenario, method, method_class, train_seconds (CPU time where a CPU run has it,
    else wall time), device, kind ("CPU" or "GPU") and clock ("cpu" or "wall": which time
    train_seconds is) of each committed paper run under ``root`` (its reruns,
    ``seed<N>.rerun.json``, left out); empty when there are none."""
    paths = sorted(p for p in Path(root).glob("*/*/*/seed*.json") if re.fullmatch(r"seed\d+\.json", p.name))
    rows = []
    for path, r in zip(paths, load_results(paths)):
        try:
            device, cpu = r["provenance"]["device"], cpu_seconds(r)
            gpu = str(device).startswith("cuda")
            wall = gpu or cpu is None
            rows.append((r["experiment"], r["scenario"], r["method"], r["method_class"],
                         float(sum(r["seconds_per_task"])) if wall else cpu, device, "GPU" if gpu else "CPU",
                         "wall" if wall else "cpu"))
        except (KeyError, TypeError) as err:
            raise ValueError(f"cost: cannot read the training time of {path}: {err!r}") from None
    return pd.DataFrame(rows, columns=COLUMNS)


def _mean_seconds(rows: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Mean train_seconds per group of ``keys``, over the group's CPU-timed runs where it has any
    (a wall time also counts the time a run was paused or waited for a core)."""
    cpu = rows.clock.eq("cpu")
    keep = cpu | ~cpu.groupby([rows[k] for k in keys]).transform("any")
    return rows[keep].groupby(keys).train_seconds.mean()


def estimate(cfg: dict, runs: list[clconfig.Run] | None = None, times: pd.DataFrame | None = None) -> dict:
    """{experiment: {"runs": n, "hours": h or None, "kind": "CPU"/"GPU"/None, "device": str or None,
    "measured": committed runs the estimate is from}} for ``runs`` (default: every run of ``cfg``).
    A run takes the mean time of the committed runs of its method and scenario on the experiment's
    usual kind of device, else of its method, else of its method class (DGR+distill: DGR), else of
    the experiment; each mean is over the CPU-timed runs among them where there are any."""
    runs = clconfig.runs(cfg) if runs is None else runs
    times = measured_times() if times is None else times
    out = {}
    for name in cfg.experiments:
        mine = [r for r in runs if r.experiment == name]
        rows = times[times.experiment == name]
        entry = {"runs": len(mine), "hours": None, "kind": None, "device": None, "measured": 0}
        if cfg["preset"] == "paper" and len(rows):
            kind = rows.kind.value_counts().idxmax()
            rows = rows[rows.kind == kind]
            by_cell = _mean_seconds(rows, ["method", "scenario"])
            by_method = _mean_seconds(rows, ["method"])
            by_class = _mean_seconds(rows, ["method_class"])
            overall = _mean_seconds(rows, ["experiment"]).iloc[0]
            entries = cfg.experiments[name]["methods"]
            seconds = sum(by_cell.get((r.method, r.scenario), by_method.get(r.method, by_class.get(
                entries[r.method]["method"], overall))) for r in mine)
            entry.update(hours=seconds / 3600, kind=kind, device=rows.device.value_counts().idxmax(),
                         measured=len(rows))
        out[name] = entry
    return out


def _hours(entry: dict) -> str:
    if entry["hours"] is None:
        return "not measured"
    h = entry["hours"]
    return f"~{h:.0f} {entry['kind']}-hours" if h >= 10 else f"~{h:.1f} {entry['kind']}-hours"


def summary(cfg: dict, todo: list[clconfig.Run] | None = None, times: pd.DataFrame | None = None) -> str:
    """Lines for the terminal: each experiment's runs and hours, and (``todo``) how many of them
    are still to train (those whose data can be had will)."""
    times = measured_times() if times is None else times
    full = estimate(cfg, None, times)
    now = estimate(cfg, todo, times) if todo is not None else None
    where = ("from the training times of the committed paper runs, reports/paper/runs/; a GPU-hour is a "
             "training job's time on a GPU it may share with others" if cfg["preset"] == "paper" else
             f"times are measured for the paper preset only, not for {cfg['preset']!r}")
    lines = [f"clrepro: what preset {cfg['preset']!r} costs ({where}):"]
    width = max(map(len, full), default=0)
    for name, entry in full.items():
        line = f"  {name:<{width}}  {entry['runs']:>5} runs  {_hours(entry)}"
        if entry["device"]:
            line += f" (measured on {entry['device']}, {entry['measured']} runs)"
        if now is not None:
            left = now[name]
            line += ("; all present" if not left["runs"] else
                     f"; {left['runs']} to train" + (f", {_hours(left)}" if left["hours"] is not None else ""))
        lines.append(line)
    return "\n".join(lines)
