import functools
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from clrepro import config as clconfig
from clrepro import data as cldata
from clrepro import notes as clnotes
from clrepro import provenance as clprovenance
from clrepro.cli import CONFIG_ENV
from clrepro.memory.panels import FIGURES as SIMULATION_FIGURES, RUNNERS

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "../schemas/config.schema.yaml")
# A preset may choose what runs (presets.<name>.experiments, simulations, methods): applied here,
# where the keys given with --config are known (they win), so the resolved configuration holds it.
config.update(clconfig.apply_preset_choices(config, explicit=set(workflow.config_settings.config)))

# Experiments with the preset applied, validated (schema, methods x scenarios, hyperparameters)
# before any job runs; `--config seeds=N` sets every experiment's number of seeds.
CONFIGFILE = workflow.configfiles[0] if workflow.configfiles else "config/config.yaml"
CFG = clconfig.load(CONFIGFILE, overrides=config)
# The configuration with every --config override applied, as one file that every job reads: named in
# the jobs' environment (CLREPRO_CONFIG, the default of every `clrepro --config`), not a param: its
# name changes with every --config, and that must not rerun a job (a run's spec is its param). A
# cluster job parses this file again and names the same file.
RESOLVED = str(clconfig.write_resolved(config, CONFIGFILE, ".snakemake/clrepro"))
os.environ[CONFIG_ENV] = RESOLVED
# The environment of every rule's commands with --software-deployment-method conda (otherwise
# they run where snakemake runs).
CONDA_ENV = "../envs/clrepro.yaml"

PRESET = config["preset"]
OUT = f"{config['outdir']}/{PRESET}"
CKPT = str(clconfig.checkpoint_dir(CFG))
DATA = config["data"]["root"]
RUNS = clconfig.runs(CFG)
EXPERIMENTS = list(CFG.experiments)
RUNS_OF = {name: [run for run in RUNS if run.experiment == name] for name in EXPERIMENTS}
REPORT = f"{OUT}/report.html"
# A param of the analysis rules: a change of the package reruns them, and no training.
ANALYSIS_CODE = clprovenance.package_code()


wildcard_constraints:
    experiment="[A-Za-z0-9_]+",
    scenario="task|domain|class",
    method="[a-z0-9_]+",
    seed=r"\d+",
    dataset="[a-z0-9]+",
    kind="|".join(clconfig.FIGURE_KINDS),


def experiment_config(experiment):
    """The experiment's file, and the one it extends: an input of the analysis rules, so that
    editing labels, targets or notes re-renders what shows them."""
    path = clconfig.experiment_path(CONFIGFILE, experiment)
    return [str(p) for p in (path, clconfig.extended_path(path)) if p is not None]


def notes_file(name):
    """The experiment's or simulation's notes (config/notes/<name>.md): an input of the report."""
    return str(clnotes.notes_path(CONFIGFILE, name))


def raw_files(dataset):
    """The verified files of a dataset that `clrepro download` leaves (downloads, unpacked copies)."""
    return [str(p) for p in cldata.outputs(DATA, dataset, config["data"].get("checksums"))]


def experiment_files(experiment):
    """The raw files of every dataset an experiment reads, and of the pretrained weights it starts from."""
    return [f for d in clconfig.downloads(CFG.experiments[experiment]) for f in raw_files(d)]


def status_file(dataset):
    """Where the dataset's download checkpoint records whether it could be had: {"ok", "reason"}."""
    return f"{DATA}/download-status/{dataset}.json"


def data_source(dataset):
    """Where `clrepro download` takes a dataset from, and which of its files that mirror holds: a
    param of the download, so that pointing CLREPRO_DATA_MIRROR (or data.mirror) at the files, or
    the files arriving in the mirror, tries a failed download again (and retrains nothing)."""
    mirror = os.environ.get(cldata.MIRROR_ENV) or config["data"]["mirror"]
    if not mirror:
        return "the official mirrors"
    sub = cldata.DOWNLOADS[dataset][1]
    held = [f for f, _ in cldata.resources(dataset, config["data"].get("checksums"))
            if (Path(mirror) / f).is_file() or (Path(mirror) / sub / f).is_file()]
    return json.dumps({"mirror": str(Path(mirror).resolve()), "holds": held})


def recorded_status(dataset):
    """The dataset's status file as it is (None when absent or unreadable)."""
    try:
        return json.loads(Path(status_file(dataset)).read_text())
    except (OSError, ValueError):
        return None


def dataset_status(dataset):
    """What the dataset's download checkpoint recorded. Until it has run this raises Snakemake's
    IncompleteCheckpointException: the job asking waits for the download and is then looked at again."""
    getattr(checkpoints, f"download_{dataset}").get()
    return recorded_status(dataset)


def drop_stale_statuses():
    """A status that disagrees with the files (recorded as there but gone since, or as missing but
    put in place since) is dropped, so that the download checkpoint runs again."""
    for dataset in clconfig.all_datasets(CFG):
        recorded = recorded_status(dataset)
        if recorded is not None and recorded.get("ok") != all(Path(f).exists() for f in raw_files(dataset)):
            Path(status_file(dataset)).unlink(missing_ok=True)


if getattr(workflow, "is_main_process", True):
    drop_stale_statuses()


def result_file(run):
    return f"{OUT}/runs/{run.path}.json"


def is_present(run):
    """Whether a run's result is present and of this spec (e.g. committed): it needs no data."""
    try:
        return json.loads(Path(result_file(run)).read_text())["spec_hash"] == clconfig.resolve(CFG, run)["spec_hash"]
    except (OSError, ValueError, KeyError):
        return False


present = functools.cache(is_present)   # as the DAG starts: a run this call trains was not present


def unavailable(experiment, status=dataset_status):
    """Why an experiment's runs that are not present cannot run (a dataset could not be had), or
    None. An experiment whose runs are all present asks for no data."""
    runs = RUNS_OF[experiment]
    missing = [run for run in runs if not present(run)]
    if not missing:
        return None
    bad = {}
    for dataset in clconfig.downloads(CFG.experiments[experiment]):
        recorded = status(dataset)
        if recorded is not None and not recorded["ok"]:
            bad[dataset] = recorded["reason"]
    if not bad:
        return None
    why = "; ".join(f"{dataset}: {reason}" for dataset, reason in bad.items())
    if len(missing) < len(runs):
        why += f" ({len(missing)} of its {len(runs)} runs could not run; the other {len(runs) - len(missing)} are present)"
    return why


def results_of(experiment):
    """An experiment's result files: every run's, or, when its data could not be had, those of the
    runs present (committed results count whatever the data)."""
    runs = RUNS_OF[experiment]
    if unavailable(experiment):
        runs = [run for run in runs if present(run)]
    return [result_file(run) for run in runs]


def results(wildcards=None):
    """Every result the DAG makes or keeps (an input of aggregate and verify)."""
    return [f for e in EXPERIMENTS for f in results_of(e)]


# One input function per experiment (the `all` target's): Snakemake looks at each apart, so an experiment
# waiting for its download does not hold back the training of the others.
def _results_function(experiment):
    def experiment_results(wildcards):
        return results_of(experiment)

    return experiment_results


RESULTS_BY_EXPERIMENT = [_results_function(e) for e in EXPERIMENTS]


def reported(wildcards=None):
    """The experiments with results to show (audited, drawn)."""
    return [e for e in EXPERIMENTS if results_of(e)]


def audit_files(wildcards=None):
    return [f"{OUT}/audit/{e}_audit.csv" for e in reported()]


def check_files(wildcards=None):
    return [f"{OUT}/checks/{e}_checks.csv" for e in reported() if CFG.experiments[e].get("checks")]


def figure_files(wildcards=None):
    return [f"{OUT}/figures/{e}_{kind}.png" for e in reported() for kind in CFG.experiments[e]["figures"]]


def unavailable_param(wildcards=None):
    """{experiment: why it could not run} as JSON, for the report (a param: it re-renders when it changes)."""
    return json.dumps({e: why for e in EXPERIMENTS if (why := unavailable(e))}, sort_keys=True)


def run_spec(wildcards):
    run = clconfig.Run(wildcards.experiment, wildcards.scenario, wildcards.method, int(wildcards.seed))
    return clconfig.resolve(CFG, run)


def spec_param(wildcards):
    """The run's spec as its job's param, without the data folder (passed apart: where the data
    live is not what a run is, so moving them reruns nothing)."""
    spec = run_spec(wildcards)
    spec["data"] = {"checksums": spec["data"]["checksums"]}
    return json.dumps(spec, sort_keys=True)


def inputs_param(wildcards, input):
    """The set of a job's inputs as a param: more or fewer runs rerun the aggregation, the report
    and `verify` (the profile's rerun triggers leave out Snakemake's own `input` trigger)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(map(str, input))).encode()).hexdigest()[:16]


def training_inputs(wildcards):
    """The datasets a run reads; none for a run whose result is present and of this spec (e.g.
    committed): fetching the data, in this call or since, must not make it train again. The
    data are there once the download checkpoint has run (the `all` target asks for no run that
    lacks them; a run asked for by name fails, saying why)."""
    run = clconfig.Run(wildcards.experiment, wildcards.scenario, wildcards.method, int(wildcards.seed))
    if is_present(run):
        return []
    for dataset in clconfig.downloads(CFG.experiments[wildcards.experiment]):
        recorded = dataset_status(dataset)
        if not recorded["ok"]:
            raise WorkflowError(f"{result_file(run)} cannot be trained: {dataset}: {recorded['reason']}")
    return ancient(experiment_files(wildcards.experiment))


def uses_gpu():
    if config["device"] == "cpu":
        return 0
    import torch

    return 1 if torch.cuda.is_available() else 0


# Simulations of memory models (simulation.smk)
SIMULATIONS = CFG.simulations
SIMULATION_PANELS = list(RUNNERS)   # (a)-(e) in order, so the report reads them in one order
SIMULATION_RECORDS = [f"{OUT}/simulations/{s}/{panel}.json" for s in SIMULATIONS for panel in SIMULATION_PANELS]
SIMULATION_PLOTS = [f"{OUT}/simulations/{s}/{kind}.png" for s in SIMULATIONS for kind in SIMULATION_FIGURES]


def simulation_config(name):
    return str(clconfig.experiment_path(CONFIGFILE, name, "simulations"))


def simulation_settings(w):
    sim = SIMULATIONS[w.simulation]
    keys = ("model", "retrieval", "seeds", "preset")
    return json.dumps({"panel": sim["panels"][w.panel], **{k: sim[k] for k in keys}}, sort_keys=True)


# The warm process local training jobs fork from (config `worker`; the Snakefile's handlers)
_worker = {}


def _stop_worker():
    if _worker:
        from clrepro import worker

        worker.stop(_worker.pop("process"), os.environ.pop(worker.ENV))
