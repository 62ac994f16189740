"""The report's headline, compact audit and notes, on hand-made tables; and every committed note
rendered against the committed results (a note whose number has no value fails here)."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from clrepro import config, notes
from clrepro.aggregate import read_csv
from clrepro.audit import COLUMNS
from clrepro.report import (_banners, audit_counts, audit_view, headline, memory_cost_table, protocol_table, render,
                            reproduce_command, seeds_held)

REPO = Path(__file__).resolve().parents[1]


def _audit(rows):
    return pd.DataFrame([{c: None for c in COLUMNS} | r for r in rows], columns=COLUMNS)


AUDIT = _audit([
    {"target_id": "t_none", "scenario": "task-IL", "our_scenario": "task", "label": "None", "metric": "acc",
     "published": 87.19, "published_sem": 0.94, "n_published": 20, "ours": 88.5, "ours_sem": 0.64, "n_ours": 5,
     "difference": 1.31, "test": "welch", "t": 1.15, "df": 18.2, "p_value": 0.26, "verdict": "agrees"},
    {"target_id": "t_ewc", "scenario": "class-IL", "our_scenario": "class", "label": "EWC", "metric": "acc",
     "published": 20.0, "published_sem": 0.1, "n_published": 20, "ours": 22.0, "ours_sem": 0.2, "n_ours": 5,
     "difference": 2.0, "test": "welch", "t": 8.9, "df": 6.0, "p_value": 1e-4, "verdict": "disagrees"},
    {"target_id": "t_si", "scenario": "class-IL", "our_scenario": "class", "label": "SI", "metric": "acc",
     "published": 20.0, "published_sem": 0.1, "n_published": 20, "ours": 20.5, "ours_sem": 0.1, "n_ours": 5,
     "difference": 0.5, "test": "welch", "t": 3.5, "df": 20.0, "p_value": 0.002, "verdict": "close"},
    {"target_id": "t_xdg", "scenario": "task-IL", "our_scenario": "task", "label": "XdG", "metric": "acc",
     "published": 99.1, "published_sem": 0.08, "n_published": 20, "n_ours": 0, "verdict": "not run"},
    {"target_id": "t_task1", "scenario": "domain-IL", "our_scenario": "domain", "label": "None",
     "metric": "acc_task1", "published": 71.2, "n_published": 1, "ours": 80.0, "ours_sem": 1.0, "n_ours": 1,
     "difference": 8.8, "verdict": "no verdict (one run of ours)"},
])


def test_headline_counts_each_verdict():
    counts = audit_counts(AUDIT)
    assert counts == {"published": 5, "run": 4, "agree": 1, "close": 1, "disagree": 1, "no_verdict": 1,
                      "not_run": 1}
    assert headline(counts, "paper") == ("Of 5 published numbers, 4 were run: 1 agrees, 1 is close, 1 disagrees, "
                                         "1 without a verdict (too few runs or no spread); 1 not run.")
    assert headline(audit_counts(AUDIT.iloc[:1]), "paper") == (
        "Of 1 published number, 1 was run: 1 agrees, none is close, none disagrees.")
    assert headline(counts, "quick") == "Of 5 published numbers, 4 were run (the quick preset: no verdicts); 1 not run."


def test_compact_audit_is_methods_by_scenarios_with_a_cell_per_published_number():
    view = audit_view(AUDIT, ["EWC", "None", "SI"], {"t_ewc": "<p>why</p>"}, "audit/x.csv", "rule")
    assert view["columns"] == ["Task-IL", "Domain-IL, acc task1", "Class-IL"]
    assert [r["method"] for r in view["rows"]] == ["EWC", "None", "SI", "XdG"]    # configured order first
    ewc = view["rows"][0]["cells"]
    assert ewc[0] is None and ewc[1] is None and ewc[2]["kind"] == "disagrees" and ewc[2]["note"]
    assert ewc[2]["published"] == "20.00 ± 0.10" and ewc[2]["ours"] == "22.00 ± 0.20 (5)"
    assert ewc[2]["difference"] == "Δ +2.00" and "t = 8.90" in ewc[2]["stats"] and "p = 0.000" in ewc[2]["stats"]
    assert sum(c is not None for r in view["rows"] for c in r["cells"]) == len(AUDIT)
    assert view["rows"][3]["cells"][0]["kind"] == "not-run"


def test_the_cost_table_gives_wall_and_cpu_time_apart():
    """Wall time and CPU time are means over seeds; a cell with one seed's run that predates CPU
    times has none rather than the mean of the others; a runs table from before them, none at all."""
    from clrepro.aggregate import runs_table

    runs = pd.DataFrame([{"experiment": "e", "scenario": "task", "label": m, "acc": 90.0, "stored": None,
                          "memory_bytes": None if m == "None" else 1000, "peak_rss_mb": 700.0,
                          "train_seconds": w, "cpu_seconds": c}
                         for m, w, c in (("None", 100.0, 80.0), ("None", 300.0, 90.0), ("DGR", 9000.0, None),
                                         ("DGR", 7000.0, 6000.0))])
    t = memory_cost_table(runs, "e", ["None", "DGR"]).set_index("method")
    assert t.loc["None", "wall time (s)"] == "200" and t.loc["None", "CPU time (s)"] == "85"
    assert t.loc["DGR", "wall time (s)"] == "8000" and t.loc["DGR", "CPU time (s)"] == "–"
    assert (memory_cost_table(runs.drop(columns="cpu_seconds"), "e", ["None", "DGR"])["CPU time (s)"] == "–").all()
    # the runs table sums a run's CPU time over its tasks, and has none unless every task recorded it
    record = json.loads((REPO / "reports/quick/runs/permuted_mnist_vdv19/task/lwf_padded_summed/seed0.json").read_text())
    row = runs_table([record]).iloc[0]
    assert row.cpu_seconds == pytest.approx(sum(record["cpu_seconds_per_task"])) and row.cpu_seconds > 0
    record["cpu_seconds_per_task"][1] = None
    assert pd.isna(runs_table([record]).iloc[0].cpu_seconds)
    del record["cpu_seconds_per_task"]
    assert pd.isna(runs_table([record]).iloc[0].cpu_seconds)

def _context(tmp_path, text, methods=("none", "ewc"), all_methods=None):
    runs = pd.DataFrame([{"experiment": "e", "scenario": "class", "method": m, "seed": s, "acc": a,
                          "learned_task2": 90.0 + s, "train_seconds": 3600.0,
                          "method_log": json.dumps([{"uphill": 1.0 + s}, {"uphill": 10.0 * (s + 1)}])}
                         for m in methods for s, a in enumerate((20.0, 22.0, 24.0))])
    exp = config.Experiment("e", {"methods": {m: {} for m in methods}})
    if all_methods:
        exp.all_methods = list(all_methods)
    path = tmp_path / "e.md"
    path.write_text(text)
    return path, notes.Context("e", exp, runs, AUDIT, None, 3)


def test_notes_take_every_number_from_the_tables(tmp_path):
    path, ctx = _context(tmp_path, "EWC ends at {{ ours.class.ewc }} (runs {{ ours.class.ewc.range }}),\n"
                                   "task 2 {{ metric('class', 'ewc', 'learned_task2').mean|f(1) }}%, uphill "
                                   "{{ log('class', 'ewc', 'uphill', tasks=[2]).range }}; "
                                   "{{ published.t_ewc }} by {{ audit.t_ewc.difference|f(1) }}; {{ seeds }} seeds "
                                   "and {{ train_hours|f(0) }} h.\n\n## Paper scale\n\nOnly at *paper* scale.\n")
    page = notes.render(path, ctx, "paper")
    assert page.html == ("<p>EWC ends at 22.00 ± 1.15 (n = 3) (runs 20.0–24.0),\ntask 2 91.0%, uphill 10.0–30.0; "
                         "20.00 ± 0.10 by 2.0; 3 seeds and 6 h.</p>\n<p>Only at <em>paper</em> scale.</p>\n")
    assert "paper" not in notes.render(path, ctx, "quick").html


def test_notes_pair_our_seeds_with_the_authors_runs(tmp_path):
    path, ctx = _context(tmp_path, "")
    theirs = pd.DataFrame([{"experiment": "e", "scenario": "class", "method": "ewc", "seed": s, "value": v}
                           for s, v in ((1, 21.0), (2, 25.0), (7, 30.0))])
    ctx = notes.Context("e", ctx.exp, ctx.runs_df, AUDIT, theirs, 3)
    # ours: seeds 0, 1, 2 at 20, 22, 24; theirs on seeds 1, 2 (and 7): 22 - 21 and 24 - 25
    assert ctx.versus_authors("class", "ewc").runs == (1.0, -1.0)
    assert ctx.metric("class", "ewc", seeds=range(1, 3)).runs == (22.0, 24.0)
    with pytest.raises(notes.NoteError, match="no run of the authors' code for none"):
        ctx.versus_authors("class", "none")


def test_notes_test_two_means_with_the_audits_welch_and_name_the_devices(tmp_path):
    path, ctx = _context(tmp_path, "")
    ours, published = ctx.metric("class", "ewc"), ctx.published()["t_ewc"]
    # ours: 20, 22, 24 (mean 22, SEM 2/sqrt(3), n 3) against 20.00 ± 0.10 (n 20):
    # t = 2 / sqrt(4/3 + 0.01), df = (4/3 + 0.01)^2 / ((4/3)^2 / 2 + 0.1^4 / 19)
    test = notes.welch(ours, published)
    assert test.t == pytest.approx(2 / (4 / 3 + 0.01) ** 0.5) and test.t == pytest.approx(1.72559, abs=1e-5)
    assert test.df == pytest.approx((4 / 3 + 0.01) ** 2 / ((4 / 3) ** 2 / 2 + 1e-4 / 19))
    assert 0.2 < test.p < 0.25 and str(test) == f"t = 1.73, df = {test.df:.1f}, p = {test.p:.3f}"
    assert notes.welch(ours, ours).t == 0 and notes.welch(ours, ours).p == pytest.approx(1)
    with pytest.raises(notes.NoteError, match="1 run"):
        notes.welch(ctx.metric("class", "ewc", seeds=[0]), published)

    runs = ctx.runs_df.assign(device=["cpu:A"] * 3 + ["cuda:B", "cpu:A", "cuda:B"])     # none: cpu; ewc: mixed
    ctx = notes.Context("e", ctx.exp, runs.assign(label=runs.method.str.upper()), AUDIT, None, 3)
    assert ctx.devices("class", "none") == "cpu:A × 3" and ctx.devices("class", "ewc") == "cuda:B × 2, cpu:A × 1"
    assert ctx.devices() == "EWC in Class-IL (cuda:B × 2, cpu:A × 1)"
    path.write_text("Mixed: {{ devices() }}. {{ welch(ours.class.ewc, published.t_ewc).p|f(2) }}\n")
    assert notes.render(path, ctx, "paper").html == "<p>Mixed: EWC in Class-IL (cuda:B × 2, cpu:A × 1). 0.22</p>\n"
    ctx.runs_df = runs.assign(label=runs.method, device="cpu:A")
    assert ctx.devices() == "none"


@pytest.mark.parametrize("placeholder, problem", [
    ("{{ ours.class.mas }}", r"ours\.class\.mas: no such ours\.class key \(known: ewc, none\)"),
    ("{{ ours.clas.ewc }}", "ours.clas: no such ours key"),
    ("{{ published.t_lwf }}", "no such published key"), ("{{ metric('class', 'ewc', 'bwt') }}", "no metric 'bwt'"),
    ("{{ n_runs }}", "'n_runs' is undefined")])
def test_a_note_without_a_value_fails_naming_file_line_and_value(tmp_path, placeholder, problem):
    path, ctx = _context(tmp_path, f"First paragraph.\n\nSecond,\nwith {placeholder}.\n")
    with pytest.raises(notes.NoteError, match=rf"e\.md: paragraph at line 3: .*{problem}"):
        notes.render(path, ctx, "paper")


def test_a_note_on_a_method_left_out_of_the_report_is_dropped_and_said(tmp_path):
    path, ctx = _context(tmp_path, "Kept.\n\nSI: {{ ours.class.si }}.\n\n## Audit notes\n\n### t_ewc\nEWC: "
                                   "{{ ours.class.ewc.mean|f(1) }}.\n", all_methods=("none", "ewc", "si"))
    page = notes.render(path, ctx, "paper")
    assert page.html == "<p>Kept.</p>\n" and page.left_out == ("si (class)",)
    assert page.audit == {"t_ewc": "<p>EWC: 22.0.</p>\n"}
    path.write_text("## Audit notes\n\n### t_lwf\nno such target\n")
    with pytest.raises(notes.NoteError, match="t_lwf"):
        notes.render(path, ctx, "paper")
    path.write_text("## Results\n\ntext\n")
    with pytest.raises(notes.NoteError, match="line 1: unknown section 'Results'"):
        notes.render(path, ctx, "paper")


def test_a_macro_paragraph_defines_a_sentence_for_the_paragraphs_after_it(tmp_path):
    path, ctx = _context(tmp_path, "{% macro cell(m, name) -%}\n{{ name }} ends at {{ ours.class[m].mean|f(1) }}"
                                   "{% if caller is defined %}: {{ caller() }}{% endif %}.\n{%- endmacro %}\n\n"
                                   "{{ cell('ewc', 'EWC') }}\n\n{% call cell('none', 'None') %}"
                                   "runs {{ ours.class.none.range }}{% endcall %}\n\n{{ cell('si', 'SI') }}\n",
                         all_methods=("none", "ewc", "si"))
    page = notes.render(path, ctx, "paper")
    # the macro paragraph renders nothing; a call leaving a method out drops its own paragraph only
    assert page.html == "<p>EWC ends at 22.0.</p>\n<p>None ends at 22.0: runs 20.0–24.0.</p>\n"
    assert page.left_out == ("si (class)",)
    path.write_text("{% macro cell() %}x{% endmacro %}\n\n## Paper scale\n\n{{ cell() }}\n")    # across sections
    assert notes.render_plain(path, "paper") == notes.render(path, ctx, "paper").html == "<p>x</p>\n"
    path.write_text("{% macro cell() %}x{% endmacro %} stray words\n")
    with pytest.raises(notes.NoteError, match="line 1: a macro paragraph holds text outside its macros"):
        notes.render(path, ctx, "paper")


def test_the_committed_notes_render_against_the_committed_results(tmp_path):
    """Every number in config/notes/*.md has a value in reports/paper (else a stale note), and the
    committed paper report renders (its headline, one compact audit cell per published number)."""
    cfg = config.load(REPO / "config" / "config.yaml",
                      {"seeds": {"split_mnist_vdv19": 5, "permuted_mnist_si17": {"ewc": 2, "online_ewc": 3, "mas": 2,
                                                                                 "l2": 3}}})
    paper = REPO / "reports" / "paper"
    runs, summary = read_csv(paper / "runs.csv"), read_csv(paper / "summary.csv")
    audits = {p.stem.removesuffix("_audit"): read_csv(p) for p in (paper / "audit").glob("*_audit.csv")}
    checks = {p.stem.removesuffix("_checks"): read_csv(p) for p in (paper / "checks").glob("*_checks.csv")}
    targets = read_csv(REPO / "config" / "targets.csv")
    page = render(cfg, "paper", summary, runs, audits, {}, {}, read_csv(REPO / "config" / "reference_runs.csv"),
                  {"split_cifar_si17": "no data (download failed)"}, {"seeds": 5}, checks, targets,
                  yaml.safe_load((REPO / "config" / "not_run.yaml").read_text()))
    assert page.count("<h3>Qualitative checks</h3>") == len(checks) == 1
    # every published number is audited by an experiment or listed, with why, as not run here
    listed = {"crumb_stream": "Toybox, iLab-2M-Light and ImageNet", "split_cifar100_vdv22": "no experiment file yet"}
    assert "Published numbers not run here" in page and all(why in page for why in listed.values())
    audited = {e.get("targets", k) for k, e in cfg.experiments.items()}
    assert set(targets.experiment) - audited == set(listed)
    # the authors' code run on a method of ours without a published number: A-GEM, Class-IL
    assert "The authors&#39; released code, run here" in page or "The authors' released code, run here" in page
    assert "21.08" in page and "--agem --seed=40" in page
    n = sum(len(a) for a in audits.values())
    cifar = int((targets.experiment == "split_cifar_si17").sum())     # could not run: every number "not run"
    assert f"Of {n + cifar} published numbers, {n} were run" in page and page.count("<td id=\"audit-") == n
    assert "Could not run: Split CIFAR-10/100" in page and "no data (download failed)" in page
    assert "snakemake --cores all --config seeds=5" in page
    assert "{{" not in page and "Notes left out" not in page
    # a note's {{ ours.<scenario>.<method> }} is the summary table's mean ± SEM (n) of the same runs
    for r in summary[summary.metric == "acc"].itertuples():
        exp = cfg.experiments[r.experiment]
        v = notes.Context(r.experiment, exp, runs, None, None, 0).metric(r.scenario, r.method)
        assert (v.n, round(v.mean, 9)) == (r.n, round(r.mean, 9)), r
        assert v.n == 1 or abs(v.sem - r.sem) < 1e-9, r


def test_protocol_table_and_reproducing_command():
    exp = config.load(REPO / "config" / "config.yaml").experiments["split_mnist_vdv19"]
    t = protocol_table(exp, 20).set_index("setting")["value"]
    assert t["network"] == "mlp: hidden 400-400" and t["iterations per task"] == 2000 and t["seeds per method"] == 20
    assert reproduce_command("paper", {}) == "snakemake --cores all"
    assert reproduce_command("quick", {"seeds": {"a": "2"}, "experiments": ["a", "b"]}) == \
        "snakemake --cores all --config 'seeds={a: 2}' 'experiments=[a, b]' preset=quick"


def test_banner_says_who_left_methods_out(monkeypatch):
    """Methods the demo preset leaves out are said to be left out by it, not by --config methods."""
    from clrepro.report import _banners, preset_chose_methods
    monkeypatch.chdir(REPO)
    name = "split_mnist_vdv19"
    for given, by, left_out in (({"preset": "demo"}, "by the preset <code>demo</code>", "A-GEM"),
                                ({"preset": "demo", "methods": {name: ["none", "si"]}},
                                 "by <code>--config methods=...</code>", "EWC")):
        cfg = config.load("config/config.yaml", given)
        exp = cfg.experiments[name]
        chosen = "demo" if preset_chose_methods(cfg, "demo", name, exp) else None
        [banner] = [b for b in _banners(name, exp, chosen) if "Left out" in b]
        assert by in banner and left_out in banner, banner


def test_seeds_held_per_method_where_a_configuration_gives_each_its_own():
    exp = config.Experiment("e", {"seeds": 20, "methods": {"none": {"label": "None"}, "ewc": {"label": "EWC"},
                                                           "agem": {"label": "A-GEM"}}})
    assert seeds_held(exp) == 20 and _banners("e", exp) == []
    exp.method_seeds = {"none": 9, "ewc": 9, "agem": 5}             # every method named: no "others"
    assert seeds_held(exp) == "9 (None, EWC); 5 (A-GEM)"
    (banner,) = _banners("e", exp)
    assert banner.endswith("None 9, EWC 9, A-GEM 5, of the 20 that <code>config/experiments/e.yaml</code> names.")
    exp.method_seeds = {"agem": 5}
    assert _banners("e", exp)[0].endswith("A-GEM 5, where the others have 20.")
    exp.method_seeds = {"agem": {"domain": 2, "class": 1}}          # seeds given per scenario
    assert seeds_held(exp) == "20 (None, EWC); 2 in Domain-IL, 1 in Class-IL (A-GEM)"
    assert _banners("e", exp)[0].endswith("A-GEM 2 in Domain-IL, 1 in Class-IL, where the others have 20.")
