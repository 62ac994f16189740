"""Command line: ``clrepro <command>``; the Snakemake rules call these."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


DEFAULT_CONFIG = "config/config.yaml"
#: the configuration file every command's --config defaults to when set (a workflow's jobs: the
#: workflow's configuration with its --config overrides, written once by the DAG)
CONFIG_ENV = "CLREPRO_CONFIG"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
log = logging.getLogger("clrepro.cli")
TRAIN_LOG = "train.log"   # in a checkpoint folder: every attempt's log (``clrepro train --checkpoints``)
ATTEMPT = "clrepro train --out"   # an attempt's first record in TRAIN_LOG; its last begins with one of:
CLOSINGS = ("finished: ", "interrupted ", "failed: ")
attempts = logging.getLogger("clrepro.attempt")   # records for TRAIN_LOG alone (main() prints errors)
attempts.propagate = False
attempts.addHandler(logging.NullHandler())   # without --checkpoints: nowhere (not logging's last resort)
OFFLINE_HINT = ("to work offline, set CLREPRO_DATA_MIRROR=<a folder with the official files> "
                "(see the README, \"Offline mirror\")")


def _why_not(err: Exception) -> str:
    """Why a dataset could not be had, in one line: no data (not in the mirror), files that are not
    the official ones (a wrong checksum), or a failed download (no network, a server's error)."""
    from .data import ChecksumError
    text = " ".join(str(err.args[0] if isinstance(err, KeyError) and err.args else err).split())
    if isinstance(err, FileNotFoundError):
        return f"no data: {text}"
    if isinstance(err, ChecksumError):
        return f"not the official files: {text}"
    return f"download failed: {text}"


def _download(a):
    """Without ``--status`` a failure is an error. With it the command always succeeds: it writes
    ``{"ok": ..., "reason": ...}`` there (what the workflow reads to leave out the experiments that
    need a dataset it could not get) and says on stderr why it failed; ``--log`` then takes
    everything else it prints."""
    import os
    from . import data
    from .atomic import atomic_path
    term = sys.stderr
    if a.log:   # this process's output, torchvision's included, goes to the log; stderr stays for the message
        Path(a.log).parent.mkdir(parents=True, exist_ok=True)
        logfile = open(a.log, "w")
        term = os.fdopen(os.dup(2), "w")
        for fd in (1, 2):
            os.dup2(logfile.fileno(), fd)
    mirror = os.environ.get(data.MIRROR_ENV) or a.mirror or None
    source = f"the data mirror {mirror}" if mirror else "the official mirrors"
    status = {"dataset": a.dataset, "root": a.root, "source": source}
    try:
        paths = data.fetch(a.dataset, a.root, a.mirror, json.loads(a.checksums) if a.checksums else None)
    except Exception as err:   # no network, a server's error, not in the mirror, a wrong file
        if not a.status:
            if isinstance(err, data.ChecksumError):
                raise
            raise RuntimeError(f"could not get {a.dataset} from {source}: {err}; {OFFLINE_HINT}") from err
        status.update(ok=False, reason=_why_not(err))
        message = (f"clrepro download {a.dataset}: could not get {a.dataset} from {source}: "
                   f"{status['reason']}. The experiments that need it are left out of this run, and the report "
                   f"names them. T{OFFLINE_HINT[1:]}, and run again.")
        print(message, file=sys.stderr, flush=True)
        if term is not sys.stderr:
            print(message, file=term, flush=True)
    else:
        for path in paths:
            print(path)
        status.update(ok=True, reason=None)
    if a.status:
        with atomic_path(a.status) as tmp:
            tmp.write_text(json.dumps(status, indent=1) + "\n")


def _train(a):
    # SIGINT (Ctrl-C reaches every process of the terminal's foreground group, so each training
    # job of a local `snakemake` gets it) and SIGTERM (Slurm, `kill`) make train.run checkpoint at
    # the end of the step and raise Preempted. A signal before the training loop (while loading),
    # or a second one, raises KeyboardInterrupt instead: no checkpoint was written then, and the
    # message says so (SIGTERM too, which would otherwise end the process without a word).
    import signal

    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if a.checkpoints:   # without a checkpoint folder SIGTERM keeps its default: nothing to save or say
        signal.signal(signal.SIGTERM, interrupted)
    try:
        _train_run(a)
    except KeyboardInterrupt as stop:
        latest = (f"it resumes from the latest checkpoint in {a.checkpoints}, if there is one"
                  if a.checkpoints else "it starts again (no checkpoint folder)")
        log.warning("interrupted before a checkpoint could be written; rerun the same command: %s", latest)
        sys.exit(143 if stop.args == ("SIGTERM",) else 130)


def _train_run(a):
    from . import config, train
    if a.spec:
        spec = json.loads(a.spec)
    else:
        cfg = config.load(a.config, {"preset": a.preset} if a.preset else None)
        spec = config.resolve(cfg, config.Run(a.experiment, a.scenario, a.method, a.seed))
    if a.data_root:   # where the data live is not part of the spec (the workflow passes it apart)
        spec["data"] = dict(spec["data"], root=a.data_root)
    if a.checkpoints:
        _log_attempts(Path(a.checkpoints), a.out)
    try:
        train.run(spec, a.out, a.checkpoints, a.device, a.threads, a.stop_after_task,
                  a.checkpoint_every, a.stop_after_step, a.precision, a.adam, a.denormals)
    except train.Preempted as stop:
        when = str(stop).split("; checkpoint in")[0]
        log.warning("interrupted (%s): checkpointed in %s; rerun the same command to resume", when, a.checkpoints)
        sys.exit(train.Preempted.exit_code)
    except Exception as err:   # main() says it on stderr; train.log keeps it for the attempts after
        attempts.error("failed: %s: %s", type(err).__name__, err)
        raise
    log.info("finished: %s", a.out)


def _log_attempts(folder: Path, out: str) -> None:
    """Append this attempt's log to ``<checkpoints>/train.log`` too: a workflow job's log holds its
    last attempt only (Snakemake empties it before each), the checkpoint folder keeps them all,
    from the first to the one that finished, the interrupted and failed ones included. An attempt
    ends with a closing record (``CLOSINGS``); one killed outright cannot write it, so the next
    attempt says so, with the killed one's last record."""
    folder.mkdir(parents=True, exist_ok=True)
    unclosed = _unclosed_attempt(folder / TRAIN_LOG)
    handler = logging.FileHandler(folder / TRAIN_LOG, mode="a")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    attempts.addHandler(handler)
    log.info("%s %s (pid %d on %s)", ATTEMPT, out, os.getpid(), os.uname().nodename)
    if unclosed:
        log.warning("the previous attempt, begun %s, left no closing record: it was killed outright (SIGKILL, "
                    "out of memory, or its machine stopped); its last record: %s", *unclosed)


def _unclosed_attempt(logfile: Path) -> tuple[str, str] | None:
    """When the latest attempt in ``logfile`` has no closing record: when it began and its last line."""
    try:
        lines = logfile.read_text().splitlines()
    except FileNotFoundError:
        return None
    begun = [i for i, line in enumerate(lines) if f" {log.name} INFO {ATTEMPT} " in line]
    if not begun:
        return None
    attempt = [line.split(" ", 4) for line in lines[begun[-1]:]]
    if any(len(f) == 5 and f[2] in (log.name, attempts.name) and f[4].startswith(CLOSINGS) for f in attempt):
        return None
    return " ".join(attempt[0][:2]), lines[-1]


def _experiments(a) -> dict:
    from . import config
    subset = {k: json.loads(v) for k in ("methods", "seeds") if (v := getattr(a, k, None))}
    return config.load(a.config, ({"preset": a.preset} if a.preset else {}) | subset)


def _labels(cfg) -> dict:
    """{(experiment, method key): label}."""
    from .config import labels
    return {(name, key): label for name, exp in cfg.experiments.items() for key, label in labels(exp).items()}


def _aggregate(a):
    from . import aggregate
    aggregate.main(a.results, a.runs_csv, a.accuracy_csv, a.summary_csv, _labels(_experiments(a)))


def _figure(a):
    from . import figures
    from .config import labels, method_model, method_scenarios, seeds_of
    from .methods import REGISTRY
    exp = _experiments(a).experiments[a.experiment]
    names = labels(exp)
    learned = [names[k] for k, spec in exp["methods"].items() if REGISTRY[spec["method"]].scored_when_learned]
    families = {names[k]: figures.method_family(spec["method"], method_model(exp, k).get("type"))
                for k, spec in exp["methods"].items()}
    defined = {names[k]: method_scenarios(exp, k) for k in exp["methods"]}
    selected = {names[k]: [sc for sc in method_scenarios(exp, k) if seeds_of(exp, k, sc)] for k in exp["methods"]}
    figures.main(a.kind, a.accuracy_csv, a.summary_csv, a.audit, a.experiment, exp.get("title", a.experiment),
                 list(names.values()), a.out, learned, families, a.results, defined, selected)


def _checks(a):
    from . import stability
    exp = _experiments(a).experiments[a.experiment]
    stability.main(a.results, exp.get("checks", []), a.out)


def _audit(a):
    from . import audit
    cfg = _experiments(a)
    exp = cfg.experiments[a.experiment]
    audit.main(a.summary_csv, a.targets, a.experiment, cfg["preset"], a.out, cfg["audit"]["alpha"],
               cfg["audit"]["tolerance_pp"], exp.get("targets", a.experiment), exp.get("audit_map"),
               a.reference_runs)


def _simulate(a):
    from .memory import panels
    sims = _experiments(a).simulations
    if a.simulation not in sims:
        raise ValueError(f"simulations: {a.simulation!r} is not configured (configured: {list(sims)})")
    panels.main(sims[a.simulation], a.simulation, a.panel, a.csv, a.json, a.device, a.threads)


def _simulation_figure(a):
    from .memory import plots
    plots.main(a.kind, a.csv, a.json, a.out)


def _report(a):
    from . import report
    cfg = _experiments(a)
    report.main(cfg, cfg["preset"], a.summary_csv, a.runs_csv, a.audit, a.figures, a.out, a.simulations,
                a.reference_runs, command_config=json.loads(a.command_config) if a.command_config else None,
                unavailable=json.loads(a.unavailable) if a.unavailable else None, check_csvs=a.checks,
                targets_csv=a.targets, not_run_yaml=a.not_run)


def _cost(a):
    from . import cost
    print(cost.summary(_experiments(a)))


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


def _worker(a):
    from . import worker
    worker.serve(a.socket, a.parent)


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per step of the workflow, each calling its ``_<name>``."""
    p = argparse.ArgumentParser(prog="clrepro", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="fetch and verify a dataset or pretrained weights into the data root")
    d.add_argument("dataset")
    d.add_argument("--root", default="data")
    d.add_argument("--mirror", help="local folder with the official files (default: $CLREPRO_DATA_MIRROR)")
    d.add_argument("--checksums", help="JSON {file: md5 or sha256:<prefix>} replacing the official checksums")
    d.add_argument("--status", help="write {ok, reason} here and succeed even when the data cannot be had "
                                    "(the workflow's download checkpoint)")
    d.add_argument("--log", help="write what the command prints here; only a failure's message goes to stderr")
    d.set_defaults(fn=_download)

    t = sub.add_parser("train", help="train one run and write its result JSON")
    t.add_argument("--spec", help="resolved run spec as JSON (as the workflow passes it)")
    t.add_argument("--config", default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
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
    t.add_argument("--adam", default="foreach", choices=["foreach", "fused"],
                   help="Adam's update: foreach (bit-identical to PyTorch's per-parameter loop; what made the "
                        "committed results) or fused (faster on the CPU, not bit-identical)")
    t.add_argument("--denormals", default="auto", choices=["auto", "keep", "flush"],
                   help="flush denormal numbers to zero on the CPU (much faster on Intel CPUs) or keep them; "
                        "auto: flush on the CPU, or what the checkpoint resumed was trained with")
    t.add_argument("--stop-after-task", type=int, help=argparse.SUPPRESS)
    t.add_argument("--stop-after-step", type=int, help=argparse.SUPPRESS)
    t.set_defaults(fn=_train)

    def analysis(name, help):
        q = sub.add_parser(name, help=help)
        q.add_argument("--config", default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
        q.add_argument("--preset", help="replaces the configuration's preset")
        return q

    g = analysis("aggregate", "collect run results into tidy CSVs")
    g.add_argument("results", nargs="+")
    g.add_argument("--runs-csv", required=True)
    g.add_argument("--accuracy-csv", required=True)
    g.add_argument("--summary-csv", required=True)
    g.set_defaults(fn=_aggregate)

    f = analysis("figure", "draw one of an experiment's figures")
    f.add_argument("kind", help="accuracy_per_task, final_accuracy, average_accuracy, task_bars, stability_gap "
                                "or memory")
    f.add_argument("--experiment", required=True)
    f.add_argument("--accuracy-csv", required=True)
    f.add_argument("--summary-csv", required=True)
    f.add_argument("--audit", required=True, help="the experiment's audit table (published values)")
    f.add_argument("--results", nargs="*", default=[], help="the experiment's run results (stability_gap: "
                                                             "their continual-evaluation curves)")
    f.add_argument("--out", required=True)
    f.set_defaults(fn=_figure)

    k = analysis("checks", "measure an experiment's qualitative checks of the stability gap on its runs' curves")
    k.add_argument("results", nargs="*")
    k.add_argument("--experiment", required=True)
    k.add_argument("--out", required=True)
    k.set_defaults(fn=_checks)

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
    r.add_argument("--checks", nargs="*", default=[], help="the experiments' qualitative checks (clrepro checks)")
    r.add_argument("--figures", nargs="*", default=[])
    r.add_argument("--simulations", nargs="*", default=[], help="simulation panels' JSON records")
    r.add_argument("--out", required=True)
    r.add_argument("--methods", help="JSON {experiment: [method keys]}: the subset the workflow ran (config methods)")
    r.add_argument("--seeds", help="JSON count or {experiment: count}: the seeds the workflow ran (config seeds)")
    r.add_argument("--reference-runs", help="config/reference_runs.csv: the authors' code, run here (for the notes)")
    r.add_argument("--targets", help="config/targets.csv: its numbers that no experiment here audits are listed")
    r.add_argument("--not-run", help="config/not_run.yaml: why those numbers are not run")
    r.add_argument("--command-config", help="JSON: the --config overrides of the workflow's command (shown)")
    r.add_argument("--unavailable", help="JSON {experiment: reason}: the experiments (or runs) that could not "
                                         "run, e.g. for want of their data")
    r.set_defaults(fn=_report)

    c = analysis("cost", "each experiment's runs and the CPU- or GPU-hours they take (from the committed runs' times)")
    c.set_defaults(fn=_cost)

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
    b.add_argument("--config", default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
    b.add_argument("--data-root", default="data", help="a folder holding MNIST (clrepro download mnist)")
    b.set_defaults(fn=_bit_identity)

    w = sub.add_parser("worker", help="serve training jobs from one warm process ($CLREPRO_WORKER; the "
                                      "workflow starts one for a local DAG)")
    w.add_argument("--socket", required=True, help="the Unix socket to listen on")
    w.add_argument("--parent", type=int, help="end when this process (the DAG) is gone")
    w.set_defaults(fn=_worker)
    return p


def main(argv=None) -> None:
    """Run a command; a user's error (bad input, missing data) is one line naming the problem, a
    bug keeps its traceback (so does every error with ``-v``)."""
    from . import worker
    argv = sys.argv[1:] if argv is None else list(argv)
    if worker.command_of(argv) in worker.COMMANDS:   # with $CLREPRO_WORKER set, a warm worker runs it
        code = worker.delegate(argv)
        if code is not None:
            sys.exit(code)
    a = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        a.fn(a)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        # the errors the library raises for bad input, with a sentence naming the problem; a bare
        # lookup that failed (KeyError('x')) is a bug and keeps its traceback, as does -v
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        if a.verbose or (isinstance(err, KeyError) and " " not in str(msg)):
            raise
        print(f"clrepro {a.command}: error: {msg} (-v shows the traceback)", file=sys.stderr)
        sys.exit(2)
