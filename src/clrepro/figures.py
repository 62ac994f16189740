"""Figures (seaborn), drawn from the aggregated tables only."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .aggregate import read_csv  # noqa: E402
from .atomic import atomic_path  # noqa: E402
from .audit import SCENARIO_NAMES  # noqa: E402

SCENARIO_TITLES = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def accuracy_per_task(acc: pd.DataFrame, title: str, path: Path, order: list[str] | None = None) -> None:
    """Accuracy on each task (columns) as tasks are learned (x), one line per method, one row per
    scenario; mean +- SEM over seeds (the layout of the SI and three-scenarios papers' figures)."""
    acc = acc[acc.after_task > 0].copy()
    acc["scenario"] = acc["scenario"].map(SCENARIO_TITLES)
    rows = [SCENARIO_TITLES[x] for x in SCENARIO_TITLES if SCENARIO_TITLES[x] in set(acc.scenario)]
    g = sns.relplot(data=acc, x="after_task", y="accuracy", hue="label", row="scenario", col="task",
                    hue_order=order, row_order=rows,
                    kind="line", errorbar="se", marker="o", markersize=3, height=2.0, aspect=1.0,
                    facet_kws={"margin_titles": True})
    g.set_axis_labels("tasks trained", "test accuracy (%)")
    g.set_titles(row_template="{row_name}", col_template="task {col_name}")
    g.set(ylim=(0, 101), xticks=sorted(acc.after_task.unique()))
    g.legend.set_title("method")
    g.figure.suptitle(title, y=1.02)
    _save(g.figure, path)


def final_accuracy(summary: pd.DataFrame, targets: pd.DataFrame, target_key: str, title: str,
                   path: Path, order: list[str] | None = None) -> None:
    """Final average accuracy per method and scenario (mean +- SEM), the published value marked."""
    s = summary[summary.metric == "acc"].copy()
    t = targets[targets.experiment == target_key].copy()
    t["scenario"] = t["scenario"].map(SCENARIO_NAMES).fillna(t["scenario"])
    scen = [x for x in ("task", "domain", "class") if x in set(s.scenario)]
    order = [m for m in (order or []) if m in set(s.label)] or list(dict.fromkeys(s.label))
    fig, axes = plt.subplots(1, len(scen), figsize=(4.2 * len(scen), 3.6), sharey=True, squeeze=False)
    for ax, sc in zip(axes[0], scen):
        ours = s[s.scenario == sc].set_index("label").reindex(order)
        x = range(len(order))
        ax.bar(x, ours["mean"], yerr=ours["sem"], color=sns.color_palette("deep", len(order)),
               capsize=3, label="ours (mean ± SEM)")
        pub = t[t.scenario == sc].set_index("method")
        px = [i for i, m in enumerate(order) if m in pub.index]
        if px:
            vals = [pub.loc[order[i], "value"] for i in px]
            ax.errorbar(px, vals, yerr=[pub.loc[order[i], "spread"] for i in px], fmt="D", color="black",
                        markersize=5, capsize=3, label="published")
        ax.set_xticks(list(x), order, rotation=45, ha="right")
        ax.set_title(SCENARIO_TITLES[sc])
        ax.set_ylim(0, 101)
        ax.set_ylabel("final average accuracy (%)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def main(accuracy_csv, summary_csv, targets_csv, experiment, target_key, title, order, out_tasks,
         out_final) -> None:
    """Draw one experiment's figures; ``order`` lists the method labels in the config's order."""
    sns.set_theme(style="whitegrid", context="paper")
    acc, summary = read_csv(accuracy_csv), read_csv(summary_csv)
    accuracy_per_task(acc[acc.experiment == experiment], title, Path(out_tasks), order)
    final_accuracy(summary[summary.experiment == experiment], read_csv(targets_csv), target_key, title,
                   Path(out_final), order)
