"""Aggregation, audit and figures: hand-computed statistics and verdicts, method styles."""
import json
import math

import pandas as pd
import pytest
from matplotlib.lines import Line2D
from scipy import stats

from clrepro import figures
from clrepro.aggregate import summarise
from clrepro.audit import audit, predictive, to_sem, verdict, welch
from clrepro.figures import method_family, method_styles, panels


def test_welch_hand_computed():
    # t = (10 - 12) / sqrt(1^2 + 1^2) = -sqrt(2); df = (1 + 1)^2 / (1/4 + 1/4) = 8
    t, df, p = welch(10.0, 1.0, 5, 12.0, 1.0, 5)
    assert t == pytest.approx(-math.sqrt(2))
    assert df == pytest.approx(8.0)
    assert p == pytest.approx(2 * stats.t.sf(math.sqrt(2), 8))
    assert p == pytest.approx(0.1950, abs=1e-4)


def test_welch_matches_scipy_from_summary_statistics():
    m1, se1, n1, m2, se2, n2 = 87.3, 0.6, 5, 85.1, 0.94, 20
    t, df, p = welch(m1, se1, n1, m2, se2, n2)
    ref = stats.ttest_ind_from_stats(m1, se1 * math.sqrt(n1), n1, m2, se2 * math.sqrt(n2), n2,
                                     equal_var=False)
    assert t == pytest.approx(ref.statistic)
    assert p == pytest.approx(ref.pvalue)


def test_verdicts_and_spread_conversion():
    assert verdict(0.2, 5.0, 0.05, 1.0) == "agrees"
    assert verdict(0.01, 0.5, 0.05, 1.0) == "close"
    assert verdict(0.01, -3.0, 0.05, 1.0) == "disagrees"
    assert to_sem(2.0, "sd", 4) == 1.0 and to_sem(0.3, "sem", 9) == 0.3
    with pytest.raises(ValueError, match="spread_kind"):
        to_sem(1.0, "iqr", 3)


def runs_frame(values, label="SI", scenario="task"):
    return pd.DataFrame({"experiment": "e", "scenario": scenario, "method": label.lower(), "label": label,
                         "preset": "paper", "seed": range(len(values)), "acc": values,
                         "bwt": 0.0, "fwt": 0.0, "forgetting": 0.0})


def test_summary_mean_sd_sem_n():
    s = summarise(runs_frame([90.0, 92.0, 94.0]))
    acc = s[s.metric == "acc"].iloc[0]
    # mean 92; sd = sqrt(((-2)^2 + 0 + 2^2) / 2) = 2; sem = 2 / sqrt(3)
    assert (acc["mean"], acc["sd"], acc["n"]) == (92.0, 2.0, 3)
    assert acc["sem"] == pytest.approx(2 / math.sqrt(3))


TARGETS = pd.DataFrame([
    {"experiment": "pub", "target_id": "a", "scenario": "task-IL", "method": "SI", "value": 92.5,
     "spread": 0.5, "spread_kind": "sem", "n_seeds": 20, "source": "Table 4", "provenance": "paper table",
     "paper": "P"},
    {"experiment": "pub", "target_id": "b", "scenario": "task-IL", "method": "iCaRL", "value": 94.0,
     "spread": 0.1, "spread_kind": "sem", "n_seeds": 20, "source": "Table 4", "provenance": "paper table",
     "paper": "P"},
    {"experiment": "other", "target_id": "c", "scenario": "task-IL", "method": "SI", "value": 1.0,
     "spread": 0.1, "spread_kind": "sem", "n_seeds": 20, "source": "x", "provenance": "x", "paper": "Q"},
])


def test_audit_rows_verdicts_and_cells_not_run():
    summary = summarise(runs_frame([90.0, 92.0, 94.0]))
    out = audit(summary, TARGETS, "pub", "e", "paper").set_index("target_id")
    assert list(out.index) == ["a", "b"]                 # only this experiment's targets
    assert out.loc["a", "difference"] == pytest.approx(-0.5)
    assert out.loc["a", "verdict"] == "agrees"
    assert out.loc["b", "verdict"] == "not run"
    far = audit(summarise(runs_frame([80.0, 80.5, 81.0])), TARGETS, "pub", "e", "paper")
    assert far.set_index("target_id").loc["a", "verdict"] == "disagrees"


def test_audit_shows_the_reference_code_runs_beside_the_paper_and_ours():
    """The third column: the mean of the runs of the code that produced the table (a run of a later
    version, ``variant``, is listed but not averaged), each run named by commit and seed."""
    runs = pd.DataFrame([
        {"target_id": "a", "code": "authors/cl", "commit": "86802a8abc", "variant": None, "seed": 1, "value": 24.0},
        {"target_id": "a", "code": "authors/cl", "commit": "86802a8abc", "variant": None, "seed": 2, "value": 25.0},
        {"target_id": "a", "code": "authors/cl", "commit": "a02db26abc", "variant": "later loss", "seed": 1,
         "value": 20.0}])
    out = audit(summarise(runs_frame([90.0, 92.0, 94.0])), TARGETS, "pub", "e", "paper",
                reference=runs).set_index("target_id")
    assert out.loc["a", "reference_code"] == 24.5
    assert out.loc["a", "reference_code_runs"] == ("24.00 (authors/cl 86802a8, seed 1); 25.00 (authors/cl 86802a8, "
                                                   "seed 2); 20.00 (authors/cl a02db26, later loss, seed 1)")
    assert pd.isna(out.loc["b", "reference_code"]) and out.loc["b", "reference_code_runs"] == ""


def test_audit_gives_no_verdict_on_reduced_presets():
    out = audit(summarise(runs_frame([90.0, 92.0, 94.0])), TARGETS, "pub", "e", "quick")
    assert out.set_index("target_id").loc["a", "verdict"] == "no verdict (quick preset)"
    assert out.set_index("target_id").loc["a", "ours"] == pytest.approx(92.0)


def test_predictive_test_of_a_single_published_run_hand_computed():
    # ours: 90, 92, 94 -> mean 92, sd 2, n 3; published single run 96:
    # t = (96 - 92) / (2 sqrt(1 + 1/3)) = 4 / 2.3094 = 1.7321, df 2, p = 2 sf(1.7321; 2) = 0.2254
    t, df, p = predictive(92.0, 2.0, 3, 96.0)
    assert t == pytest.approx(math.sqrt(3)) and df == 2
    assert p == pytest.approx(2 * stats.t.sf(math.sqrt(3), 2)) and p == pytest.approx(0.2254, abs=1e-4)


def test_audit_mapping_per_task_metrics_and_single_runs():
    """A mapped target is compared with the named method (by its key; the row shows its label) and metric;
    a published single run without a spread gets the predictive test."""
    runs = runs_frame([90.0, 92.0, 94.0], label="Fine-tuning", scenario="domain").assign(method="none")
    runs["acc_task1"] = [50.0, 52.0, 54.0]
    targets = pd.DataFrame([
        {"experiment": "pub", "target_id": "avg", "scenario": "domain-IL style", "method": "fine-tuning (c=0)",
         "value": 96.0, "spread": None, "spread_kind": None, "n_seeds": 1, "source": "data file",
         "provenance": "author data", "paper": "Z"},
        {"experiment": "pub", "target_id": "t1", "scenario": "domain-IL style", "method": "fine-tuning (c=0)",
         "value": 80.0, "spread": None, "spread_kind": None, "n_seeds": 1, "source": "data file",
         "provenance": "author data", "paper": "Z"}])
    mapping = {"avg": {"method": "none", "metric": "acc", "scenario": "domain"},
               "t1": {"method": "none", "metric": "acc_task1", "scenario": "domain"}}
    out = audit(summarise(runs), targets, "pub", "e", "paper", mapping=mapping).set_index("target_id")
    assert out.loc["avg", "label"] == "Fine-tuning" and out.loc["avg", "ours"] == pytest.approx(92.0)
    assert out.loc["avg", "test"] == "single published run" and out.loc["avg", "verdict"] == "agrees"
    assert out.loc["avg", "p_value"] == pytest.approx(2 * stats.t.sf(math.sqrt(3), 2))
    assert out.loc["t1", "ours"] == pytest.approx(52.0) and out.loc["t1", "verdict"] == "disagrees"
    unmapped = audit(summarise(runs), targets, "pub", "e", "paper")
    assert (unmapped.verdict == "not run").all()


def test_method_log_table_shows_shared_values_and_summarises_varying_ones():
    from clrepro.report import method_log_table
    log = lambda kept: json.dumps([{"units": [200, 200], "latent": 10, "replay_kept": None},   # noqa: E731
                                   {"units": [250, 250], "latent": 16, "replay_kept": kept}])
    runs = pd.DataFrame({"experiment": ["e", "e", "e"], "scenario": ["class"] * 3, "label": ["CLN", "CLN", "None"],
                         "method_log": [log(0.5), log(0.7), ""]})
    t = method_log_table(runs, "e")
    assert t["after task"].tolist() == [1, 2] and set(t.method) == {"CLN"}
    assert t.units.tolist() == ["200-200", "250-250"] and t.latent.tolist() == [10, 16]
    assert t.replay_kept.tolist() == ["–", "0.6 ± 0.1 (2)"]
    assert method_log_table(runs.drop(columns="method_log"), "e").empty


def test_report_tables_of_seeds_and_tasks_keep_scenario_and_method_order():
    from clrepro.report import per_task_table, seeds_table
    runs = pd.concat([runs_frame([90.0, 92.0], "SI", "class"), runs_frame([50.0, 54.0], "None", "class"),
                      runs_frame([95.0], "SI", "task")])
    runs = runs.assign(acc_task1=runs.acc - 1, learned_task1=runs.acc + 1,
                       acc_task2=runs.acc + 1, learned_task2=runs.acc + 1)
    seeds = seeds_table(runs, "e", ["None", "SI"])
    assert seeds.scenario.tolist() == ["Task-IL", "Class-IL", "Class-IL"]
    assert seeds.method.tolist() == ["SI", "None", "SI"]
    assert seeds["seed 1"].iloc[1:].tolist() == [54.0, 92.0] and pd.isna(seeds["seed 1"].iloc[0])
    tasks = per_task_table(summarise(runs), "e", ["None", "SI"]).set_index(["scenario", "method"])
    # task 1 of Class-IL SI: final 89 and 91 (mean 90, sem 1), right after training 91 and 93 (mean 92)
    assert tasks.loc[("Class-IL", "SI"), "task 1"] == "90.00 ± 1.00 (92.00)"
    assert tasks.loc[("Task-IL", "SI"), "task 2"] == "96.00 (96.00)"   # one seed: no SEM
    one = per_task_table(summarise(runs[runs.scenario == "task"]), "e", ["SI"])
    assert list(one.columns) == ["method", "task 1", "task 2"]


def test_figures_keep_a_method_style_and_twenty_methods_stay_apart():
    labels = [f"m{i}" for i in range(20)]
    palette, dashes = method_styles(labels)
    assert len({(palette[m], dashes[m]) for m in labels}) == 20
    assert len({palette[m] for m in labels[:10]}) == 10 and all(dashes[m] == "" for m in labels[:10])
    # a method's style follows its place in the configured order, not which others are drawn
    assert method_styles(labels[:12])[0]["m11"] == palette["m11"]


@pytest.mark.parametrize("draw", ["final_accuracy", "task_bars"])
def test_bars_of_methods_beyond_ten_are_hatched_like_their_dashed_lines(draw, monkeypatch, tmp_path):
    labels = [f"m{i}" for i in range(12)]
    metric = "acc" if draw == "final_accuracy" else "acc_task1"
    summary = pd.DataFrame({"metric": metric, "scenario": "task", "label": labels,
                            "mean": 50.0, "sem": 1.0})
    audit = pd.DataFrame(columns=["metric", "published", "published_sem", "our_scenario", "label"])
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    getattr(figures, draw)(summary, audit, "t", tmp_path / "f.png", order=labels)
    bars = [b for ax in drawn[0].axes for b in ax.patches if b.get_height() == 50.0]
    assert [b.get_facecolor() for b in bars[:2]] == [b.get_facecolor() for b in bars[10:]]
    assert [bool(b.get_hatch()) for b in bars] == [False] * 10 + [True] * 2


def test_the_bar_figure_says_where_a_method_without_a_bar_is_defined(monkeypatch, tmp_path):
    # XdG is defined in Task-IL only: its empty Class-IL slot says so; LwF could run there but did not,
    # or (given ``selected``) this report gives it no Class-IL seeds
    summary = pd.DataFrame({"metric": "acc", "scenario": ["task", "task", "task", "class"],
                            "label": ["None", "XdG", "LwF", "None"], "mean": 50.0, "sem": 1.0})
    audit = pd.DataFrame(columns=["metric", "published", "published_sem", "our_scenario", "label"])
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    defined = {"None": ["task", "class"], "XdG": ["task"], "LwF": ["task", "class"]}
    figures.final_accuracy(summary, audit, "t", tmp_path / "f.png", ["None", "XdG", "LwF"], defined=defined)
    task, cls = [[t.get_text() for t in ax.texts] for ax in drawn[0].axes if ax.patches]
    assert task == [] and cls == ["Task-IL only", "not run"]
    selected = {"None": ["task", "class"], "XdG": ["task"], "LwF": ["task"]}
    figures.final_accuracy(summary, audit, "t", tmp_path / "f.png", ["None", "XdG", "LwF"], defined=defined,
                           selected=selected)
    task, cls = [[t.get_text() for t in ax.texts] for ax in drawn[1].axes if ax.patches]
    assert task == [] and cls == ["Task-IL only", "not in this report"]
    assert figures._absent("iCaRL", "task", {"iCaRL": ["domain", "class"]}) == "Domain-IL and Class-IL only"


# An experiment of 17 methods (split_mnist_vdv19's): label -> library method.
METHODS17 = {"None": "none", "Joint": "joint", "EWC": "ewc", "Online EWC": "ewc", "SI": "si", "LwF": "lwf",
             "LwF (KD summed over units)": "lwf", "LwF (no T²)": "lwf", "MAS": "mas", "L2": "l2", "iCaRL": "icarl",
             "DGR": "dgr", "DGR+distill": "dgr", "BI-R": "bir", "CLN": "cln", "ER": "er", "A-GEM": "agem"}
ORDER17 = list(METHODS17)
FAMILIES17 = {label: method_family(m) for label, m in METHODS17.items()}


def test_every_registered_method_has_a_family():
    from clrepro.methods import REGISTRY
    assert {name: method_family(name) for name in REGISTRY if method_family(name) == "other"} == {}
    assert method_family("ewc") == "regularisation" and method_family("icarl") == "replay"
    assert method_family("none") == "baselines" and method_family("none", "sdm") == "architecture"
    assert method_family("ewc", "sdm") == "regularisation" and method_family("no such method") == "other"


def test_panels_hold_at_most_eight_methods_with_the_baselines_in_each():
    got = panels(ORDER17, FAMILIES17)
    assert [name for name, _ in got] == ["regularisation", "distillation", "replay", "generative replay",
                                         "architecture"]
    assert all(len(methods) <= 8 and methods[:2] == ["None", "Joint"] for _, methods in got)
    assert {m for _, methods in got for m in methods} == set(ORDER17)
    # a family beyond eight is cut into near-equal parts; no baseline: no reference
    many = [f"SI {i}" for i in range(13)]
    cut = panels(["None", *many], {"None": "baselines"} | {m: "regularisation" for m in many})
    assert [(name, len(methods)) for name, methods in cut] == [("regularisation (1/2)", 7), ("regularisation (2/2)", 8)]
    assert [len(methods) for _, methods in panels(many, {m: "regularisation" for m in many})] == [6, 7]
    # without families: all the methods, eight at most per panel
    assert [len(methods) for _, methods in panels(ORDER17)] == [5, 6, 6]


def test_method_styles_by_family_give_a_panel_distinct_colours_and_keep_the_plain_scheme_without():
    palette, dashes = method_styles(ORDER17, FAMILIES17)
    for _, methods in panels(ORDER17, FAMILIES17):
        assert len({palette[m] for m in methods}) == len(methods)
    assert len({(palette[m], dashes[m]) for m in ORDER17}) == 17
    assert method_styles(ORDER17) == method_styles(ORDER17, None)


def frames17():
    """accuracy, summary and audit tables of a 2-task experiment with the 17 methods, 2 seeds, in two
    scenarios (to draw fast); iCaRL and CLN in Class-IL only, as in the configuration."""
    rows = [{"experiment": "e", "scenario": sc, "label": m, "seed": seed, "after_task": after, "task": task,
             "accuracy": 90.0 - 3 * i + seed} for sc in ("task", "class")
            for i, m in enumerate(ORDER17) if sc == "class" or m not in ("iCaRL", "CLN")
            for seed in (0, 1) for after in range(3) for task in (1, 2)]
    acc = pd.DataFrame(rows)
    last = acc[acc.after_task == 2]
    final = last.groupby(["scenario", "label", "seed"], as_index=False).accuracy.mean()
    summary = pd.concat([
        final.groupby(["scenario", "label"], as_index=False).accuracy.agg(mean="mean", sem="sem").assign(metric="acc"),
        last.groupby(["scenario", "label", "task"], as_index=False).accuracy.agg(mean="mean", sem="sem")
        .assign(metric=lambda d: "acc_task" + d.task.astype(str)).drop(columns="task")])
    audit = pd.DataFrame({"metric": ["acc", "acc", "acc_task1"], "published": [95.0, 20.0, 90.0],
                          "published_sem": [0.5, None, 1.0], "our_scenario": ["task", "class", "task"],
                          "label": ["EWC", "None", "EWC"]})
    return acc, summary.assign(experiment="e"), audit


@pytest.fixture(scope="module")
def figures17(tmp_path_factory):
    """{kind: (figure, its PNG)} of the 17-method experiment, drawn once."""
    acc, summary, audit = frames17()
    folder = tmp_path_factory.mktemp("figures17")
    args = {"accuracy_per_task": (acc, "t"), "average_accuracy": (acc, audit, "t"),
            "final_accuracy": (summary, audit, "t"), "task_bars": (summary[summary.scenario == "task"], audit, "t")}
    return {kind: (getattr(figures, kind)(*a, folder / f"{kind}.png", ORDER17, families=FAMILIES17),
                   folder / f"{kind}.png") for kind, a in args.items()}


def _colours(fig) -> dict:
    """{label: colour} of the methods in a figure's legends, or of its bars named by the x ticks."""
    from matplotlib.colors import to_hex
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    got = {t.get_text().replace("\n", " "): to_hex(h.get_color() if isinstance(h, Line2D) else h.get_facecolor())
           for leg in legends for t, h in zip(leg.get_texts(), leg.legend_handles)
           if not t.get_text().startswith("pub")}
    if not got:   # final_accuracy: the bottom row's bars (every method ran in Class-IL), named by its ticks
        ax = [ax for ax in fig.axes if ax.patches][-1]
        at = {round(b.get_x() + b.get_width() / 2, 6): b for b in ax.patches}
        got = {t.get_text(): to_hex(at[round(x, 6)].get_facecolor())
               for x, t in zip(ax.get_xticks(), ax.get_xticklabels())}
    return got


@pytest.mark.parametrize("kind", ["accuracy_per_task", "average_accuracy", "final_accuracy", "task_bars"])
def test_figures_of_seventeen_methods_fit_the_page_legibly_with_eight_methods_a_panel(kind, figures17):
    fig, png = figures17[kind]
    width, smallest = figures.legibility(fig, png)
    assert width <= 1150 and smallest >= 9     # 9 pt at 120 dpi: 15 px, shown unscaled on a 1200 px page
    drawn = [ax for ax in fig.axes if ax.axison]
    if kind == "final_accuracy":   # a row per scenario, the bars by family: baselines, regularisation, ...
        assert len(drawn) == 2
        assert [t.get_text() for t in drawn[-1].get_xticklabels()][:4] == ["None", "Joint", "EWC", "Online EWC"]
        return
    for ax in drawn:
        methods = ({line.get_label() for line in ax.lines if len(line.get_xdata()) > 1} if kind != "task_bars"
                   else {(b.get_facecolor(), b.get_hatch()) for b in ax.patches})
        assert 1 <= len(methods) <= 8
    ran = set(ORDER17) - ({"iCaRL", "CLN"} if kind == "task_bars" else set())   # Class-IL only
    assert ran <= {m for ax in drawn for m in ax.get_legend_handles_labels()[1]} | set(_colours(fig))


def test_a_method_has_one_colour_in_every_figure(figures17):
    from matplotlib.colors import to_hex
    want = {m: to_hex(c) for m, c in method_styles(ORDER17, FAMILIES17)[0].items()}
    for kind, (fig, _) in figures17.items():
        got = _colours(fig)
        assert got == {m: want[m] for m in got}, kind
        assert set(got) == set(ORDER17) - ({"iCaRL", "CLN"} if kind == "task_bars" else set()), kind


def test_the_memory_figure_puts_each_method_at_the_bytes_it_holds(tmp_path):
    """``memory_table`` reads the accuracy and ``memory.bytes`` of each result; the figure draws a
    method holding something at its mean kB and mean accuracy, one holding nothing as a line."""
    def result(method, seed, acc, held):
        return {"method": method, "scenario": "class", "seed": seed, "metrics": {"acc": acc},
                **({"memory": {"stored": 10, "bytes": held}} if held else {})}
    runs = [result("none", 0, 0.2, 0), result("none", 1, 0.3, 0), result("er", 0, 0.7, 78_400),
            result("er", 1, 0.8, 78_400), result("crumb", 0, 0.6, 70_000), result("crumb", 1, 0.9, 90_000)]
    table = figures.memory_table(runs, {"none": "None", "er": "ER", "crumb": "CRUMB"})
    assert table.bytes.tolist() == [0, 0, 78_400, 78_400, 70_000, 90_000] and table.acc.tolist()[:2] == [20, 30]
    fig = figures.memory(table, "t", tmp_path / "m.png", ["None", "ER", "CRUMB"])
    ax = [a for a in fig.axes if a.axison][0]
    points = sorted((round(float(line.get_xdata()[0]), 1), round(float(line.get_ydata()[0]), 1))
                    for line in ax.lines if line.get_marker() == "o")
    assert points == [(78.4, 75.0), (80.0, 75.0)]
    assert [round(float(line.get_ydata()[0]), 1) for line in ax.lines if line.get_linestyle() != "None"] == [25.0]
    width, smallest = figures.legibility(fig, tmp_path / "m.png")
    assert width <= 1150 and smallest >= 9
