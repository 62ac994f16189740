"""Command line: ``clrepro <command>``; the Snakemake rules call these."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _download(a):
    from . import data
    for path in data.fetch(a.dataset, a.root, a.mirror, json.loads(a.checksums) if a.checksums else None):
        print(path)


def _train(a):
    from . import config, train
    if a.spec:
        spec = json.loads(a.spec)
        if a.data_root:   # where the data live is not part of the spec (the workflow passes it apart)
            spec["data"] = dict(spec["data"], root=a.data_root)
    else:
        cfg = config.load(a.config, {"preset": a.preset} if a.preset else None)
        spec = config.resolve(cfg, config.Run(a.experiment, a.scenario, a.method, a.seed))
    try:
        train.run(spec, a.out, a.checkpoints, a.device, a.threads, a.stop_after_task,
                  a.checkpoint_every, a.stop_after_step, a.precision)
    except train.Preempted as stop:
        print(f"clrepro train: {stop}", file=sys.stderr)
        sys.exit(train.Preempted.exit_code)


def _experiments(a) -> dict:
    from . import config
    subset = {k: json.loads(v) for k in ("methods", "seeds") if (v := getattr(a, k, None))}
    return config.load(a.config, ({"preset": a.preset} if a.preset else {}) | subset)


def _labels(cfg) -> dict:
    """{(experiment, method key): label}."""
    from .config import labels
    return {(name, key): label for name, exp in cfg["_experiments"].items() for key, label in labels(exp).items()}


def _aggregate(a):
    from . import aggregate
    aggregate.main(a.results, a.runs_csv, a.accuracy_csv, a.summary_csv, _labels(_experiments(a)))


def _figure(a):
    from . import figures
    from .config import labels
    from .methods import REGISTRY
    exp = _experiments(a)["_experiments"][a.experiment]
    names = labels(exp)
    learned = [names[k] for k, spec in exp["methods"].items() if REGISTRY[spec["method"]].scored_when_learned]
    figures.main(a.kind, a.accuracy_csv, a.summary_csv, a.audit, a.experiment, exp.get("title", a.experiment),
                 list(names.values()), a.out, learned)


def _audit(a):
    from . import audit
    cfg = _experiments(a)
    exp = cfg["_experiments"][a.experiment]
    audit.main(a.summary_csv, a.targets, a.experiment, cfg["preset"], a.out, cfg["audit"]["alpha"],
               cfg["audit"]["tolerance_pp"], exp.get("targets", a.experiment), exp.get("audit_notes"),
               exp.get("audit_map"), a.reference_runs)


def _simulate(a):
    from .memory import panels
    sims = _experiments(a)["_simulations"]
    if a.simulation not in sims:
        raise ValueError(f"simulations: {a.simulation!r} is not configured (configured: {list(sims)})")
    panels.main(sims[a.simulation], a.simulation, a.panel, a.csv, a.json, a.device, a.threads)


def _simulation_figure(a):
    from .memory import plots
    plots.main(a.kind, a.csv, a.json, a.out)


def _report(a):
    from . import report
    cfg = _experiments(a)
    report.main(cfg, cfg["preset"], a.summary_csv, a.runs_csv, a.audit, a.figures, a.out, a.simulations)


def _share(a):
    from . import store
    for path in store.share(_experiments(a), push=not a.no_push, remote=a.remote):
        print(path)
    print("now commit them: git commit -m 'Record data and checkpoints' -- '*.dvc' '.gitignore'",
          file=sys.stderr)


def _stale(a):
    from . import stale
    table = stale.table(a.results)
    print(table.to_string(index=False) if len(table) else "no results")
    other = int((table.training_code != "current").sum()) if len(table) else 0
    print(f"{other} of {len(table)} results were not made by the current training code", file=sys.stderr)
    if a.strict and other:
        sys.exit(1)


def _bit_identity(a):
    from . import equivalence
    found = equivalence.compare(a.against, a.config, {"root": str(Path(a.data_root).resolve())})
    print(json.dumps(found, indent=1))
    if found["differ"]:
        sys.exit(1)


def _verify(a):
    from . import store
    table = store.verify_checkpoints(_experiments(a), a.results, a.out, a.device)
    print(f"{len(table)} checkpoints reproduce their recorded accuracies", file=sys.stderr)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="clrepro", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="fetch and verify a dataset into the data root")
    d.add_argument("dataset")
    d.add_argument("--root", default="data")
    d.add_argument("--mirror", help="local folder with the official files (default: $CLREPRO_DATA_MIRROR)")
    d.add_argument("--checksums", help="JSON {file: md5} replacing the official checksums")
    d.set_defaults(fn=_download)

    t = sub.add_parser("train", help="train one run and write its result JSON")
    t.add_argument("--spec", help="resolved run spec as JSON (as the workflow passes it)")
    t.add_argument("--config", default="config/config.yaml")
    t.add_argument("--preset")
    t.add_argument("--experiment")
    t.add_argument("--scenario", choices=["task", "domain", "class"])
    t.add_argument("--method")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-root", help="the data folder, replacing the spec's")
    t.add_argument("--out", required=True)
    t.add_argument("--checkpoints", help="checkpoint folder (resume from it if present)")
    t.add_argument("--device", default="auto")
    t.add_argument("--threads", type=int)
    t.add_argument("--checkpoint-every", type=float, default=600.0, metavar="SECONDS",
                   help="also checkpoint inside a task this often (0: only after each task and on "
                        "SIGTERM/SIGINT); default 600")
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="bf16 autocasts the forward pass; auto: bf16 for CNNs on a GPU, else fp32")
    t.add_argument("--stop-after-task", type=int, help=argparse.SUPPRESS)
    t.add_argument("--stop-after-step", type=int, help=argparse.SUPPRESS)
    t.set_defaults(fn=_train)

    def analysis(name, help):
        q = sub.add_parser(name, help=help)
        q.add_argument("--config", default="config/config.yaml")
        q.add_argument("--preset", help="replaces the configuration's preset")
        return q

    g = analysis("aggregate", "collect run results into tidy CSVs")
    g.add_argument("results", nargs="+")
    g.add_argument("--runs-csv", required=True)
    g.add_argument("--accuracy-csv", required=True)
    g.add_argument("--summary-csv", required=True)
    g.set_defaults(fn=_aggregate)

    f = analysis("figure", "draw one of an experiment's figures")
    f.add_argument("kind", help="accuracy_per_task, final_accuracy, average_accuracy or task_bars")
    f.add_argument("--experiment", required=True)
    f.add_argument("--accuracy-csv", required=True)
    f.add_argument("--summary-csv", required=True)
    f.add_argument("--audit", required=True, help="the experiment's audit table (published values)")
    f.add_argument("--out", required=True)
    f.set_defaults(fn=_figure)

    u = analysis("audit", "compare an experiment's results with the published numbers")
    u.add_argument("--experiment", required=True)
    u.add_argument("--summary-csv", required=True)
    u.add_argument("--targets", default="config/targets.csv")
    u.add_argument("--reference-runs", help="runs of the authors' code made here (config/reference_runs.csv)")
    u.add_argument("--out", required=True)
    u.set_defaults(fn=_audit)

    m = analysis("simulate", "simulate one panel of a memory-model simulation (no training)")
    m.add_argument("--simulation", required=True)
    m.add_argument("--panel", required=True, help="forgetting, rehearsal, scaling or lesion")
    m.add_argument("--csv", required=True, help="the panel's table")
    m.add_argument("--json", required=True, help="its parameters, summary and provenance")
    m.add_argument("--device", default="auto")
    m.add_argument("--threads", type=int)
    m.set_defaults(fn=_simulate)

    mf = sub.add_parser("simulation-figure", help="draw a figure of a simulation from its panel's table")
    mf.add_argument("kind", help="forgetting, rehearsal, efficacy, scaling or lesion")
    mf.add_argument("--csv", required=True)
    mf.add_argument("--json", required=True)
    mf.add_argument("--out", required=True)
    mf.set_defaults(fn=_simulation_figure)

    r = analysis("report", "render the HTML report")
    r.add_argument("--summary-csv", required=True)
    r.add_argument("--runs-csv", required=True)
    r.add_argument("--audit", nargs="*", default=[])
    r.add_argument("--figures", nargs="*", default=[])
    r.add_argument("--simulations", nargs="*", default=[], help="simulation panels' JSON records")
    r.add_argument("--out", required=True)
    r.add_argument("--methods", help="JSON {experiment: [method keys]}: the subset the workflow ran (config methods)")
    r.add_argument("--seeds", help="JSON count or {experiment: count}: the seeds the workflow ran (config seeds)")
    r.set_defaults(fn=_report)

    s = analysis("share", "record the datasets and checkpoints in DVC and push them")
    s.add_argument("--no-push", action="store_true", help="only `dvc add`")
    s.add_argument("--remote", help="DVC remote (default: the repository's default remote)")
    s.set_defaults(fn=_share)

    v = analysis("verify", "re-evaluate final checkpoints against the recorded results")
    v.add_argument("results", nargs="+")
    v.add_argument("--out", required=True)
    v.add_argument("--device", default="cpu")
    v.set_defaults(fn=_verify)

    st = sub.add_parser("stale", help="list the results made by training code other than the current")
    st.add_argument("results", nargs="+")
    st.add_argument("--strict", action="store_true", help="exit with status 1 if any is not current")
    st.set_defaults(fn=_stale)

    b = sub.add_parser("bit-identity", help="compare tiny runs of every method with an earlier commit's training code")
    b.add_argument("--against", required=True, help="the earlier git commit")
    b.add_argument("--config", default="config/config.yaml")
    b.add_argument("--data-root", default="data", help="a folder holding MNIST (clrepro download mnist)")
    b.set_defaults(fn=_bit_identity)

    a = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        a.fn(a)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"clrepro {a.command}: error: {msg}", file=sys.stderr)
        sys.exit(2)
