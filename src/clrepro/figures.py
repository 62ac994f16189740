"""Figures (seaborn), drawn from the aggregated tables (the stability gap's from the runs'
continual-evaluation curves).

Every figure is as wide as the report's page (:data:`WIDTH_IN` at :data:`DPI`, at most ~1150 px) with
its text at least :data:`FONTS` ``xtick.labelsize`` points (15 px at 120 dpi), so it is shown unscaled;
methods are drawn by family (:func:`method_family`), at most :data:`MOST` per panel, the baselines
in every panel as references (:func:`panels`)."""
from __future__ import annotations

import functools
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from .aggregate import load_results, read_csv  # noqa: E402
from .atomic import atomic_path  # noqa: E402
from .config import FIGURE_KINDS  # noqa: E402
from .metrics import parse_task_metric  # noqa: E402

SCENARIO_TITLES = {"task": "Task-IL", "domain": "Domain-IL", "class": "Class-IL"}
DPI = 120
WIDTH_IN = 9.3          # 1116 px at DPI (1140 with the saved margins): the report's page is 1200 px wide at most
LEGEND_IN = 2.0         # the legends' column, right of the panels
MOST = 8                # lines (methods) in a panel at most
FONTS = {"font.size": 10, "axes.labelsize": 10, "axes.titlesize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "legend.title_fontsize": 10, "figure.titlesize": 12,
         "figure.labelsize": 10}

# Families of the library's methods (``method:`` in an experiment; a few variants' names beside them),
# in the order figures show them.
FAMILIES = {
    "baselines": ("none", "joint", "joint_incremental", "scratch"),
    "regularisation": ("ewc", "online_ewc", "si", "mas", "l2"),
    "distillation": ("lwf",),
    "replay": ("er", "agem", "icarl", "crumb"),
    "generative replay": ("dgr", "dgr_distill", "bir"),
    "architecture": ("cln", "xdg", "sdm"),
}
ARCHITECTURES = ("sdm",)   # network types built against forgetting: trained plainly, they are the method


def method_family(method: str, model: str | None = None) -> str:
    """The family of a library method (``other`` when unknown); a plain network (``none``) of an
    architecture built against forgetting (``model``, its type: the SDM-MLP) is an architecture."""
    if method == "none" and model in ARCHITECTURES:
        return "architecture"
    return next((f for f, names in FAMILIES.items() if method in names), "other")


def references(order: list[str], families: dict[str, str] | None = None) -> list[str]:
    """The baselines drawn in every panel as references: up to three, and not all the methods
    (else they get a panel of their own)."""
    base = [m for m in order if (families or {}).get(m) == "baselines"]
    return base if len(base) <= 3 and len(base) < len(order) else []


def panels(order: list[str], families: dict[str, str] | None = None, most: int = MOST) -> list[tuple[str, list[str]]]:
    """The panels of a figure, ``(title, methods)`` in the configured order: a family per panel, cut
    into near-equal parts of at most ``most`` methods, the :func:`references` in every panel."""
    fam = {m: (families or {}).get(m, "other") for m in order}
    refs = references(order, families)
    out = []
    for family in [*FAMILIES, "other"]:
        members = [m for m in order if fam[m] == family and m not in refs]
        k = math.ceil(len(members) / (most - len(refs)))
        for i in range(k):
            part = members[i * len(members) // k:(i + 1) * len(members) // k]
            out.append((family if k == 1 else f"{family} ({i + 1}/{k})", [m for m in order if m in refs or m in part]))
    return out


def method_styles(order: list[str], families: dict[str, str] | None = None) -> tuple[dict, dict]:
    """Colour and dash pattern of each method, the same in every figure of an experiment: tab10's
    ten colours, solid lines for the first ten methods and dashed for the next ten (hatched bars,
    see :func:`hatch`), so that up to twenty methods stay apart (a palette of twenty hues puts
    neighbours in near-identical shades). With ``families`` the methods take them panel by panel
    (:func:`panels`), the references first and the others round the remaining colours, so that no
    two methods of a panel share a colour."""
    colours = sns.color_palette("tab10", 10)
    refs = references(order, families)
    rest = [m for _, methods in panels(order, families) for m in methods if m not in refs]
    n = 10 - len(refs)
    palette = {m: colours[i] for i, m in enumerate(refs)} | {m: colours[len(refs) + j % n] for j, m in enumerate(rest)}
    dashes = {m: "" for m in refs} | {m: "" if j // n % 2 == 0 else (4, 1.5) for j, m in enumerate(rest)}
    return {m: palette[m] for m in order}, {m: dashes[m] for m in order}


def hatch(dash) -> str | None:
    """The bar counterpart of a method's line style: hatched where its line is dashed."""
    return "///" if dash else None


def legibility(fig, path) -> tuple[int, float]:
    """The width in pixels of the image saved at ``path`` and the smallest font size (points) of
    ``fig``'s visible text: shown at most that wide, a point is at least DPI/72 pixels high."""
    from PIL import Image
    with Image.open(path) as image:
        width = image.size[0]
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return width, min(sizes)


def _themed(draw):
    """Draw in the figures' theme (seaborn's whitegrid, the font sizes of :data:`FONTS`)."""
    @functools.wraps(draw)
    def themed(*args, **kwargs):
        with plt.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"), **FONTS}):
            return draw(*args, **kwargs)
    return themed


def _save(fig, path: Path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return fig


def _grid(heights: list[float], cols: int, extra: float = 0.9):
    """A figure of the page's width: rows of ``cols`` panels (``heights``: in inches) and a column of
    hidden axes at the right for the legends; returns the figure, the panels and the legends' axes."""
    fig = plt.figure(figsize=(WIDTH_IN, sum(heights) + extra), layout="constrained")
    legend = LEGEND_IN * cols / (WIDTH_IN - 0.8 - LEGEND_IN)
    axes = fig.subplots(len(heights), cols + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1] * cols + [legend], "height_ratios": heights})
    for ax in axes[:, -1]:
        ax.axis("off")
    return fig, axes[:, :-1], axes[:, -1]


def _legend_height(labels: list[str]) -> float:
    """About the height (inches) of a legend of ``labels`` (see :func:`_legend`), its title included."""
    return 0.4 + sum(0.2 + 0.16 * (len(textwrap.wrap(x, 22)) - 1) for x in labels)


def _legend(ax, title: str, handles: list, labels: list[str]) -> None:
    """A panel's legend, at the top left of ``ax`` (a hidden axes of the legends' column), its labels
    wrapped to fit the column."""
    leg = ax.legend(handles, [textwrap.fill(x, 22) for x in labels], title=title.capitalize(), loc="upper left",
                    bbox_to_anchor=(0, 1), frameon=False, alignment="left", title_fontproperties={"weight": "bold"})
    leg.set_in_layout(False)


def _line(m: str, palette: dict, dashes: dict) -> Line2D:
    return Line2D([], [], color=palette[m], linestyle=(0, dashes[m]) if dashes[m] else "-", marker="o", markersize=4)


def _lines(ax, data: pd.DataFrame, y: str, methods: list[str], palette: dict, dashes: dict) -> None:
    """One line per method against the tasks trained, mean +- SEM over seeds (a band)."""
    curves = data[data.label.isin(methods)].groupby(["label", "after_task"])[y].agg(["mean", "sem"])
    for m in [m for m in methods if m in curves.index]:
        c = curves.loc[m]
        ax.plot(c.index, c["mean"], color=palette[m], linestyle=(0, dashes[m]) if dashes[m] else "-", marker="o",
                markersize=3, label=m)
        ax.fill_between(c.index, c["mean"] - c["sem"], c["mean"] + c["sem"], color=palette[m], alpha=0.2, linewidth=0)


def _drawn(order: list[str] | None, labels: pd.Series, families: dict | None) -> tuple[dict, dict, list[str]]:
    """The methods' styles over the configured order and the methods drawn, in that order."""
    palette, dashes = method_styles(order or list(dict.fromkeys(labels)), families)
    return palette, dashes, [m for m in palette if m in set(labels)]


@_themed
def accuracy_per_task(acc: pd.DataFrame, title: str, path: Path, order: list[str] | None = None,
                      families: dict[str, str] | None = None):
    """Accuracy on each task (columns) as tasks are learned (x), mean +- SEM over seeds (the layout
    of the SI and three-scenarios papers' figures): a row per family panel and scenario it ran in."""
    acc = acc[acc.after_task > 0]
    palette, dashes, order = _drawn(order, acc.label, families)
    tasks, steps = sorted(acc.task.unique()), sorted(acc.after_task.unique())
    refs, rows, heights = set(references(order, families)), [], []   # rows: (panel, methods, scenario, first, last)
    for name, methods in panels(order, families):    # the scenarios where the panel's own methods ran
        ran = [sc for sc in SCENARIO_TITLES if set(acc[acc.scenario == sc].label) & (set(methods) - refs)]
        rows += [(name, methods, sc, sc == ran[0], sc == ran[-1]) for sc in ran]
        heights += [max(1.45, (_legend_height(methods) + 0.25) / max(len(ran), 1))] * len(ran)
    fig, axes, legends = _grid(heights, len(tasks))
    for (name, methods, sc, first, last), row, leg in zip(rows, axes, legends):
        d = acc[acc.scenario == sc]
        ran = [m for m in methods if m in set(d.label)]
        for ax, t in zip(row, tasks):
            _lines(ax, d[d.task == t], "accuracy", ran, palette, dashes)
            ax.set(ylim=(0, 101), xticks=steps, xlabel="tasks trained" if ax is axes[-1, 0] else "",
                   ylabel=SCENARIO_TITLES[sc] if ax is row[0] else "", title=f"task {t}" if first else "")
            ax.tick_params(labelleft=ax is row[0], labelbottom=last)
        if first:
            _legend(leg, name, [_line(m, palette, dashes) for m in methods], methods)
    fig.supylabel("test accuracy (%)")
    fig.suptitle(title)
    return _save(fig, path)


def _absent(method: str, scenario: str, defined: dict[str, list[str]] | None,
            selected: dict[str, list[str]] | None = None) -> str:
    """What a figure writes where ``method`` has no result in ``scenario``."""
    where = (defined or {}).get(method)
    if where is None or scenario in where:
        return "not in this report" if scenario not in (selected or {}).get(method, [scenario]) else "not run"
    return " and ".join(SCENARIO_TITLES[s] for s in where) + " only"


def _published(audit: pd.DataFrame, per_task: bool = False) -> pd.DataFrame:
    """The audit's published values of the final average accuracy (``per_task``: of each task's,
    with its ``task``), with their error bars (SEM, when known)."""
    parsed = audit.metric.astype(str).map(parse_task_metric)
    a = (audit[parsed.notna()].assign(task=[t for _, t in parsed.dropna()]) if per_task
         else audit[audit.metric == "acc"])
    return a.assign(err=a["published_sem"].astype(float).fillna(0.0))


@_themed
def final_accuracy(summary: pd.DataFrame, audit: pd.DataFrame, title: str, path: Path,
                   order: list[str] | None = None, families: dict[str, str] | None = None,
                   defined: dict[str, list[str]] | None = None, selected: dict[str, list[str]] | None = None):
    """Final average accuracy per method (mean +- SEM), the published value marked: a row per
    scenario, the methods' bars grouped by family (named above the first row). Where a method has
    no bar it reads "not run", or, where ``defined`` ({label: its scenarios}) leaves the row's
    scenario out, the scenarios it is defined in (e.g. "Task-IL only" for XdG); where ``selected``
    ({label: the scenarios this report gives seeds}) leaves it out, "not in this report"."""
    s = summary[summary.metric == "acc"]
    pub_all = _published(audit)
    scen = [x for x in SCENARIO_TITLES if x in set(s.scenario)]
    palette, dashes, order = _drawn(order, s.label, families)
    fam = {m: (families or {}).get(m, "other") for m in order}
    groups = [(f, [m for m in order if fam[m] == f]) for f in [*FAMILIES, "other"]]
    x, centres, edges, at = {}, [], [], 0.0
    for f, methods in [g for g in groups if g[1]]:
        x |= {m: at + i for i, m in enumerate(methods)}
        centres.append((at + (len(methods) - 1) / 2, textwrap.fill(f, 14, break_long_words=False)))
        at += len(methods) + 0.6
        edges.append(at - 0.8)
    fig, axes = plt.subplots(len(scen), 1, figsize=(WIDTH_IN, 1.9 * len(scen) + 1.9), sharex=True, squeeze=False,
                             layout="constrained")
    marked = False
    for ax, sc in zip(axes[:, 0], scen):
        ours = s[s.scenario == sc].drop_duplicates("label").set_index("label")
        ran = [m for m in order if m in ours.index]
        ax.bar([x[m] for m in ran], ours.loc[ran, "mean"], yerr=ours.loc[ran, "sem"], color=[palette[m] for m in ran],
               hatch=[hatch(dashes[m]) for m in ran], capsize=2)
        for m in [m for m in order if m not in ran]:
            ax.text(x[m], 3, _absent(m, sc, defined, selected), rotation=90, ha="center", va="bottom", fontsize=9, color="0.45")
        pub = pub_all[pub_all.our_scenario == sc].drop_duplicates("label").set_index("label")
        shown = [m for m in ran if m in pub.index]
        marked |= bool(shown)
        if shown:
            ax.errorbar([x[m] for m in shown], pub.loc[shown, "published"], yerr=pub.loc[shown, "err"], fmt="D",
                        color="black", markersize=5, capsize=3)
        for e in edges[:-1]:
            ax.axvline(e, color="0.5", linewidth=0.8)
        ax.set(ylim=(0, 101), ylabel=SCENARIO_TITLES[sc])
        ax.grid(axis="x", visible=False)
    top = axes[0, 0].secondary_xaxis("top")
    top.set_xticks([c for c, _ in centres], [f for _, f in centres])
    top.tick_params(length=0)
    axes[-1, 0].set_xticks(sorted(x.values()), sorted(x, key=x.get), rotation=40, ha="right", rotation_mode="anchor")
    axes[-1, 0].set_xlim(-0.7, at - 0.9)
    fig.supylabel("final average accuracy (%)")
    fig.legend([Patch(facecolor="0.6"), Line2D([], [], marker="D", color="black", linestyle="")][:1 + marked],
               ["ours (mean ± SEM)", "published (± SEM)"][:1 + marked], loc="outside lower center", ncol=2,
               frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


@_themed
def average_accuracy(acc: pd.DataFrame, audit: pd.DataFrame, title: str, path: Path,
                     order: list[str] | None = None, families: dict[str, str] | None = None):
    """Mean accuracy over the tasks seen so far vs the number of tasks trained (mean +- SEM over
    seeds; Zenke et al. 2017, permuted MNIST figure): a column per scenario, a row per family
    panel; the published final values marked at the last task."""
    a = acc[(acc.after_task > 0) & (acc.task <= acc.after_task)]
    curve = a.groupby(["scenario", "label", "seed", "after_task"], as_index=False)["accuracy"].mean()
    scen = [x for x in SCENARIO_TITLES if x in set(curve.scenario)]
    palette, dashes, order = _drawn(order, curve.label, families)
    pub_all = _published(audit)
    last = int(curve.after_task.max())
    rows = panels(order, families)
    fig, axes, legends = _grid([max(2.1, _legend_height([*m, "published, after the last task"])) for _, m in rows],
                               len(scen))
    for ax in axes.flat[1:]:
        ax.sharey(axes[0, 0])
    for r, ((name, methods), row, leg) in enumerate(zip(rows, axes, legends)):
        marked = False
        for ax, sc in zip(row, scen):
            d = curve[curve.scenario == sc]
            _lines(ax, d, "accuracy", [m for m in methods if m in set(d.label)], palette, dashes)
            shown = pub_all[(pub_all.our_scenario == sc) & pub_all.label.isin(methods)]
            marked |= len(shown) > 0
            for _, p in shown.iterrows():
                ax.errorbar([last + 0.15], [p["published"]], yerr=[p["err"]], fmt="D", markersize=5, capsize=3,
                            color=palette[p["label"]], markeredgecolor="black")
            ax.set(xticks=range(1, last + 1), xlabel="tasks trained" if r == len(rows) - 1 else "", ylabel="",
                   title=SCENARIO_TITLES[sc] if r == 0 else "")
            ax.tick_params(labelbottom=r == len(rows) - 1)
        for ax in row[1:]:
            ax.tick_params(labelleft=False)
        handles = [_line(m, palette, dashes) for m in methods]
        if marked:
            handles.append(Line2D([], [], marker="D", color="0.6", markeredgecolor="black", linestyle=""))
        _legend(leg, name, handles, methods + ["published, after the last task"] * marked)
    fig.supylabel("average accuracy on tasks so far (%)")
    fig.suptitle(title)
    return _save(fig, path)


@_themed
def task_bars(summary: pd.DataFrame, audit: pd.DataFrame, title: str, path: Path,
              order: list[str] | None = None, learned: list[str] = (), families: dict[str, str] | None = None):
    """Accuracy on each task after the last one, bars per method (mean +- SEM), the published
    values marked (Zenke et al. 2017, split CIFAR-10/100 bar plot), a row per family panel. Methods
    in ``learned`` (from scratch) are scored on each task right after training it."""
    parsed = summary.metric.map(parse_task_metric)
    s = summary[parsed.notna()].assign(kind=[k for k, _ in parsed.dropna()], task=[t for _, t in parsed.dropna()])
    s = s[(s.kind == "learned") == s.label.isin(list(learned))]
    palette, dashes, order = _drawn(order, s.label, families)
    tasks = sorted(s.task.unique())
    pub = _published(audit, per_task=True)
    rows = panels(order, families)
    fig, axes, legends = _grid([max(2.3, _legend_height([*m, "published (± SEM)"])) for _, m in rows], 1)
    for (name, methods), (ax,), leg in zip(rows, axes, legends):
        width = 0.8 / len(methods)
        for i, label in enumerate(methods):
            ours = s[s.label == label].set_index("task").reindex(tasks)
            ax.bar([t - 0.4 + width * (i + 0.5) for t in tasks], ours["mean"], width, yerr=ours["sem"],
                   color=palette[label], hatch=hatch(dashes[label]), capsize=2)
            for _, p in pub[pub.label == label].iterrows():
                ax.errorbar([p["task"] - 0.4 + width * (i + 0.5)], [p["published"]], yerr=[p["err"]],
                            fmt="D", color="black", markersize=4, capsize=2)
        ax.set_xticks(tasks, [f"task {t}" for t in tasks])
        ax.set(ylim=(0, 101), ylabel="")
        ax.grid(axis="x", visible=False)
        handles = [Patch(facecolor=palette[m], hatch=hatch(dashes[m])) for m in methods]
        marked = bool(pub.label.isin(methods).any())
        handles += [Line2D([], [], marker="D", color="black", linestyle="")] * marked
        _legend(leg, name, handles, methods + ["published (± SEM)"] * marked)
    fig.supylabel("test accuracy (%)")
    fig.suptitle(title)
    return _save(fig, path)


def curves_table(results: list[dict], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The continual-evaluation curves of ``results`` in long form: label, scenario, seed,
    iteration, task (from 1) and accuracy (%)."""
    rows = []
    for r in results:
        ce = r.get("continual_eval")
        if not ce:
            continue
        label = (labels or {}).get(r["method"], r["method"])
        for g, accs in zip(ce["iteration"], ce["acc"]):
            rows += [(label, r["scenario"], r["seed"], g, j + 1, 100 * a) for j, a in enumerate(accs)]
    return pd.DataFrame(rows, columns=["label", "scenario", "seed", "iteration", "task", "accuracy"])


@_themed
def stability_gap(curves: pd.DataFrame, ends: list[int], title: str, path: Path, order: list[str] | None = None,
                  families: dict[str, str] | None = None):
    """Accuracy on each earlier task (a column of panels) against training iterations, mean +- SEM
    over seeds, from the start of the task on; dotted lines at the task switches (De Lange et al.
    2023, Fig. 1-2). A row per scenario and family panel."""
    palette, dashes, order = _drawn(order, curves.label, families)
    tasks = list(range(1, len(ends)))
    groups = [(sc, name, methods) for sc in SCENARIO_TITLES if sc in set(curves.scenario)
              for name, methods in panels(order, families)
              if set(curves[curves.scenario == sc].label) & set(methods)]
    fig, axes, legends = _grid([max(1.8, _legend_height(m) + 0.25) for _, _, m in groups], len(tasks))
    for i, ((sc, name, methods), row, leg) in enumerate(zip(groups, axes, legends)):
        d = curves[curves.scenario == sc]
        for ax, t in zip(row, tasks):
            c = d[(d.task == t) & (d.iteration >= ([0] + ends)[t - 1]) & d.label.isin(methods)]
            stats = c.groupby(["label", "iteration"]).accuracy.agg(["mean", "sem"])
            for m in [m for m in methods if m in stats.index]:
                s = stats.loc[m]
                ax.plot(s.index, s["mean"], color=palette[m], linestyle=(0, dashes[m]) if dashes[m] else "-",
                        linewidth=1, label=m)
                ax.fill_between(s.index, s["mean"] - s["sem"].fillna(0), s["mean"] + s["sem"].fillna(0),
                                color=palette[m], alpha=0.2, linewidth=0)
            for end in ends[t - 1:-1]:
                ax.axvline(end, color="0.4", linestyle=":", linewidth=1)
            ax.set(ylim=(0, 101), title=f"{SCENARIO_TITLES[sc]}: task {t}",
                   xlabel="iterations" if i == len(groups) - 1 else "", ylabel="")
        _legend(leg, name, [Line2D([], [], color=palette[m], linestyle=(0, dashes[m]) if dashes[m] else "-")
                            for m in methods], methods)
    fig.supylabel("test accuracy (%)")
    fig.suptitle(title)
    return _save(fig, path)


def memory_table(results: list[dict], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Per run: label, scenario, seed, final average accuracy (%) and the bytes the method holds
    besides the network (``Method.memory``; 0 when it holds nothing)."""
    rows = [((labels or {}).get(r["method"], r["method"]), r["scenario"], r["seed"], 100 * r["metrics"]["acc"],
             r.get("memory", {}).get("bytes", 0)) for r in results]
    return pd.DataFrame(rows, columns=["label", "scenario", "seed", "acc", "bytes"])


@_themed
def memory(table: pd.DataFrame, title: str, path: Path, order: list[str] | None = None,
           families: dict[str, str] | None = None):
    """Final average accuracy against the memory each method holds (stored samples, or CRUMB's
    indices and codebook, in kB on a log scale), mean +- SEM over seeds, a panel per scenario; a
    method that holds nothing is a horizontal line."""
    palette, dashes, order = _drawn(order, table.label, families)
    scen = [x for x in SCENARIO_TITLES if x in set(table.scenario)]
    fig, axes, legends = _grid([3.2] * len(scen), 1)
    for ax, leg, sc in zip(axes[:, 0], legends, scen):
        t = table[table.scenario == sc].groupby("label").agg(acc=("acc", "mean"), sem=("acc", "sem"),
                                                             kb=("bytes", lambda b: b.mean() / 1000))
        shown = [m for m in order if m in t.index]
        for m in shown:
            if t.loc[m, "kb"] == 0:
                ax.axhline(t.loc[m, "acc"], color=palette[m], linestyle=(0, dashes[m]) if dashes[m] else "--")
            else:
                ax.errorbar(t.loc[m, "kb"], t.loc[m, "acc"], yerr=t.loc[m, "sem"], fmt="o", color=palette[m],
                            markersize=6, capsize=3)
        ax.set(xscale="log", ylim=(0, 101), xlabel="memory held (kB)", ylabel=f"{SCENARIO_TITLES[sc]}: final "
                                                                              f"average accuracy (%)")
        _legend(leg, "methods", [Line2D([], [], color=palette[m], marker="o" if t.loc[m, "kb"] else None,
                                        linestyle="" if t.loc[m, "kb"] else "--") for m in shown], shown)
    fig.suptitle(title)
    return _save(fig, path)


def main(kind: str, accuracy_csv, summary_csv, audit_csv, experiment, title, order, out,
         learned: list[str] = (), families: dict[str, str] | None = None, results=(),
         defined: dict[str, list[str]] | None = None, selected: dict[str, list[str]] | None = None) -> None:
    """Draw one figure of one experiment; ``order`` lists the method labels in the config's order,
    ``families`` maps each to its family (:func:`method_family`), ``defined`` to the scenarios it
    runs in, ``selected`` to those this report gives it seeds in."""
    acc, summary, audit = read_csv(accuracy_csv), read_csv(summary_csv), read_csv(audit_csv)
    acc, summary = acc[acc.experiment == experiment], summary[summary.experiment == experiment]
    if kind == "accuracy_per_task":
        accuracy_per_task(acc, title, Path(out), order, families)
    elif kind == "final_accuracy":
        final_accuracy(summary, audit, title, Path(out), order, families, defined, selected)
    elif kind == "average_accuracy":
        average_accuracy(acc, audit, title, Path(out), order, families)
    elif kind == "task_bars":
        task_bars(summary, audit, title, Path(out), order, learned, families)
    elif kind == "stability_gap":
        runs = load_results(results)
        labels = dict(zip(summary.method, summary.label))
        ends = np.cumsum(runs[0]["steps_per_task"]).tolist() if runs else []
        stability_gap(curves_table(runs, labels), ends, title, Path(out), order, families)
    elif kind == "memory":
        memory(memory_table(load_results(results), dict(zip(summary.method, summary.label))), title, Path(out), order,
               families)
    else:
        raise ValueError(f"figures: unknown figure {kind!r}; known: {', '.join(FIGURE_KINDS)}")
