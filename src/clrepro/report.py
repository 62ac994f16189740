"""The HTML report: one self-contained page, rendered from the templates in ``templates/``. At
the top, the audit at a glance (how many published numbers were run, agree, are close, disagree);
then per experiment its verdict line, figures, the compact audit (methods x scenarios), the
results, the protocol and the notes (``config/notes/<experiment>.md``, every number filled in from
the tables, :mod:`clrepro.notes`); then how it was produced."""
from __future__ import annotations

import base64
import html
import json
import shlex
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from . import audit as audit_mod
from . import notes as notes_mod
from .aggregate import read_csv
from .atomic import atomic_path
from .config import ConfigError, Experiment, _load_yaml, labels, seeds_of
from .figures import SCENARIO_TITLES
from .metrics import OF_R, parse_task_metric

OTHER_METRICS = tuple(m for m in OF_R if m != "acc")
CONTINUAL_NAMES = {"min_acc": "min-ACC", "wc_acc": "WC-ACC", "wf": "WF"}   # De Lange et al. 2023
COUNT_KEYS = ("published", "run", "agree", "close", "disagree", "no_verdict", "not_run")
TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("clrepro", "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:13px;margin:1em 0;max-width:100%}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.banner{padding:.6em 1em;background:#fff3cd;border:1px solid #e0c97f;margin:1em 0}
img{max-width:100%;display:block;margin:.5em 0} code,pre{background:#f6f6f6;padding:1px 4px}
pre{white-space:pre-wrap;word-break:break-all;padding:.5em}
.small{font-size:12px;color:#555} .warn{color:#8a1c1c}
.verdict-line{font-size:16px;padding:.4em .8em;background:#f4f6fb;border-left:4px solid #4a6fa5}
table.audit td.cell{text-align:left;min-width:9em} table.audit .diff{color:#555}
.v-agrees,.c-agree{background:#d4edda} .v-close,.c-close{background:#fff3cd}
.v-disagrees,.c-disagree{background:#f8d7da} .v-not-run,.c-not_run{background:#eee}
.v-no-verdict{background:#f4f6fb}
details{margin:.4em 0} summary{cursor:pointer;font-weight:600}
details.detail summary{font-weight:400} details.detail{margin-left:1em}
.dot{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.4em;border:1px solid #999}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 1em;font-size:13px;margin:.4em 1em}
dt{color:#555} dd{margin:0;overflow-wrap:anywhere} .note{margin:.4em 1em;font-size:14px}
.notes p{max-width:60em}
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


def other_metrics_table(summary: pd.DataFrame, experiment: str, order: list[str],
                        metrics=OTHER_METRICS) -> pd.DataFrame:
    s = summary[(summary.experiment == experiment) & summary.metric.isin(metrics)]
    t = s.assign(value=s.apply(_mean_sem, axis=1)).pivot_table(
        index=["scenario", "label"], columns="metric", values="value", aggfunc="first")
    return _in_order(t.reset_index(), order).rename(columns=CONTINUAL_NAMES)


def memory_cost_table(runs: pd.DataFrame, experiment: str, order: list[str]) -> pd.DataFrame:
    """Per scenario and method: the memory held besides the network (``Method.memory``), the final
    average accuracy, the training's wall time and CPU time (where every seed's run recorded it)
    and the process's peak RAM, as means (± SEM) over seeds."""
    sub = runs[runs.experiment == experiment]
    if "memory_bytes" not in sub or sub.memory_bytes.isna().all():
        return pd.DataFrame()
    rows = []
    for (scenario, label), g in sub.groupby(["scenario", "label"], sort=False):
        held, cpu = g.memory_bytes.fillna(0), g.get("cpu_seconds")   # runs tables before it: no CPU time
        rows.append({"scenario": scenario, "label": label, "stored": _num(g.stored.fillna(0).mean(), 0),
                     "memory held (kB)": _num(held.mean() / 1000, 1),
                     "final average accuracy (%)": f"{g.acc.mean():.2f} ± {g.acc.sem():.2f}",
                     "wall time (s)": _num(g.train_seconds.mean(), 0),
                     "CPU time (s)": _num(cpu.mean() if cpu is not None and cpu.notna().all() else None, 0),
                     "peak RAM (MB)": _num(g.peak_rss_mb.mean(), 0), "seeds": len(g)})
    return _in_order(pd.DataFrame(rows), order)


def reference_runs_table(reference: pd.DataFrame | None, runs: pd.DataFrame, experiment: str,
                         names: dict[str, str]) -> pd.DataFrame:
    """The authors' released code, run here on a method of ours (``config/reference_runs.csv`` rows
    naming this experiment's scenario and method, with or without a published number): each run
    (code, commit, variant, seed, value, command) beside our runs of that method."""
    if reference is None or "method" not in reference:
        return pd.DataFrame()
    mine = reference[(reference.experiment == experiment) & reference.method.isin(list(names))]
    rows = []
    sub = runs[runs.experiment == experiment]
    for r in mine.itertuples():
        ours = sub[(sub.scenario == r.scenario) & (sub.method == r.method)].acc
        rows.append({"scenario": r.scenario, "method": names[r.method], "authors' code": audit_mod.code_version(r),
                     "seed": int(r.seed), "value": _num(r.value, 2),
                     "ours (mean ± SEM, n)": f"{ours.mean():.2f} ± {ours.sem():.2f} ({len(ours)})" if len(ours) else "",
                     "command": r.command})
    return pd.DataFrame(rows)


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
    """The runs grouped by what produced them: commit, training code, device and package versions."""
    versions = [c for c in runs.columns if c.startswith("version.")]
    packages = runs[versions].astype(str).apply(
        lambda r: ", ".join(f"{c.removeprefix('version.')} {v}" for c, v in r.items()), axis=1)
    prov = runs.assign(packages=packages, git_commit=runs.git_commit.astype(str).str[:10]).groupby(
        ["git_commit", "git_dirty", "training_code", "device", "packages"], dropna=False).agg(
        runs=("seed", "size"), train_hours=("train_seconds", lambda s: s.sum() / 3600)).reset_index()
    return _table(prov, left=("git_commit", "device", "packages"))




def verdict_kind(verdict: str) -> str:
    """The class of an audit verdict: agrees, close, disagrees, not-run or no-verdict."""
    return {"agrees": "agrees", "close": "close", "disagrees": "disagrees", "not run": "not-run"}.get(
        verdict, "no-verdict")


def audit_counts(audit: pd.DataFrame | None) -> dict[str, int]:
    """How many published numbers an audit holds, how many of them have a run of ours, and each verdict."""
    v = (audit.verdict if audit is not None else pd.Series(dtype=str)).astype(str)
    return {"published": len(v), "run": int((v != "not run").sum()), "agree": int((v == "agrees").sum()),
            "close": int((v == "close").sum()), "disagree": int((v == "disagrees").sum()),
            "no_verdict": int(v.str.startswith("no verdict").sum()), "not_run": int((v == "not run").sum())}


def headline(counts: dict[str, int], preset: str) -> str:
    """One sentence: e.g. "Of 26 published numbers, 25 were run: 22 agree, 3 are close, none disagrees; 1 not run"."""
    if not counts["published"]:
        return "No published number to audit."
    n, run = counts["published"], counts["run"]
    s = f"Of {n} published number{'s' if n != 1 else ''}, {run} {'was' if run == 1 else 'were'} run"
    if preset != "paper":
        s += f" (the {preset} preset: no verdicts)"
    elif run:
        def n(k, one, many):
            return f"{counts[k] or 'none'} {one if counts[k] in (0, 1) else many}"
        parts = [n("agree", "agrees", "agree"), n("close", "is close", "are close"),
                 n("disagree", "disagrees", "disagree")]
        if counts["no_verdict"]:
            parts.append(f"{counts['no_verdict']} without a verdict (too few runs or no spread)")
        s += ": " + ", ".join(parts)
    if counts["not_run"]:
        s += f"; {counts['not_run']} not run"
    return s + "."


def _num(v, digits=2, sign=False) -> str:
    if v is None or pd.isna(v):
        return "–"
    return f"{float(v):+.{digits}f}" if sign else f"{float(v):.{digits}f}"


def _column(r) -> str:
    title = SCENARIO_TITLES.get(r["our_scenario"], r["scenario"])
    return title if r["metric"] == "acc" else f"{title}, {r['metric'].replace('_', ' ')}"


def audit_view(audit: pd.DataFrame, order: list[str], notes: dict[str, str], csv: str, rule: str) -> dict:
    """The compact audit: one row per method, one column per scenario (and metric other than the
    final average accuracy), each cell the published value, ours and the difference, coloured by
    its verdict; the test's statistics as the cell's tooltip; a folded list of every number's
    details and note."""
    if not len(audit):
        return {"rows": [], "columns": [], "details": [], "csv": csv, "rule": rule}
    a = audit.assign(column=audit.apply(_column, axis=1))
    columns = list(dict.fromkeys(a.sort_values("our_scenario", key=lambda s: s.map(
        {k: i for i, k in enumerate(SCENARIO_TITLES)})).column))
    methods = [m for m in order if m in set(a.label)] + [m for m in dict.fromkeys(a.label) if m not in order]
    rows, details = [], []
    for m in methods:
        cells = []
        for c in columns:
            hit = a[(a.label == m) & (a.column == c)]
            if not len(hit):
                cells.append(None)
                continue
            r = hit.iloc[0]
            pub = _num(r.published) + (f" ± {_num(r.published_sem)}" if pd.notna(r.published_sem) else "")
            ours = (f"{_num(r.ours)} ± {_num(r.ours_sem)} ({int(r.n_ours)})" if pd.notna(r.ours) else "not run")
            stats = (f"{r.test}: t = {_num(r.t)}, df = {_num(r.df, 1)}, p = {_num(r.p_value, 3)}; "
                     f"published n = {int(r.n_published)}" if pd.notna(r.get("test")) and r.test else str(r.verdict))
            cells.append({"target_id": r.target_id, "kind": verdict_kind(str(r.verdict)), "published": pub,
                          "ours": ours, "verdict": r.verdict, "stats": stats, "note": r.target_id in notes,
                          "difference": "" if pd.isna(r.difference) else f"Δ {_num(r.difference, sign=True)}"})
            ref = r.get("reference_code_runs")
            fields = [("target", r.target_id), ("published", f"{pub} (n = {int(r.n_published)})"),
                      ("ours", ours), ("test", stats),
                      ("the authors' code, run here", ref if isinstance(ref, str) and ref else "–"),
                      ("source", r.source), ("provenance", r.provenance)]
            details.append({"target_id": r.target_id, "kind": verdict_kind(str(r.verdict)), "verdict": r.verdict,
                            "title": f"{m}, {c}", "fields": fields, "note": Markup(notes.get(r.target_id, ""))})
        rows.append({"method": m, "cells": cells})
    return {"rows": rows, "columns": columns, "details": details, "csv": csv, "rule": rule}


def _readable(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_readable(x)}" for k, x in v.items() if x is not None)
    if isinstance(v, list):
        return "-".join(map(str, v)) if all(isinstance(x, (int, float)) for x in v) else ", ".join(map(str, v))
    return str(v)


def _seed_count(exp: Experiment, key: str) -> int | str:
    """A method's seeds: a number, or the number in each scenario where they are given per scenario."""
    n = exp.method_seeds.get(key)
    if isinstance(n, dict):
        return ", ".join(f"{k} in {SCENARIO_TITLES.get(s, s)}" for s, k in n.items())
    return len(seeds_of(exp, key))


def seeds_held(exp: Experiment) -> int | str:
    """Seeds per method: one number, or each number with its methods, the most first."""
    by_n: dict[int | str, list[str]] = {}
    for key, label in labels(exp).items():
        by_n.setdefault(_seed_count(exp, key), []).append(label)
    if len(by_n) == 1:
        return next(iter(by_n))
    order = sorted(by_n, key=lambda n: (isinstance(n, str), -n if isinstance(n, int) else n))
    return "; ".join(f"{n} ({', '.join(by_n[n])})" for n in order)


def protocol_table(exp: dict, n_seeds: int | str) -> pd.DataFrame:
    """The experiment's protocol, one readable row per setting."""
    bench = exp["benchmark"]
    model = dict(exp["model"])
    rows = [("dataset", exp["dataset"]),
            ("benchmark", _readable(bench)),
            ("scenarios", ", ".join(SCENARIO_TITLES.get(s, s) for s in exp["scenarios"])),
            ("network", f"{model.pop('type')}: {_readable(model)}"),
            ("optimiser", _readable(exp["optimizer"])),
            ("batch size", exp["batch_size"])]
    if exp.get("iters_per_task"):
        rows.append(("iterations per task", exp["iters_per_task"]))
    if exp.get("epochs_per_task"):
        rows.append(("epochs per task", exp["epochs_per_task"]))
        if exp.get("epochs_first_task"):
            rows.append(("epochs of the first task", exp["epochs_first_task"]))
    if exp.get("train_subset"):
        rows.append(("training subset", exp["train_subset"]))
    rows.append(("seeds per method", n_seeds))
    return pd.DataFrame(rows, columns=["setting", "value"])


def _images(paths) -> list[dict]:
    return [{"alt": Path(p).stem.replace("_", " "), "data": base64.b64encode(Path(p).read_bytes()).decode()}
            for p in paths]


def _html(df: pd.DataFrame, left=()) -> Markup:
    return Markup(_table(df, left=left))


def _banners(name: str, exp: dict, chosen_by: str | None = None) -> list[str]:
    out = []
    if exp.seeds_in_file:
        n = len(seeds_of(exp))
        out.append(Markup(f"This report holds {n} of the {exp.seeds_in_file} seeds that "
                          f"<code>config/experiments/{html.escape(name)}.yaml</code> names (<code>--config "
                          f"seeds=...</code>); without that setting the DAG trains the other "
                          f"{exp.seeds_in_file - n}."))
    fewer = {m: _seed_count(exp, m) for m, n in exp.method_seeds.items()
             if m in exp["methods"] and (isinstance(n, dict) or n < len(seeds_of(exp)))}
    if fewer:
        names, n = labels(exp), len(seeds_of(exp))
        others = set(exp["methods"]) - set(exp.method_seeds)
        out.append(Markup("Fewer seeds for some methods (<code>--config seeds=...</code>): ")
                   + ", ".join(f"{names[m]} {k}" for m, k in fewer.items())
                   + (f", where the others have {n}." if others else
                      Markup(f", of the {n} that <code>config/experiments/{html.escape(name)}.yaml</code> names.")))
    if exp.left_out:
        by = (Markup(f"by the preset <code>{html.escape(chosen_by)}</code>") if chosen_by
              else Markup("by <code>--config methods=...</code>"))
        out.append(Markup(f"Left out of this report {by}: ") + ", ".join(exp.left_out)
                   + ". The audit lists their published numbers as not run.")
    return out


def preset_chose_methods(config: dict, preset: str, name: str, exp: dict) -> bool:
    """Whether the experiment's methods are those its preset chooses in the config file (the
    resolved configuration no longer says where a choice came from)."""
    try:
        own = _load_yaml(config.file)
    except (OSError, ConfigError):
        return False
    chosen = (((own.get("presets") or {}).get(preset) or {}).get("methods") or {}).get(name)
    return chosen is not None and set(chosen) == set(exp["methods"])


def checks_view(checks: pd.DataFrame) -> pd.DataFrame:
    """An experiment's qualitative checks (``stability.checks_table``) as the report shows them."""
    return pd.DataFrame({"check": checks.check, "claim": checks.claim, "method": checks.method,
                         "measured": [f"{q}: {_fmt(m)} ± {_fmt(e)} (n = {n}); runs {r}" for q, m, e, n, r in
                                      zip(checks.quantity, checks["mean"], checks["sem"], checks.n, checks.runs)],
                         "expected": checks.expected, "verdict": checks.held})


def experiment_view(name: str, exp: dict, config: dict, preset: str, summary: pd.DataFrame, runs: pd.DataFrame,
                    audit: pd.DataFrame | None, figures: list[Path], reference: pd.DataFrame | None,
                    unavailable: str | None, checks: pd.DataFrame | None = None) -> dict:
    view = {"name": name, "title": exp.get("title", name), "unavailable": unavailable,
            "ran": name in set(summary.experiment), "counts": audit_counts(audit)}
    if not view["ran"]:      # partly unavailable: its present runs are shown under the warning
        return view
    names = labels(exp)
    order = list(names.values())
    n_seeds = seeds_held(exp)
    path = notes_mod.notes_path(config.file, name)
    rendered = notes_mod.Notes("", {}, ())
    if path.exists():
        ctx = notes_mod.Context(name, exp, runs, audit, reference, n_seeds)
        rendered = notes_mod.render(path, ctx, preset)
    rule = (f"Two-sided Welch test of equal means from both standard errors (a published single run without a "
            f"spread: is it one more draw from our runs); agrees: p ≥ {config['audit']['alpha']}; close: p below "
            f"it but |difference| ≤ {config['audit']['tolerance_pp']} pp; disagrees otherwise.")
    tables = [{"title": "Final average accuracy of each run (%)", "caption": "",
               "html": _html(seeds_table(runs, name, order), left=("scenario", "method")), "open": False},
              {"title": "Accuracy on each task (%)", "open": "task_bars" in exp.get("figures", []),
               "caption": "After the last task, mean ± SEM; in brackets: right after the task was trained.",
               "html": _html(per_task_table(summary, name, order), left=("scenario", "method"))},
              {"title": "Backward/forward transfer, forgetting, accuracy right after each task (percentage points)",
               "caption": "", "open": False,
               "html": _html(other_metrics_table(summary, name, order), left=("scenario", "method"))}]
    continual = other_metrics_table(summary, name, order, tuple(CONTINUAL_NAMES))
    if len(continual):
        window = exp["continual_eval"]["window"]
        tables.insert(2, {"title": "Continual evaluation: min-ACC, WC-ACC, windowed forgetting (%)", "open": True,
                          "html": _html(continual, left=("scenario", "method")),
                          "caption": f"From the accuracy on each task seen, every {exp['continual_eval']['every']} "
                                     f"iterations (De Lange et al. 2023): min-ACC, the lowest accuracy on an earlier "
                                     f"task after it was learnt, averaged over them; WC-ACC, the last task's final "
                                     f"accuracy weighed against it; WF, the largest drop within {window} "
                                     f"evaluations, averaged over the tasks. Mean ± SEM over seeds."})
    held = memory_cost_table(runs, name, order)
    if len(held):
        tables.insert(0, {"title": "Memory held, accuracy, time and peak RAM", "open": True,
                          "html": _html(held, left=("scenario", "method")),
                          "caption": "Memory held besides the network: stored samples counted at 8 bits per "
                                     "input value (the datasets' own pixels), CRUMB's stored indices at one byte "
                                     "each and its codebook in float32. Peak RAM: the training process's "
                                     "high-water mark, the interpreter, PyTorch and the dataset included. Wall "
                                     "time: the tasks' training and evaluation, time spent paused or waiting for "
                                     "a core beside other jobs included; CPU time: the training process's own "
                                     "(– where a seed's run predates its recording). Means over seeds."})
    authors = reference_runs_table(reference, runs, name, names)
    if len(authors):
        tables.append({"title": "The authors' released code, run here", "open": False,
                       "html": _html(authors, left=("scenario", "method", "authors' code", "command")),
                       "caption": "Their code unchanged, at the commit named, on the protocol of the method of ours "
                                  "beside it (config/reference_runs.csv: the machine, date and notes of each run); "
                                  "its seeds are its own, not ours. Runs that bear on a published number are also "
                                  "in the audit."})
    grown = method_log_table(runs, name)
    if len(grown):
        tables.append({"title": "Recorded after each task", "open": False,
                       "html": _html(grown, left=("scenario", "method")),
                       "caption": "Per method and task (Method.task_log): e.g. CLN's hidden units per layer, output "
                                  "units in use, latent dimensions and the fraction of generated samples its filter "
                                  "kept; A-GEM's fraction of steps projected, the first-order rise of the memory "
                                  "batch's loss over the optimiser's steps (uphill) and that loss's maximum and last "
                                  "value in the task. A value shared by every seed is shown as it is; one that "
                                  "varies, as mean ± SEM (n)."})
    methods = pd.DataFrame([{"method": names[key], "library method": spec["method"],
                             "settings": json.dumps({k: v for k, v in spec.items() if k not in ("method", "label")})}
                            for key, spec in exp["methods"].items()])
    tables.append({"title": "Methods and hyperparameters", "caption": "", "open": False,
                   "html": _html(methods, left=("method", "library method", "settings"))})
    counts = view["counts"]
    sentence = headline(counts, preset) if counts["published"] else \
        "None of this experiment's numbers are in config/targets.csv: nothing to audit."
    if checks is not None and len(checks):
        held = int((checks.held == "held").sum())
        sentence += f" Of its {len(checks)} qualitative checks, {held} held."
    elif not counts["published"]:
        sentence += " The figures and tables are ours alone."
    view.update(
        sentence=sentence,
        checks=None if checks is None or not len(checks) else _html(checks_view(checks), left=("check", "claim")),
        banners=_banners(name, exp, preset if preset_chose_methods(config, preset, name, exp) else None),
        figures=_images(figures),
        audit=None if audit is None or not len(audit) else audit_view(audit, order, rendered.audit,
                                                                      f"audit/{name}_audit.csv", rule),
        results=_html(results_table(summary, name, order), left=("method",)),
        protocol=_html(protocol_table(exp, n_seeds), left=("setting", "value")),
        choices=_html(pd.DataFrame(exp["choices"], columns=["choice", "follows"]), left=("choice", "follows"))
        if exp.get("choices") else None,
        notes=Markup(rendered.html), left_out_notes=list(rendered.left_out), tables=tables)
    return view


def simulation_view(name: str, sim: dict, config: dict, preset: str, records: dict[str, dict],
                    figures: list[Path]) -> dict:
    from .memory.summary import numbers
    view = {"name": name, "title": sim.get("title", name), "ran": bool(records)}
    if not records:
        return view
    first = next(iter(records.values()))
    model = pd.DataFrame([(k, _readable(v)) for k, v in {**first["model"], **{
        f"retrieval {k}": v for k, v in first["retrieval"].items()}}.items()], columns=["parameter", "value"])
    path = notes_mod.notes_path(config.file, name)
    prov = pd.DataFrame([{"panel": p, "parameters": json.dumps(r["parameters"]), "seconds": _fmt(r["seconds"], 0),
                          "git_commit": r["provenance"]["git"]["commit"][:10], "device": r["provenance"]["device"]}
                         for p, r in records.items()])
    view.update(figures=_images(figures), seeds=first["seeds"], preset=first["preset"],
                numbers=_html(numbers(records), left=("panel", "quantity", "value", "qualitative check")),
                model=_html(model, left=("parameter", "value")),
                choices=_html(pd.DataFrame(sim["choices"], columns=["choice", "follows"]), left=("choice", "follows"))
                if sim.get("choices") else None,
                notes=Markup(notes_mod.render_plain(path, preset)) if path.exists() else None,
                provenance=_html(prov, left=("panel", "parameters", "git_commit", "device")))
    return view


def _flow(v) -> str:
    """A ``--config`` value as one types it: YAML flow style, ``{a: [b, c], d: 5}``."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_flow, v)) + "]"
    return str(v)


def reproduce_command(preset: str, overrides: dict | None) -> str:
    """The command that renders this report: ``snakemake --cores all`` with its ``--config``."""
    cfg = dict(overrides or {})
    if preset != "paper":
        cfg.setdefault("preset", preset)
    items = [f"{k}={_flow(v)}" for k, v in cfg.items()]
    return "snakemake --cores all" + (" --config " + " ".join(map(shlex.quote, items)) if items else "")


def not_run_here(config: dict, targets: pd.DataFrame | None, reasons: dict[str, str] | None) -> list[dict]:
    """The published numbers no experiment of this report audits, by their ``targets.csv`` key: the
    paper, the datasets, how many, and why (``config/not_run.yaml``; an experiment file that holds
    the key but is not among this report's says so)."""
    if targets is None:
        return []
    audited = {exp.get("targets", name) for name, exp in config.experiments.items()}
    files = {}
    for path in sorted(config.file.parent.glob("experiments/*.yaml")):
        key = (_load_yaml(path) or {}).get("targets", path.stem)
        files.setdefault(key, path.stem)
    out = []
    for key, rows in targets[~targets.experiment.isin(audited)].groupby("experiment", sort=False):
        if key in files:
            why = f"its experiment ({files[key]}) is not among this report's (--config experiments=...)"
        else:
            why = (reasons or {}).get(key, "no experiment here runs it")
        out.append({"key": key, "paper": "; ".join(rows.paper.unique()), "n": len(rows),
                    "datasets": ", ".join(map(str, rows.dataset.unique())), "why": why})
    return out


def render(config: dict, preset: str, summary: pd.DataFrame, runs: pd.DataFrame,
           audits: dict[str, pd.DataFrame], figures: dict[str, list[Path]],
           simulations: dict[str, dict[str, dict]] | None = None, reference: pd.DataFrame | None = None,
           unavailable: dict[str, str] | None = None, command_config: dict | None = None,
           checks: dict[str, pd.DataFrame] | None = None, targets: pd.DataFrame | None = None,
           not_run: dict[str, str] | None = None) -> str:
    """The page. ``unavailable``: {experiment: why it could not run}; ``command_config``: the
    ``--config`` overrides of the command that made it; ``checks``: {experiment: its qualitative
    checks}; ``targets`` and ``not_run`` (config/not_run.yaml): the published numbers that no
    experiment of this report audits, and why."""
    unavailable = unavailable or {}
    audits = dict(audits)
    for name in unavailable:   # nothing of ours: its published numbers are all "not run"
        exp = config.experiments[name]
        if name not in audits and targets is not None:
            audits[name] = audit_mod.audit(summary.iloc[0:0], targets, exp.get("targets", name), name, preset,
                                           mapping=exp.get("audit_map"), reference=reference)
    experiments = [experiment_view(name, exp, config, preset, summary, runs, audits.get(name), figures.get(name, []),
                                   reference, unavailable.get(name), (checks or {}).get(name))
                   for name, exp in config.experiments.items()]
    total = {k: sum(e["counts"][k] for e in experiments) for k in COUNT_KEYS}
    disagreements = [{"target_id": d["target_id"], "title": f"{e['title']}: {d['title']}"}
                     for e in experiments if e.get("audit") for d in e["audit"]["details"] if d["kind"] == "disagrees"]
    sentence = headline(total, preset)
    missing = [e["title"] for e in experiments if e["unavailable"]]
    if missing:
        sentence += f" Could not run: {', '.join(missing)} (see below)."
    sims = [simulation_view(name, sim, config, preset, (simulations or {}).get(name, {}), figures.get(name, []))
            for name, sim in config.simulations.items()]
    return TEMPLATES.get_template("report.html.j2").render(
        css=Markup(CSS), preset=preset, now=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        n_runs=len(runs), experiments=experiments, simulations=sims, count_keys=COUNT_KEYS,
        not_run_here=not_run_here(config, targets, not_run),
        overall={"counts": total, "sentence": sentence, "disagreements": disagreements},
        command=reproduce_command(preset, command_config), reruns=Markup(rerun_section(runs)),
        provenance=Markup(provenance_section(runs)))


def main(config: dict, preset, summary_csv, runs_csv, audit_csvs, figure_paths, out,
         simulation_records=(), reference_csv=None, unavailable: dict[str, str] | None = None,
         command_config: dict | None = None, check_csvs=(), targets_csv=None, not_run_yaml=None) -> None:
    """``simulation_records``: ``.../<simulation>/<panel>.json``; a simulation's figures are
    ``.../<simulation>/<kind>.png``; ``check_csvs``: ``.../<experiment>_checks.csv``."""
    audits = {Path(p).stem.removesuffix("_audit"): read_csv(p) for p in audit_csvs}
    checks = {Path(p).stem.removesuffix("_checks"): read_csv(p) for p in check_csvs}
    figures: dict[str, list[Path]] = {}
    for f in map(Path, figure_paths):
        for name in config.experiments:
            if f.name.startswith(name + "_"):
                figures.setdefault(name, []).append(f)
        if f.parent.name in config.simulations:
            figures.setdefault(f.parent.name, []).append(f)
    simulations: dict[str, dict[str, dict]] = {}
    for p in map(Path, simulation_records):
        simulations.setdefault(p.parent.name, {})[p.stem] = json.loads(p.read_text())
    reference = read_csv(reference_csv) if reference_csv else None
    page = render(config, preset, read_csv(summary_csv), read_csv(runs_csv), audits, figures, simulations,
                  reference, unavailable, command_config, checks, read_csv(targets_csv) if targets_csv else None,
                  _load_yaml(Path(not_run_yaml)) if not_run_yaml else None)
    with atomic_path(out) as tmp:
        tmp.write_text(page)
