"""The stability gap: a check's quantities on hand-made curves, the checks table, the figure, and
the configuration of experiments that measure it (continual evaluation, checks, extends)."""
import copy
import json
import re

import pandas as pd
import pytest
import yaml

from clrepro import config, figures, stability
from clrepro.config import ConfigError
from conftest import REPO

# Two tasks of 4 updates, evaluated every 2: task 1 at 0.90 when task 2 starts (iteration 4),
# 0.70 two updates later, 0.89 at the end of task 2.
CURVE = {"iteration": [0, 2, 4, 6, 8], "task": [0, 0, 1, 1, 1],
         "acc": [[0.1], [0.6], [0.9, 0.2], [0.7, 0.5], [0.89, 0.8]]}
DROP = {"id": "d", "claim": "drops", "method": "joint", "task": 1, "after": 1, "within": 2, "min_drop": 15.0}
GAP = {"id": "g", "claim": "recovers", "method": "joint", "task": 1, "after": 1, "max_gap": 2.0}


def test_drop_and_recovery_at_a_task_switch():
    assert stability.switch_drop(CURVE, [4, 8], task=1, after=1, within=2) == pytest.approx(0.2)
    assert stability.switch_drop(CURVE, [4, 8], task=1, after=1, within=4) == pytest.approx(0.2)
    assert stability.recovery_gap(CURVE, [4, 8], task=1, after=1) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="no evaluation within 1 iterations after task 1"):
        stability.switch_drop(CURVE, [4, 8], task=1, after=1, within=1)


def test_checks_hold_on_the_mean_over_runs():
    """Two runs: drops of 20 and 10 points (mean 15: held at >= 15), gaps of 1 and 4 (mean 2.5: not
    held at <= 2); a method without runs is "not run"."""
    other = copy.deepcopy(CURVE)
    other["acc"][3][0], other["acc"][4][0] = 0.8, 0.86
    runs = [{"method": "joint", "scenario": "domain", "seed": s, "steps_per_task": [4, 4], "continual_eval": c}
            for s, c in enumerate((CURVE, other))]
    table = stability.checks_table(runs, [DROP, GAP, dict(GAP, id="n", method="er")]).set_index("check")
    assert table.loc["d", "mean"] == pytest.approx(15.0) and table.loc["d", "held"] == "held"
    assert json.loads(table.loc["d", "runs"]) == [20.0, 10.0] and table.loc["d", "n"] == 2
    assert table.loc["g", "mean"] == pytest.approx(2.5) and table.loc["g", "held"] == "not held"
    assert table.loc["n", "held"] == "not run"


def test_stability_gap_figure_has_a_panel_per_earlier_task_and_the_switches(tmp_path):
    runs = [{"method": m, "scenario": "domain", "seed": s, "steps_per_task": [4, 4, 4],
             "continual_eval": {"iteration": [0, 4, 8, 12], "task": [0, 1, 2, 2],
                                "acc": [[0.1], [0.9, 0.1], [0.8, 0.9, 0.1], [0.85, 0.9, 0.95]]}}
            for m in ("joint", "none") for s in range(2)]
    curves = figures.curves_table(runs, {"joint": "Joint", "none": "None"})
    assert len(curves) == 4 * (1 + 2 + 3 + 3) and curves.accuracy.max() == pytest.approx(95.0)
    fig = figures.stability_gap(curves, [4, 8, 12], "t", tmp_path / "s.png", ["Joint", "None"],
                                {"Joint": "baselines", "None": "baselines"})
    width, smallest = figures.legibility(fig, tmp_path / "s.png")
    assert width <= 1150 and smallest >= 9
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["Domain-IL: task 1", "Domain-IL: task 2"]
    assert [ax.get_xlabel() for ax in panels] == ["iterations"] * 2
    assert {line.get_label() for line in panels[0].lines if len(line.get_xdata()) > 2} == {"Joint", "None"}
    assert [line.get_xdata()[0] for line in panels[0].lines if len(line.get_xdata()) == 2] == [4, 8]


def _experiment(tmp_path, name, text):
    (tmp_path / "experiments").mkdir(exist_ok=True)
    for other in ("split_mnist_vdv19", "rotated_mnist_stability_gap"):
        (tmp_path / "experiments" / f"{other}.yaml").write_text(
            (REPO / "config" / "experiments" / f"{other}.yaml").read_text())
    path = tmp_path / "experiments" / f"{name}.yaml"
    path.write_text(text)
    return config.load_experiment(path, {"preset": "paper"})


def test_an_experiment_extends_another_with_the_methods_named(tmp_path):
    exp = _experiment(tmp_path, "gap", "title: t\nextends: {experiment: split_mnist_vdv19, methods: [er, joint]}\n"
                                       "scenarios: [class]\nseeds: 2\n")
    base = yaml.safe_load((REPO / "config" / "experiments" / "split_mnist_vdv19.yaml").read_text())
    assert list(exp["methods"]) == ["er", "joint"] and exp["methods"]["er"] == base["methods"]["er"]
    assert exp["model"] == base["model"] and exp["iters_per_task"] == 2000 and exp["seeds"] == 2
    assert exp["title"] == "t" and "audit_map" not in exp and "targets" not in exp
    with pytest.raises(ConfigError, match=r"gap.yaml: extends.methods: no method \['nope'\]"):
        _experiment(tmp_path, "gap", "extends: {experiment: split_mnist_vdv19, methods: [nope]}\n")


@pytest.mark.parametrize("old, new, problem", [
    (r"continual_eval:\n(  .*\n)+", "", "set continual_eval"),
    (r"method: joint(?=\n    task: 1\n    after: 1\n    within)", "method: sgd",
     r"checks\[0\] \(joint_drops\).method: no method 'sgd'"),
    (r"after: 1(?=\n    max_gap)", "after: 3", r"checks\[1\] \(joint_recovers\).after: 3 is past task 2"),
])
def test_checks_are_validated_naming_the_check(tmp_path, old, new, problem):
    text = (REPO / "config" / "experiments" / "rotated_mnist_stability_gap.yaml").read_text()
    changed = re.sub(old, new, text, count=1)
    assert changed != text
    with pytest.raises(ConfigError, match=problem):
        _experiment(tmp_path, "gap", changed)


@pytest.mark.slow
def test_the_dag_measures_the_stability_gap_and_reports_its_checks(tiny_mnist, tmp_path):
    """Both stability-gap experiments through the real DAG at a tiny scale: the runs carry their
    curves and metrics, the checks and the curve figures are drawn, the report shows the checks."""
    from workflow_helpers import make_workdir, snakemake
    gap = ["rotated_mnist_stability_gap", "split_mnist_stability_gap"]
    work = make_workdir(tmp_path / "work", tiny_mnist,
                        {"seeds": 1, "iters_per_task": 4, "batch_size": 16, "model": {"type": "mlp", "hidden": [16]},
                         "continual_eval": {"every": 1, "test_subset": 20, "window": 3}},
                        experiments=gap)
    proc = snakemake(work, "--cores", "2", "--config", f"methods={{{gap[0]}: [joint, none], {gap[1]}: [joint, er]}}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    rep = work / "reports" / "test"
    result = json.loads((rep / "runs" / gap[1] / "class" / "er" / "seed0.json").read_text())
    assert len(result["continual_eval"]["iteration"]) == 5 * 4 + 1 and result["protocol"]["iters_per_task"] == 4
    assert result["hyperparameters"]["per_class"] == 100                 # split_mnist_vdv19's ER
    checks = pd.read_csv(rep / "checks" / f"{gap[0]}_checks.csv")
    assert list(checks.check) == ["joint_drops", "joint_recovers", "joint_drops_again"] and set(checks.n) == {1}
    assert not (rep / "checks" / f"{gap[1]}_checks.csv").exists()        # it states no check
    assert {p.name for p in (rep / "figures").iterdir()} == {f"{e}_{k}.png" for e in gap
                                                             for k in ("stability_gap", "accuracy_per_task")}
    runs = pd.read_csv(rep / "runs.csv")
    assert runs[["min_acc", "wc_acc", "wf"]].notna().all().all()
    page = (rep / "report.html").read_text()
    assert "Qualitative checks" in page and "joint_recovers" in page and "min-ACC" in page
