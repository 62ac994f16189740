"""The audit: every published number of an experiment beside ours, with a verdict.

Agreement test (two-sided): Welch's t on the two means with their standard errors,
``t = (m_ours - m_pub) / sqrt(se_ours^2 + se_pub^2)``, Welch-Satterthwaite degrees of freedom
``nu = (se_o^2 + se_p^2)^2 / (se_o^4/(n_o-1) + se_p^4/(n_p-1))``. Verdicts:

A published single run without a spread (an author's data file) is instead tested as one more
draw from the distribution of our runs (``predictive``).

- ``agrees``: p >= alpha (the difference is within what both spreads explain);
- ``close``: p < alpha but |difference| <= tolerance (percentage points);
- ``disagrees``: p < alpha and |difference| > tolerance;
- ``not run`` / ``no verdict (...)``: nothing to compare, a reduced preset, or too few seeds.

Beside the paper and ours, a third column: the authors' released code, run here unchanged
(``config/reference_runs.csv``: commit, command, seed, value, machine of each run, by the target
it bears on), so that a disagreement can be told apart into "the paper vs. the released code"
and "the released code vs. us".
"""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from .aggregate import read_csv, write_csv

SCENARIO_NAMES = {"task-IL": "task", "domain-IL": "domain", "class-IL": "class"}


def welch(m1: float, se1: float, n1: int, m2: float, se2: float, n2: int) -> tuple[float, float, float]:
    """(t, df, two-sided p) of Welch's test from means, standard errors and sample sizes."""
    var = se1 ** 2 + se2 ** 2
    if var == 0:
        return (0.0 if m1 == m2 else math.copysign(math.inf, m1 - m2)), math.inf, float(m1 == m2)
    t = (m1 - m2) / math.sqrt(var)
    denom = (se1 ** 4 / (n1 - 1) if n1 > 1 else 0) + (se2 ** 4 / (n2 - 1) if n2 > 1 else 0)
    df = var ** 2 / denom if denom > 0 else math.inf
    return t, df, float(2 * stats.t.sf(abs(t), df))


def to_sem(spread: float, kind: str, n: int) -> float:
    if kind == "sem":
        return spread
    if kind == "sd":
        return spread / math.sqrt(n)
    raise ValueError(f"targets.csv: unknown spread_kind {kind!r} (expected sem or sd)")


def verdict(p: float, diff: float, alpha: float, tolerance: float) -> str:
    if p >= alpha:
        return "agrees"
    return "close" if abs(diff) <= tolerance else "disagrees"


COLUMNS = ["target_id", "scenario", "method", "label", "our_scenario", "metric", "published", "published_sem",
           "n_published", "ours", "ours_sem", "n_ours", "difference", "test", "t", "df", "p_value", "verdict",
           "reference_code", "reference_code_runs", "source", "provenance", "paper"]


def code_version(run) -> str:
    """A reference run's code, as "GMvandeVen/continual-learning 86802a8" (", <variant>" when it has one)."""
    variant = "" if pd.isna(run.variant) else f", {run.variant}"
    return f"{run.code} {str(run.commit)[:7]}{variant}"


def reference_code(runs: pd.DataFrame | None, target_id: str) -> tuple[float | None, str]:
    """The mean of the reference-code runs bearing on ``target_id`` and each run, named by its
    code, commit and seed (e.g. "24.83 (GMvandeVen/continual-learning 86802a8, seed 1)")."""
    if runs is None or not len(runs):
        return None, ""
    mine = runs[runs.target_id == target_id]
    if not len(mine):
        return None, ""
    variant = mine.variant.fillna("").astype(str)
    listed = "; ".join(f"{r.value:.2f} ({code_version(r)}, seed {r.seed})" for r in mine.itertuples())
    main = mine[variant == ""]
    return (float(main.value.mean()) if len(main) else None), listed


def predictive(m: float, sd: float, n: int, value: float) -> tuple[float, float, float]:
    """(t, df, two-sided p) of "``value`` is one more run from the distribution of ours" (a
    published single run without a spread): ``t = (value - m) / (sd sqrt(1 + 1/n))``, df = n - 1."""
    t = (value - m) / (sd * math.sqrt(1 + 1 / n)) if sd > 0 else math.copysign(math.inf, value - m)
    return t, float(n - 1), float(2 * stats.t.sf(abs(t), n - 1))


def audit(summary: pd.DataFrame, targets: pd.DataFrame, target_key: str, experiment: str, preset: str,
          alpha: float = 0.05, tolerance: float = 1.0,
          mapping: dict | None = None, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per published number of ``target_key``. ``mapping`` {target_id: {method, metric,
    scenario}} says what of ours it is compared with (``method``: a key of the experiment's
    methods); otherwise the row of the target's scenario and method label, metric ``acc``."""
    rows = []
    ours = summary[summary.experiment == experiment]
    for _, tg in targets[targets.experiment == target_key].iterrows():
        scenario = SCENARIO_NAMES.get(tg.scenario, tg.scenario)
        if mapping and tg.target_id in mapping:
            m = mapping[tg.target_id]
            scenario, metric = m["scenario"], m["metric"]
            match = ours[(ours.scenario == scenario) & (ours.method == m["method"]) & (ours.metric == metric)]
            label = match.label.iloc[0] if len(match) else m["method"]
        else:
            label, metric = tg.method, "acc"
            match = ours[(ours.scenario == scenario) & (ours.label == label) & (ours.metric == metric)]
        n_pub = int(tg.n_seeds) if pd.notna(tg.n_seeds) else 0
        row = {"target_id": tg.target_id, "scenario": tg.scenario, "method": tg.method,
               "label": label, "our_scenario": scenario, "metric": metric,
               "published": tg.value, "published_sem": None, "n_published": n_pub,
               "ours": None, "ours_sem": None, "n_ours": 0, "difference": None, "test": None, "t": None,
               "df": None, "p_value": None, "verdict": "not run", "source": tg.source,
               "provenance": tg.provenance, "paper": tg.paper}
        row["reference_code"], row["reference_code_runs"] = reference_code(reference, tg.target_id)
        if pd.notna(tg.spread) and n_pub:
            row["published_sem"] = to_sem(float(tg.spread), tg.spread_kind, n_pub)
        if len(match):
            m = match.iloc[0]
            row.update(ours=m["mean"], ours_sem=m["sem"], n_ours=int(m["n"]), difference=m["mean"] - tg.value)
            if preset != "paper":
                row["verdict"] = f"no verdict ({preset} preset)"
            elif m["n"] < 2:
                row["verdict"] = "no verdict (one run of ours)"
            elif row["published_sem"] is not None and n_pub >= 2:
                t, df, p = welch(m["mean"], m["sem"], int(m["n"]), tg.value, row["published_sem"], n_pub)
                row.update(test="welch", t=t, df=df, p_value=p, verdict=verdict(p, row["difference"], alpha,
                                                                                  tolerance))
            elif n_pub == 1:
                t, df, p = predictive(m["mean"], m["sd"], int(m["n"]), tg.value)
                row.update(test="single published run", t=t, df=df, p_value=p,
                           verdict=verdict(p, row["difference"], alpha, tolerance))
            else:
                row["verdict"] = "no verdict (spread unknown)"
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def main(summary_csv, targets_csv, experiment, preset, out, alpha, tolerance, target_key=None, mapping=None,
         reference_csv=None):
    reference = read_csv(reference_csv) if reference_csv else None
    df = audit(read_csv(summary_csv), read_csv(targets_csv), target_key or experiment, experiment,
               preset, alpha, tolerance, mapping, reference)
    write_csv(df, out)
