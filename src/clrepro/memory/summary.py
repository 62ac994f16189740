"""The numbers each panel of the consolidation simulation checks, with what they should show (the
report's table of a simulation)."""
from __future__ import annotations

import pandas as pd


def _fmt(v, digits=2) -> str:
    return "" if v is None or (isinstance(v, float) and pd.isna(v)) else f"{v:.{digits}f}"


def numbers(records: dict[str, dict]) -> pd.DataFrame:
    """The numbers each panel of the consolidation simulation checks, with what they should show."""
    rows = []

    def add(panel, quantity, value, expect):
        rows.append({"panel": panel, "quantity": quantity, "value": value, "qualitative check": expect})
    if "forgetting" in records:
        f = records["forgetting"]["summary"]
        add("(a)", "lifetime without rehearsal: theory tau ln(A0/A_c)", _fmt(f["lifetime_theory"], 1),
            "retrieval ends at this age")
        add("(a)", "measured: first age with P(retrieved) < 0.5 (dynamics / mean field)",
            f"{f['lifetime_retrieved']} / {f['lifetime_mean_field']}", "equal to the theory within a unit or two")
    if "rehearsal" in records:
        r = records["rehearsal"]["summary"]
        d, m = r["retrieved"], r["mean_field"]
        add("(b)", "mean lifetime with rehearsal (dynamics / mean field)",
            f"{_fmt(d['mean_lifetime'], 1)} / {_fmt(m['mean_lifetime'], 1)}",
            f"longer than without rehearsal ({_fmt(r['lifetime_no_rehearsal'], 1)})")
        add("(b)", "share of retrievable memories older than 10 tau", _fmt(d["older_than_10_tau"], 2),
            "consolidated memories outlive tau many times")
        add("(b)", "oldest retrievable memory / tau", _fmt(d["oldest_age_over_tau"], 1), "far above 1")
        e = r["efficacy"]
        add("(c)", "stored memories below A_c", _fmt(e["below_a_c"], 2),
            "forgotten memories below A_c, density ~ 1/A (flat against log A)")
        add("(c)", "median A / A_c of the retrievable", _fmt(e["retrievable_median_over_a_c"], 2),
            "a second mode above A_c: the consolidated memories")
    if "scaling" in records:
        for crit, name in (("retrieved", "dynamics"), ("mean_field", "mean field")):
            fit = records["scaling"]["summary"][crit]
            add("(d)", f"retrievable memories ~ N^b ({name}): b, R^2",
                f"{_fmt(fit['exponent'], 2)}, {_fmt(fit['r2'], 3)}", "a power law (straight on log-log axes)")
    if "lesion" in records:
        kept = records["lesion"]["summary"]["retained"]
        add("(e)", "retrievable after the lesion / control, by age at onset",
            "; ".join(f"{age}: {_fmt(v['lesion'], 2)}/{_fmt(v['control'], 2)}" for age, v in kept.items()),
            "recent memories lost more than old (temporally graded)")
    return pd.DataFrame(rows)
