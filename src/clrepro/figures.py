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
from .config import FIGURE_KINDS  # noqa: E402
from .metrics import parse_task_metric  # noqa: E402

SCENARIO_TITLES = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}


def method_styles(order: list[str]) -> tuple[dict, dict]:
    """Colour and dash pattern of each method, the same in every figure of an experiment: tab10's
    ten colours, solid lines for the first ten methods and dashed for the next ten (hatched bars,
    see :func:`hatch`), so that up to twenty methods stay apart (a palette of twenty hues puts
    neighbours in near-identical shades)."""
    colours = sns.color_palette("tab10", 10)
    palette = {m: colours[i % 10] for i, m in enumerate(order)}
    dashes = {m: "" if i % 20 < 10 else (4, 1.5) for i, m in enumerate(order)}
    return palette, dashes


def hatch(dash) -> str | None:
    """The bar counterpart of a method's line style: hatched where its line is dashed."""
    return "///" if dash else None


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
    palette, dashes = method_styles(order or list(dict.fromkeys(acc.label)))
    order = [m for m in palette if m in set(acc.label)]
    g = sns.relplot(data=acc, x="after_task", y="accuracy", hue="label", style="label", row="scenario",
                    col="task", hue_order=order, style_order=order, palette=palette, dashes=dashes,
                    row_order=rows, kind="line", errorbar="se", marker="o", markersize=3, height=2.0,
                    aspect=1.0, facet_kws={"margin_titles": True})
    g.set_axis_labels("tasks trained", "test accuracy (%)")
    g.set_titles(row_template="{row_name}", col_template="task {col_name}")
    g.set(ylim=(0, 101), xticks=sorted(acc.after_task.unique()))
    g.legend.set_title("method")
    g.figure.suptitle(title, y=1.02)
    _save(g.figure, path)


def _published(audit: pd.DataFrame, per_task: bool = False) -> pd.DataFrame:
    """The audit's published values of the final average accuracy (``per_task``: of each task's,
    with its ``task``), with their error bars (SEM, when known)."""
    parsed = audit.metric.astype(str).map(parse_task_metric)
    a = (audit[parsed.notna()].assign(task=[t for _, t in parsed.dropna()]) if per_task
         else audit[audit.metric == "acc"])
    return a.assign(err=a["published_sem"].astype(float).fillna(0.0))


def final_accuracy(summary: pd.DataFrame, audit: pd.DataFrame, title: str, path: Path,
                   order: list[str] | None = None) -> None:
    """Final average accuracy per method and scenario (mean +- SEM), the published value marked."""
    s = summary[summary.metric == "acc"].copy()
    pub_all = _published(audit)
    scen = [x for x in ("task", "domain", "class") if x in set(s.scenario)]
    palette, dashes = method_styles(order or list(dict.fromkeys(s.label)))
    order = [m for m in palette if m in set(s.label)]
    fig, axes = plt.subplots(1, len(scen), figsize=(max(4.2, 0.55 * len(order) + 1.5) * len(scen), 3.6),
                             sharey=True, squeeze=False)
    for ax, sc in zip(axes[0], scen):
        ours = s[s.scenario == sc].set_index("label").reindex(order)
        x = range(len(order))
        ax.bar(x, ours["mean"], yerr=ours["sem"], color=[palette[m] for m in order],
               hatch=[hatch(dashes[m]) for m in order], capsize=3, label="ours (mean ± SEM)")
        pub = pub_all[pub_all.our_scenario == sc].drop_duplicates("label").set_index("label")
        px = [i for i, m in enumerate(order) if m in pub.index]
        if px:
            ax.errorbar(px, [pub.loc[order[i], "published"] for i in px],
                        yerr=[pub.loc[order[i], "err"] for i in px], fmt="D", color="black",
                        markersize=5, capsize=3, label="published")
        ax.set_xticks(list(x), order, rotation=45, ha="right")
        ax.set_title(SCENARIO_TITLES[sc])
        ax.set_ylim(0, 101)
        ax.set_ylabel("final average accuracy (%)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def average_accuracy(acc: pd.DataFrame, audit: pd.DataFrame, title: str, path: Path,
                     order: list[str] | None = None) -> None:
    """Mean accuracy over the tasks seen so far vs the number of tasks trained, one line per method
    (mean +- SEM over seeds), one panel per scenario (Zenke et al. 2017, permuted MNIST figure);
    the published final values marked at the last task."""
    a = acc[(acc.after_task > 0) & (acc.task <= acc.after_task)]
    curve = a.groupby(["scenario", "label", "seed", "after_task"], as_index=False)["accuracy"].mean()
    scen = [x for x in ("task", "domain", "class") if x in set(curve.scenario)]
    palette, dashes = method_styles(order or sorted(set(curve.label)))
    order = [m for m in palette if m in set(curve.label)]
    pub_all = _published(audit)
    fig, axes = plt.subplots(1, len(scen), figsize=(4.8 * len(scen), 3.6), sharey=True, squeeze=False)
    marked = False
    for ax, sc in zip(axes[0], scen):
        sns.lineplot(data=curve[curve.scenario == sc], x="after_task", y="accuracy", hue="label",
                     style="label", hue_order=order, style_order=order, palette=palette, dashes=dashes,
                     errorbar="se", marker="o", markersize=4, ax=ax, legend=ax is axes[0][-1])
        last = int(curve.after_task.max())
        shown = pub_all[(pub_all.our_scenario == sc) & pub_all.label.isin(list(palette))]
        marked |= len(shown) > 0
        for _, p in shown.iterrows():
            ax.errorbar([last + 0.15], [p["published"]], yerr=[p["err"]], fmt="D", markersize=5, capsize=3,
                        color=palette.get(p["label"], "black"), markeredgecolor="black")
        ax.set_title(SCENARIO_TITLES[sc])
        ax.set_xlabel("tasks trained")
        ax.set_ylabel("average accuracy on tasks so far (%)")
        ax.set_xticks(range(1, last + 1))
    if axes[0][-1].get_legend():
        legend = "method (◆ published, after the last task)" if marked else "method"
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title=legend, fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def task_bars(summary: pd.DataFrame, audit: pd.DataFrame, title: str, path: Path,
              order: list[str] | None = None, learned: list[str] = ()) -> None:
    """Accuracy on each task after the last one, bars per method (mean +- SEM), the published
    values marked (Zenke et al. 2017, split CIFAR-10/100 bar plot). Methods in ``learned`` (from
    scratch) are scored on each task right after training it."""
    parsed = summary.metric.map(parse_task_metric)
    s = summary[parsed.notna()].assign(kind=[k for k, _ in parsed.dropna()], task=[t for _, t in parsed.dropna()])
    s = s[(s.kind == "learned") == s.label.isin(list(learned))]
    palette, dashes = method_styles(order or list(dict.fromkeys(s.label)))
    order = [m for m in palette if m in set(s.label)]
    tasks = sorted(s.task.unique())
    width = 0.8 / len(order)
    fig, ax = plt.subplots(figsize=(1.1 * len(tasks) + 2.5, 3.8))
    pub = _published(audit, per_task=True)
    for i, label in enumerate(order):
        colour = palette[label]
        ours = s[s.label == label].set_index("task").reindex(tasks)
        x = [t - 0.4 + width * (i + 0.5) for t in tasks]
        ax.bar(x, ours["mean"], width, yerr=ours["sem"], color=colour, hatch=hatch(dashes[label]),
               capsize=2, label=label)
        for _, p in pub[pub.label == label].iterrows():
            ax.errorbar([p["task"] - 0.4 + width * (i + 0.5)], [p["published"]], yerr=[p["err"]],
                        fmt="D", color="black", markersize=4, capsize=2)
    ax.set_xticks(tasks, [f"task {t}" for t in tasks])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 101)
    ax.plot([], [], "D", color="black", label="published (± SEM)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    ax.set_title(title)
    _save(fig, path)


def main(kind: str, accuracy_csv, summary_csv, audit_csv, experiment, title, order, out,
         learned: list[str] = ()) -> None:
    """Draw one figure of one experiment; ``order`` lists the method labels in the config's order."""
    sns.set_theme(style="whitegrid", context="paper")
    acc, summary, audit = read_csv(accuracy_csv), read_csv(summary_csv), read_csv(audit_csv)
    acc, summary = acc[acc.experiment == experiment], summary[summary.experiment == experiment]
    if kind == "accuracy_per_task":
        accuracy_per_task(acc, title, Path(out), order)
    elif kind == "final_accuracy":
        final_accuracy(summary, audit, title, Path(out), order)
    elif kind == "average_accuracy":
        average_accuracy(acc, audit, title, Path(out), order)
    elif kind == "task_bars":
        task_bars(summary, audit, title, Path(out), order, learned)
    else:
        raise ValueError(f"figures: unknown figure {kind!r}; known: {', '.join(FIGURE_KINDS)}")
