"""Aggregation, audit and figures: hand-computed statistics and verdicts, method styles."""
import json
import math

import pandas as pd
import pytest
from scipy import stats

from clrepro.aggregate import summarise
from clrepro.audit import audit, predictive, to_sem, verdict, welch
from clrepro import figures
from clrepro.figures import method_styles


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
    out = audit(summary, TARGETS, "pub", "e", "paper", notes={"a": "why"}).set_index("target_id")
    assert list(out.index) == ["a", "b"]                 # only this experiment's targets
    assert out.loc["a", "difference"] == pytest.approx(-0.5)
    assert out.loc["a", "verdict"] == "agrees" and out.loc["a", "note"] == "why"
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
    bars = [b for b in drawn[0].axes[0].patches if b.get_height() == 50.0]
    assert [b.get_facecolor() for b in bars[:2]] == [b.get_facecolor() for b in bars[10:]]
    assert [bool(b.get_hatch()) for b in bars] == [False] * 10 + [True] * 2
