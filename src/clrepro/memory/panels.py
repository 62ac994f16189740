"""The stochastic-consolidation experiment (Shaham et al. 2022), panel by panel. Each panel
simulates ``Stream``s for several seeds and returns a tidy table (one row per memory, snapshot or
network size) and a summary of the numbers the report quotes:

- ``forgetting`` (a): no rehearsal; retrieval against age, beside the theory T* = tau ln(A_0/A_c).
- ``rehearsal`` (b, c): with rehearsal, snapshots at equilibrium; retrieval probability against
  age (one memory is born per unit time, so P(age) = retrieved memories of that age / snapshots
  old enough to hold one)
  and the efficacy distribution.
- ``scaling`` (d): retrievable memories at equilibrium against N; fitted power of N.
- ``lesion`` (e): from snapshots at equilibrium, the stream branches into a lesion (decay time
  ``tau`` for ``duration`` units) and a control; which memories retrievable at onset survive,
  by their age at onset.

Retrieval is scored both ways: ``mean_field`` (A_l > A_c) and ``retrieved`` (the network dynamics
from a corrupted cue end with overlap > threshold).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ..methods.base import derive_seed
from .consolidation import Stream

#: figure -> the panel whose table it draws ((c), the efficacy distribution, is drawn from (b)'s)
FIGURES = {"forgetting": "forgetting", "rehearsal": "rehearsal", "efficacy": "rehearsal",
           "scaling": "scaling", "lesion": "lesion"}


def stream(model: dict, n: int, seed: int, device, rehearse: bool = True) -> Stream:
    return Stream(n, model["tau"], model["a0"], model["lam"] if rehearse else 0.0, model["boost"], seed,
                  model["alpha_c"], model["prune"], device)


def measure(s: Stream, retrieval: dict, tag) -> dict[str, np.ndarray]:
    """Every stored memory now: age, efficacy, A_c, both retrieval criteria."""
    mem, a_c = s.mem, s.mem.critical(s.alpha_c)
    overlap, ok = mem.retrieved(retrieval["flip"], retrieval["steps"], retrieval["threshold"],
                                derive_seed(mem.seed, "cues", tag, s.t))
    return {"age": mem.ages(s.t - 1).cpu().numpy(), "efficacy": mem.efficacy.cpu().numpy(),
            "a_c": np.full(len(mem.born), a_c), "mean_field": (mem.efficacy > a_c).cpu().numpy(),
            "overlap": overlap.cpu().numpy(), "retrieved": ok.cpu().numpy()}


def _table(parts: list[dict]) -> pd.DataFrame:
    return pd.concat([pd.DataFrame(p) for p in parts], ignore_index=True)


def retention_by_age(df: pd.DataFrame, criterion: str) -> pd.Series:
    """P(retrievable | age): retrieved memories of each age over the snapshots (rows ``seed``,
    ``t``) taken at t >= age, each of which held exactly one memory of that age (one is born per
    unit time; pruned memories count as not retrievable)."""
    times = np.sort(df[["seed", "t"]].drop_duplicates()["t"].to_numpy())
    ages = np.arange(int(df["age"].max()) + 1)
    held = len(times) - np.searchsorted(times, ages, side="left")   # snapshots with t >= age
    hits = df[df[criterion]].groupby("age").size().reindex(ages, fill_value=0).to_numpy()
    return pd.Series(hits / held, index=ages, name=criterion)


def first_age_below(p: pd.Series, level: float) -> int | None:
    below = p.index[p.values < level]
    return int(below[0]) if len(below) else None


def no_rehearsal_lifetime(model: dict, n: int) -> tuple[float, float]:
    """Steady state without rehearsal: sum A^2 = A_0^2 / (1 - e^{-2/tau}), so
    A_c = A_0 / sqrt((1 - e^{-2/tau}) alpha_c N) and T* = tau ln(A_0 / A_c)."""
    a_c = model["a0"] / math.sqrt((1 - math.exp(-2 / model["tau"])) * model["alpha_c"] * n)
    return a_c, model["tau"] * math.log(model["a0"] / a_c)


def forgetting(p: dict, model: dict, retrieval: dict, seeds: list[int], device) -> tuple[pd.DataFrame, dict]:
    parts = []
    for seed in seeds:
        s = stream(model, p["n"], seed, device, rehearse=False).run(p["steps"])
        parts.append({"seed": seed, "t": s.t - 1, **measure(s, retrieval, "forgetting")})
    df = _table(parts)
    a_c, lifetime = no_rehearsal_lifetime(model, p["n"])
    summary = {"a_c_theory": a_c, "lifetime_theory": lifetime, "a_c_mean": float(df["a_c"].mean())}
    for crit in ("mean_field", "retrieved"):
        summary[f"lifetime_{crit}"] = first_age_below(retention_by_age(df, crit), 0.5)
    return df, summary


def _equilibrium(p: dict, model: dict, n: int, seed: int, device):
    """A stream run to equilibrium (``burn_in``), then ``snapshots`` times ``every`` units more;
    yields it at each snapshot."""
    s = stream(model, n, seed, device).run(p["burn_in"])
    for _ in range(p["snapshots"]):
        yield s.run(p["every"])


def rehearsal(p: dict, model: dict, retrieval: dict, seeds: list[int], device) -> tuple[pd.DataFrame, dict]:
    parts = []
    for seed in seeds:
        for s in _equilibrium(p, model, p["n"], seed, device):
            parts.append({"seed": seed, "t": s.t - 1, **measure(s, retrieval, "rehearsal")})
    df = _table(parts)
    snapshots = len(seeds) * p["snapshots"]
    _, lifetime0 = no_rehearsal_lifetime(model, p["n"])
    summary = {"lifetime_no_rehearsal": lifetime0, "tau": model["tau"], "snapshots": snapshots}
    for crit in ("mean_field", "retrieved"):
        ret = retention_by_age(df, crit)
        half, alive = first_age_below(ret, 0.5), df[df[crit]]
        summary[crit] = {
            # one memory is born per unit time: the mean number retrievable is the mean lifetime
            "mean_lifetime": float(len(alive) / snapshots),
            "half_life": half,
            "older_than_10_tau": float((alive["age"] >= 10 * model["tau"]).mean()),
            "oldest_age_over_tau": float(alive["age"].max() / model["tau"]),
        }
    x = df["efficacy"] / df["a_c"]
    summary["efficacy"] = {"below_a_c": float((x < 1).mean()),
                           "retrievable_median_over_a_c": float(x[x > 1].median())}
    return df, summary


def scaling(p: dict, model: dict, retrieval: dict, seeds: list[int], device) -> tuple[pd.DataFrame, dict]:
    rows = []
    for n in p["n"]:
        for seed in seeds:
            for s in _equilibrium(p, model, n, seed, device):
                m = measure(s, retrieval, "scaling")
                rows.append({"n": n, "seed": seed, "t": s.t - 1, "stored": len(m["age"]),
                             "mean_field": int(m["mean_field"].sum()), "retrieved": int(m["retrieved"].sum())})
    df = pd.DataFrame(rows)
    summary = {crit: power_law(df.groupby("n")[crit].mean()) for crit in ("mean_field", "retrieved")}
    return df, summary


def power_law(counts: pd.Series) -> dict:
    """Least-squares fit log M = b log N + log a over the sizes with M > 0: exponent b, a, R^2."""
    counts = counts[counts > 0]
    x, y = np.log(counts.index.to_numpy(float)), np.log(counts.to_numpy(float))
    if len(x) < 2:
        return {"exponent": None, "prefactor": None, "r2": None}
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    r2 = 1 - resid.var() / y.var() if y.var() > 0 else 1.0
    return {"exponent": float(b), "prefactor": float(math.exp(a)), "r2": float(r2)}


def lesion(p: dict, model: dict, retrieval: dict, seeds: list[int], device) -> tuple[pd.DataFrame, dict]:
    parts = []
    for seed in seeds:
        for s in _equilibrium(p, model, p["n"], seed, device):
            onset = measure(s, retrieval, "onset")
            alive = onset["retrieved"]
            born = s.mem.born[torch.from_numpy(alive).to(s.mem.born.device)]
            for branch, tau in (("lesion", p["tau"]), ("control", None)):
                b = s.branch(branch).run(p["duration"], tau)
                after = measure(b, retrieval, branch)
                index = {int(k): i for i, k in enumerate(b.mem.born.tolist())}
                rows = [index.get(int(k)) for k in born.tolist()]
                parts.append({
                    "seed": seed, "onset": s.t - 1, "branch": branch, "age_at_onset": onset["age"][alive],
                    "margin_at_onset": onset["efficacy"][alive] / onset["a_c"][alive],   # A / A_c
                    "mean_field": np.array([r is not None and bool(after["mean_field"][r]) for r in rows], bool),
                    "retrieved": np.array([r is not None and bool(after["retrieved"][r]) for r in rows], bool)})
    df = _table(parts)
    df["age_bin"] = age_bins(df["age_at_onset"], p["age_bins"])
    kept = df.groupby(["branch", "age_bin"], observed=True)["retrieved"].mean().unstack(0)
    summary = {"retained": {str(k): {b: float(v) for b, v in row.items()} for k, row in kept.iterrows()},
               "lesion": {"tau": p["tau"], "duration": p["duration"]}}
    return df, summary


def age_bins(ages: pd.Series, edges: list[int]) -> pd.Series:
    """Ages binned at ``edges`` ([0, 10, 30] -> "0-9", "10-29", ">=30")."""
    labels = [f"{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]}"]
    return pd.cut(ages, [*edges, np.inf], right=False, labels=labels)


RUNNERS = {"forgetting": forgetting, "rehearsal": rehearsal, "scaling": scaling, "lesion": lesion}


def main(sim: dict, name: str, panel: str, out_csv, out_json, device: str = "auto", threads: int | None = None):
    """Simulate one panel of the simulation ``name`` (a loaded config) and write its table and a
    JSON record: parameters, seeds, preset, summary, code and package versions, device."""
    import json
    import time
    from pathlib import Path

    from .. import provenance
    from ..atomic import atomic_path
    from ..config import seeds_of
    from ..devices import select_device

    if panel not in RUNNERS:
        raise ValueError(f"panel: unknown panel {panel!r} (one of {', '.join(RUNNERS)})")
    if threads:
        torch.set_num_threads(threads)
    dev = select_device(device)
    seeds, p = seeds_of(sim), sim["panels"][panel]
    prov = provenance.collect(dev, Path(__file__).resolve().parents[3])   # the code that runs now
    t0 = time.perf_counter()
    df, summary = RUNNERS[panel](p, sim["model"], sim["retrieval"], seeds, dev)
    record = {"simulation": name, "panel": panel, "preset": sim["preset"], "seeds": seeds,
              "model": sim["model"], "retrieval": sim["retrieval"], "parameters": p, "summary": summary,
              "seconds": time.perf_counter() - t0, "provenance": prov}
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return df, record
