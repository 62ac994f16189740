"""The HTML report: one self-contained page with, per experiment, the protocol, the figures, the
results table and the audit against the published numbers; then how it was produced."""
from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .aggregate import read_csv
from .atomic import atomic_path
from .config import labels, seeds_of
from .metrics import parse_task_metric
from .figures import SCENARIO_TITLES

OTHER_METRICS = ("bwt", "fwt", "forgetting", "learned")
VERDICT_COLOURS = {"agrees": "#d4edda", "close": "#fff3cd", "disagrees": "#f8d7da"}

CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.banner{padding:.6em 1em;background:#fff3cd;border:1px solid #e0c97f;margin:1em 0}
img{max-width:100%} code,pre{background:#f6f6f6;padding:1px 4px}
.small{font-size:12px;color:#555}
"""


def _fmt(v, digits=2):
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _table(df: pd.DataFrame, left=(), row_style=None) -> str:
    head = "".join(f"<th class='{'l' if c in left else ''}'>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for _, r in df.iterrows():
        style = row_style(r) if row_style else ""
        cells = "".join(f"<td class='{'l' if c in left else ''}'>{_fmt(r[c])}</td>" for c in df.columns)
        body.append(f"<tr style='{style}'>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img alt='{html.escape(Path(path).name)}' src='data:image/png;base64,{data}'>"


def _mean_sem(r) -> str:
    return f"{r['mean']:.2f} ± {r['sem']:.2f}" if pd.notna(r["sem"]) else f"{r['mean']:.2f}"


def _in_order(t: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Rows of a table with ``scenario`` and ``label`` columns in the paper's scenario order and
    the configured method order, the scenario by its title (the column dropped where there is only
    one), the label renamed ``method``."""
    t = t.assign(scenario=pd.Categorical(t["scenario"], [c for c in SCENARIO_TITLES if c in set(t["scenario"])]),
                 label=pd.Categorical(t["label"], [m for m in order if m in set(t["label"])]))
    t = t.sort_values(["scenario", "label"]).rename(columns={"label": "method"})
    t = t.assign(scenario=t["scenario"].map(SCENARIO_TITLES))
    return t if t["scenario"].nunique() > 1 else t.drop(columns="scenario")


def results_table(summary: pd.DataFrame, experiment: str, order: list[str]) -> pd.DataFrame:
    """Final average accuracy, mean ± SEM (n), one row per method, one column per scenario."""
    s = summary[(summary.experiment == experiment) & (summary.metric == "acc")]
    cell = s.apply(lambda r: f"{_mean_sem(r)} ({int(r['n'])})", axis=1)
    t = s.assign(cell=cell).pivot(index="label", columns="scenario", values="cell")
    t = t.reindex(index=[m for m in order if m in t.index],
                  columns=[c for c in SCENARIO_TITLES if c in t.columns])
    return t.rename(columns=SCENARIO_TITLES).reset_index().rename(columns={"label": "method"})


def per_task_table(summary: pd.DataFrame, experiment: str, order: list[str]) -> pd.DataFrame:
    """Per scenario and method, each task's final accuracy (mean ± SEM) and, in brackets, its
    accuracy right after it was trained."""
    rows = []
    for (scenario, label), g in summary[summary.experiment == experiment].groupby(["scenario", "label"]):
        by = {parse_task_metric(m): r for m, r in g.set_index("metric").iterrows() if parse_task_metric(m)}
        rows.append({"scenario": scenario, "label": label,
                     **{f"task {t}": f"{_mean_sem(by['acc', t])} ({by['learned', t]['mean']:.2f})"
                        for t in sorted(t for kind, t in by if kind == "acc")}})
    return _in_order(pd.DataFrame(rows), order)


def seeds_table(runs: pd.DataFrame, experiment: str, order: list[str]) -> pd.DataFrame:
    """The final average accuracy of every run: one row per scenario and method, one column per seed."""
    t = runs[runs.experiment == experiment].pivot_table(index=["scenario", "label"], columns="seed", values="acc")
    return _in_order(t.rename(columns=lambda seed: f"seed {seed}").reset_index(), order)


def other_metrics_table(summary: pd.DataFrame, experiment: str, order: list[str]) -> pd.DataFrame:
    s = summary[(summary.experiment == experiment) & summary.metric.isin(OTHER_METRICS)]
    t = s.assign(value=s.apply(_mean_sem, axis=1)).pivot_table(
        index=["scenario", "label"], columns="metric", values="value", aggfunc="first")
    return _in_order(t.reset_index(), order)


def method_log_table(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """What methods record after each task (``Method.task_log``: CLN's units per layer, output
    units, latent dimensions, replay kept by its filter; A-GEM's projections, steps uphill and
    memory loss), one row per method and task: a value shared by every seed as it is, a number
    that varies as its mean ± SEM over seeds."""
    if "method_log" not in runs:
        return pd.DataFrame()
    sub = runs[(runs.experiment == experiment) & (runs.method_log.fillna("") != "")]
    rows = []
    for (scenario, label), g in sub.groupby(["scenario", "label"], sort=False):
        logs = [json.loads(s) for s in g.method_log]
        for i in range(min(len(log) for log in logs)):
            row = {"scenario": SCENARIO_TITLES.get(scenario, scenario), "method": label, "after task": i + 1}
            for key in logs[0][i]:
                values = [log[i].get(key) for log in logs]
                if all(v == values[0] for v in values):
                    row[key] = "–" if values[0] is None else (
                        "-".join(map(str, values[0])) if isinstance(values[0], list) else values[0])
                else:
                    x = pd.Series([v for v in values if v is not None], dtype=float)
                    row[key] = f"{x.mean():.3g} ± {x.sem():.2g} ({len(x)})"
            rows.append(row)
    return pd.DataFrame(rows)


def audit_section(audit: pd.DataFrame) -> str:
    counts = audit.verdict.value_counts().to_dict()
    cols = ["target_id", "scenario", "method", "label", "metric", "published", "published_sem", "n_published",
            "ours", "ours_sem", "n_ours", "difference", "test", "p_value", "verdict", "reference_code",
            "reference_code_runs", "source", "provenance", "note"]
    cols = [c for c in cols if c in audit.columns]
    summary = ", ".join(f"{v}: {k}" for k, v in counts.items())
    table = _table(audit[cols], left=("target_id", "scenario", "method", "label", "metric", "test", "verdict",
                                      "reference_code_runs", "source", "provenance", "note"),
                   row_style=lambda r: f"background:{VERDICT_COLOURS.get(r['verdict'], '#fff')}")
    return f"<p>Verdicts — {html.escape(summary)}.</p>{table}"


def rerun_section(runs: pd.DataFrame) -> str:
    """Committed results that a rerun did not reproduce (``<seed>.rerun.json`` beside them, read by
    the aggregation into ``rerun_acc``): both numbers, side by side."""
    if "rerun_acc" not in runs or runs.rerun_acc.isna().all():
        return ""
    t = runs[runs.rerun_acc.notna()][["experiment", "scenario", "label", "seed", "acc", "rerun_acc", "rerun_device"]]
    return ("<div class='banner'>A rerun of these committed results gave other numbers; the committed ones are "
            "kept and shown everywhere else, the reruns are in the <code>.rerun.json</code> files beside them.</div>"
            + _table(t.rename(columns={"acc": "committed acc", "rerun_acc": "rerun acc"}),
                     left=("experiment", "scenario", "label", "rerun_device")))


def provenance_section(runs: pd.DataFrame) -> str:
    versions = [c for c in runs.columns if c.startswith("version.")]
    prov = runs.groupby(["git_commit", "git_dirty", "training_code", "device", *versions], dropna=False).agg(
        runs=("seed", "size"), train_hours=("train_seconds", lambda s: s.sum() / 3600)).reset_index()
    prov.columns = [c.replace("version.", "") for c in prov.columns]
    return _table(prov, left=("git_commit", "device"))


def simulation_numbers(records: dict[str, dict]) -> pd.DataFrame:
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


def simulation_section(name: str, sim: dict, records: dict[str, dict], figures: list[Path]) -> str:
    parts = [f"<h2>{html.escape(sim.get('title', name))}</h2>"]
    if not records:
        return parts[0] + (f"<p>Not run for this report (configured in <code>config/simulations/{name}.yaml</code>; "
                           "<code>snakemake --cores all</code> runs it).</p>")
    first = next(iter(records.values()))
    parts.append(f"<p class='small'>Model: <code>{html.escape(json.dumps(first['model']))}</code>; retrieval: "
                 f"<code>{html.escape(json.dumps(first['retrieval']))}</code>; seeds {first['seeds']}; "
                 f"preset {html.escape(first['preset'])}. Configuration: <code>config/simulations/{name}.yaml"
                 "</code>.</p>")
    parts += [f"<p>{html.escape(note)}</p>" for note in sim.get("report_notes", [])]
    if sim.get("choices"):
        parts.append("<h3>Model choices</h3>")
        parts.append(_table(pd.DataFrame(sim["choices"], columns=["choice", "follows"]), left=("choice", "follows")))
    parts += [_img(f) for f in figures]
    parts.append("<h3>Numbers</h3>")
    parts.append(_table(simulation_numbers(records), left=("panel", "quantity", "value", "qualitative check")))
    prov = pd.DataFrame([{"panel": p, "parameters": json.dumps(r["parameters"]), "seconds": _fmt(r["seconds"], 0),
                          "git_commit": r["provenance"]["git"]["commit"][:10], "device": r["provenance"]["device"]}
                         for p, r in records.items()])
    parts.append(_table(prov, left=("panel", "parameters", "git_commit", "device")))
    return "\n".join(parts)


def render(config: dict, preset: str, summary: pd.DataFrame, runs: pd.DataFrame,
           audits: dict[str, pd.DataFrame], figures: dict[str, list[Path]],
           simulations: dict[str, dict[str, dict]] | None = None) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>clrepro report ({preset})</title>",
             f"<style>{CSS}</style></head><body><h1>clrepro — replication report</h1>",
             f"<p>Preset <b>{html.escape(preset)}</b>. Rendered {now}. {len(runs)} runs.</p>"]
    if preset != "paper":
        parts.append(f"<div class='banner'>This report uses the <b>{html.escape(preset)}</b> preset (reduced "
                     "scale). Its numbers do not replicate any paper, and the audit gives no verdicts.</div>")
    for name, exp in config["_experiments"].items():
        parts.append(f"<h2>{html.escape(exp.get('title', name))}</h2>")
        if name not in set(summary.experiment):
            parts.append(f"<p>Not run for this report (configured in <code>config/experiments/{name}.yaml</code>; "
                         f"<code>snakemake --cores all</code> runs it).</p>")
            continue
        proto = {k: exp[k] for k in ("dataset", "benchmark", "model", "optimizer", "batch_size", "iters_per_task",
                                     "epochs_per_task") if exp.get(k) is not None}
        parts.append(f"<p class='small'>Protocol: <code>{html.escape(json.dumps(proto))}</code>. "
                     f"Configuration: <code>config/experiments/{name}.yaml</code>.</p>")
        if exp.get("_seeds_in_file"):
            n = len(seeds_of(exp))
            parts.append(f"<div class='banner'>This report holds {n} of the {exp['_seeds_in_file']} seeds that "
                         f"<code>config/experiments/{name}.yaml</code> names (<code>--config seeds=...</code>); "
                         f"without that setting the DAG trains the other {exp['_seeds_in_file'] - n}.</div>")
        fewer = {m: n for m, n in exp.get("_method_seeds", {}).items()
                 if n < len(seeds_of(exp)) and m in exp["methods"]}
        if fewer:
            names = labels(exp)
            parts.append("<div class='banner'>Fewer seeds for some methods (<code>--config seeds=...</code>): "
                         + html.escape(", ".join(f"{names[m]} {n}" for m, n in fewer.items()))
                         + f", where the others have {len(seeds_of(exp))}.</div>")
        if exp.get("_left_out"):
            parts.append("<div class='banner'>Left out of this report by <code>--config methods=...</code>: "
                         f"{html.escape(', '.join(exp['_left_out']))}. The audit lists their published "
                         "numbers as not run.</div>")
        for note in exp.get("report_notes", []):
            parts.append(f"<p>{html.escape(note)}</p>")
        if exp.get("choices"):
            parts.append("<h3>Protocol choices</h3>")
            parts.append(_table(pd.DataFrame(exp["choices"], columns=["choice", "follows"]),
                                left=("choice", "follows")))
        for fig in figures.get(name, []):
            parts.append(_img(fig))
        parts.append("<h3>Final average accuracy (%)</h3><p class='small'>Mean ± SEM over seeds (n).</p>")
        names = labels(exp)
        order = list(names.values())
        parts.append(_table(results_table(summary, name, order), left=("method",)))
        parts.append("<details><summary>Final average accuracy of each run (%)</summary>"
                     + _table(seeds_table(runs, name, order), left=("scenario", "method")) + "</details>")
        per_task = ("<p class='small'>After the last task, mean ± SEM; in brackets: right after the task was "
                    "trained.</p>" + _table(per_task_table(summary, name, order), left=("scenario", "method")))
        parts.append(f"<h3>Accuracy on each task (%)</h3>{per_task}" if "task_bars" in exp.get("figures", [])
                     else f"<details><summary>Accuracy on each task (%)</summary>{per_task}</details>")
        parts.append("<h3>Backward/forward transfer, forgetting, accuracy right after each task "
                     "(percentage points)</h3>")
        parts.append(_table(other_metrics_table(summary, name, order), left=("scenario", "method")))
        if name in audits and len(audits[name]):
            parts.append("<h3>Audit against the published numbers</h3>")
            parts.append("<p class='small'>Two-sided Welch test of equal means from both standard errors (a "
                         "published single run without a spread: is it one more draw from our runs, t = "
                         "(published − mean) / (SD √(1 + 1/n)), n − 1 df); "
                         f"agrees: p ≥ {config['audit']['alpha']}; close: p below it but |difference| ≤ "
                         f"{config['audit']['tolerance_pp']} pp; disagrees otherwise.</p>")
            parts.append(audit_section(audits[name]))
        elif name in audits:
            parts.append("<h3>Audit against the published numbers</h3><p>None of this experiment's numbers "
                         "are in <code>config/targets.csv</code>: nothing to audit.</p>")
        grown = method_log_table(runs, name)
        if len(grown):
            parts.append("<h3>Recorded after each task</h3><p class='small'>Per method and task (Method.task_log): "
                         "e.g. CLN's hidden units per layer, output units in use, latent dimensions and the "
                         "fraction of generated samples its filter kept; A-GEM's fraction of steps projected, "
                         "the first-order rise of the memory batch's loss over the optimiser's steps (uphill) "
                         "and that loss's maximum and last value in the task. A value shared by every seed is shown "
                         "as it is; one that varies, as mean ± SEM (n).</p>")
            parts.append(_table(grown, left=("scenario", "method")))
        methods = pd.DataFrame([{"method": names[key], "library method": spec["method"],
                                 "settings": json.dumps({k: v for k, v in spec.items()
                                                         if k not in ("method", "label")})}
                                for key, spec in exp["methods"].items()])
        parts.append("<h3>Methods and hyperparameters</h3>")
        parts.append(_table(methods, left=("method", "library method", "settings")))
    for name, sim in config.get("_simulations", {}).items():
        parts.append(simulation_section(name, sim, (simulations or {}).get(name, {}), figures.get(name, [])))
    parts.append("<h2>How this was produced</h2>")
    parts.append("<p><code>snakemake --cores all" + ("" if preset == "paper" else f" --config preset={preset}")
                 + "</code>; every run's spec, seeds and provenance are in <code>runs.csv</code> and the "
                 "per-run JSON files beside this report. <code>training_code</code>: whether a run was made by "
                 "the training code of this version (<code>current</code>, or code shown bit-identical to it), by "
                 "<code>other</code> code, or <code>unknown</code> (uncommitted code); "
                 "<code>clrepro stale</code> lists them.</p>")
    parts.append(rerun_section(runs))
    parts.append(provenance_section(runs))
    parts.append("</body></html>")
    return "\n".join(parts)


def main(config: dict, preset, summary_csv, runs_csv, audit_csvs, figure_paths, out,
         simulation_records=()) -> None:
    """``simulation_records``: ``.../<simulation>/<panel>.json``; a simulation's figures are
    ``.../<simulation>/<kind>.png``."""
    audits = {Path(p).stem.removesuffix("_audit"): read_csv(p) for p in audit_csvs}
    figures: dict[str, list[Path]] = {}
    for f in map(Path, figure_paths):
        for name in config["_experiments"]:
            if f.name.startswith(name + "_"):
                figures.setdefault(name, []).append(f)
        if f.parent.name in config.get("_simulations", {}):
            figures.setdefault(f.parent.name, []).append(f)
    simulations: dict[str, dict[str, dict]] = {}
    for p in map(Path, simulation_records):
        simulations.setdefault(p.parent.name, {})[p.stem] = json.loads(p.read_text())
    page = render(config, preset, read_csv(summary_csv), read_csv(runs_csv), audits, figures, simulations)
    with atomic_path(out) as tmp:
        tmp.write_text(page)
