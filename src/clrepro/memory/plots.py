"""Figures of the stochastic-consolidation experiment, drawn from the panels' tables and records."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..figures import _save, plt, sns
from .panels import FIGURES, retention_by_age

CRITERIA = {"retrieved": "network dynamics", "mean_field": "mean field (A > A_c)"}


def forgetting(df: pd.DataFrame, rec: dict, ax) -> None:
    """(a) Without rehearsal: efficacy and retrieval against age; theory's lifetime marked."""
    for crit, style in zip(CRITERIA, ("-", "--")):
        p = retention_by_age(df, crit)
        ax[1].plot(p.index, p.values, style, label=CRITERIA[crit])
    first = df[df.seed == rec["seeds"][0]]
    ax[0].semilogy(first["age"], first["efficacy"], ".", ms=3, label="memories (first seed)")
    ax[0].axhline(rec["summary"]["a_c_mean"], ls="--", c="k", lw=1, label="A_c")
    ax[0].set(xlabel="age", ylabel="efficacy A", title="(a) efficacy without rehearsal")
    t_star = rec["summary"]["lifetime_theory"]
    ax[1].axvline(t_star, c="k", lw=1, ls=":", label=f"tau ln(A0/A_c) = {t_star:.1f}")
    ax[1].set(xlabel="age", ylabel="P(retrieved)", title="(a) complete forgetting", xlim=(0, 4 * t_star))
    for a in ax:
        a.legend(fontsize=7)


def rehearsal(df: pd.DataFrame, rec: dict, ax) -> None:
    """(b) With rehearsal: retrieval probability against age (log-binned), log axes."""
    edges = np.unique(np.round(np.logspace(0, np.log10(df["age"].max() + 2), 30)).astype(int)) - 1
    for crit, style in zip(CRITERIA, ("-", "--")):
        p = retention_by_age(df, crit)
        binned = p.groupby(pd.cut(p.index, edges, right=False), observed=True).mean()
        mids = [iv.left + (iv.right - iv.left) / 2 for iv in binned.index]
        ax.plot(np.maximum(mids, 0.5), binned.values, style, marker="o", ms=3, label=CRITERIA[crit])
    tau, t0 = rec["model"]["tau"], rec["summary"]["lifetime_no_rehearsal"]
    ax.axvline(tau, c="grey", lw=1, ls=":", label=f"tau = {tau:g}")
    ax.axvline(t0, c="k", lw=1, ls=":", label=f"lifetime without rehearsal = {t0:.1f}")
    ax.set(xscale="log", yscale="log", xlabel="memory age", ylabel="P(retrievable)",
           title="(b) forgetting curve with stochastic rehearsal")
    ax.legend(fontsize=7)


def efficacy(df: pd.DataFrame, rec: dict, ax) -> None:
    """(c) The efficacy distribution at equilibrium, relative to A_c, log axis."""
    x = np.log10(df["efficacy"] / df["a_c"])
    sns.histplot(x=x, bins=60, stat="density", ax=ax, color="tab:blue")
    ax.axvline(0, c="k", ls="--", lw=1, label="A_c")
    med = rec["summary"]["efficacy"]["retrievable_median_over_a_c"]
    ax.axvline(np.log10(med), c="tab:red", ls=":", lw=1, label="median of the retrievable")
    ax.set(xlabel="log10(A / A_c)", ylabel="density", title="(c) efficacies at equilibrium")
    ax.legend(fontsize=7)


def scaling(df: pd.DataFrame, rec: dict, ax) -> None:
    """(d) Retrievable memories against N, log-log, with the fitted power."""
    for crit, marker in zip(CRITERIA, ("o", "s")):
        m = df.groupby("n")[crit].agg(["mean", "sem"])
        fit = rec["summary"][crit]
        fitted = fit["exponent"] is not None
        ax.errorbar(m.index, m["mean"], yerr=m["sem"].fillna(0), fmt=marker, ms=4, capsize=2,
                    label=f"{CRITERIA[crit]}: exponent {fit['exponent']:.2f}" if fitted else CRITERIA[crit])
        if fitted:
            n = np.array(m.index, float)
            ax.plot(n, fit["prefactor"] * n ** fit["exponent"], lw=1, c=ax.lines[-1].get_color())
    ax.set(xscale="log", yscale="log", xlabel="N (neurons)", ylabel="retrievable memories",
           title="(d) capacity against network size")
    ax.set_xticks(list(m.index), [str(v) for v in m.index])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.legend(fontsize=7)


def lesion(df: pd.DataFrame, rec: dict, ax) -> None:
    """(e) Memories retrievable at a lesion's onset still retrievable after it, by age at onset."""
    kept = df.groupby(["age_bin", "branch"], observed=True, sort=False)["retrieved"].mean().reset_index()
    sns.barplot(data=kept, x="age_bin", y="retrieved", hue="branch", hue_order=["control", "lesion"], ax=ax)
    les = rec["parameters"]
    ax.set(xlabel="age at lesion onset", ylabel="still retrievable", ylim=(0, 1.05),
           title=f"(e) lesion: tau {rec['model']['tau']:g} -> {les['tau']:g} for {les['duration']} units")


DRAW = {"forgetting": forgetting, "rehearsal": rehearsal, "efficacy": efficacy, "scaling": scaling, "lesion": lesion}
assert set(DRAW) == set(FIGURES)


def main(kind: str, csv, record_json, out) -> None:
    if kind not in FIGURES:
        raise ValueError(f"figure: unknown kind {kind!r} (one of {', '.join(FIGURES)})")
    df = pd.read_csv(csv)
    if "age_bin" in df:   # keep the bins' order
        df["age_bin"] = pd.Categorical(df["age_bin"], list(dict.fromkeys(df.sort_values("age_at_onset")["age_bin"])))
    rec = json.loads(Path(record_json).read_text())
    sns.set_theme(style="whitegrid", context="paper")
    if kind == "forgetting":
        fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    else:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
    DRAW[kind](df, rec, ax)
    fig.suptitle(f"{rec['simulation']} ({rec['preset']}, {len(rec['seeds'])} seeds)", fontsize=8, y=1.02)
    _save(fig, Path(out))
