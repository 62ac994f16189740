import json
import shlex
from pathlib import Path

from snakemake.utils import min_version, validate

from clrepro import config as clconfig
from clrepro import data as cldata

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "../schemas/config.schema.yaml")

# Experiments with the preset applied, validated (schema, methods x scenarios, hyperparameters)
# before any job runs; `--config seeds=N` sets every experiment's number of seeds.
CONFIGFILE = workflow.configfiles[0] if workflow.configfiles else "config/config.yaml"
CFG = clconfig.load(CONFIGFILE, overrides=config)
# The configuration with every --config override applied, as one file that every job reads.
RESOLVED = shlex.quote(str(clconfig.write_resolved(config, CONFIGFILE, ".snakemake/clrepro")))

PRESET = config["preset"]
OUT = f"{config['outdir']}/{PRESET}"
CKPT = str(clconfig.checkpoint_dir(CFG))
DATA = config["data"]["root"]
RUNS = clconfig.runs(CFG)
RESULTS = [f"{OUT}/runs/{run.path}.json" for run in RUNS]
EXPERIMENTS = list(CFG["_experiments"])
REPORT = f"{OUT}/report.html"
FIGURES = [f"{OUT}/figures/{name}_{kind}.png" for name, exp in CFG["_experiments"].items() for kind in exp["figures"]]


wildcard_constraints:
    experiment="[A-Za-z0-9_]+",
    scenario="task|domain|class",
    method="[a-z0-9_]+",
    seed=r"\d+",
    dataset="[a-z0-9]+",
    kind="|".join(clconfig.FIGURE_KINDS),


def experiment_config(experiment):
    """The experiment's file: an input of the analysis rules, so that editing labels, targets or
    notes re-renders what shows them."""
    return str(clconfig.experiment_path(CONFIGFILE, experiment))


def raw_files(dataset):
    """The verified files of a dataset that `clrepro download` leaves (downloads, unpacked copies)."""
    return [str(p) for p in cldata.outputs(DATA, dataset, config["data"].get("checksums"))]


def experiment_files(experiment):
    """The raw files of every dataset an experiment reads."""
    return [f for d in clconfig.dataset_names(CFG["_experiments"][experiment]) for f in raw_files(d)]


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
    committed): fetching the data, in this call or since, must not make it train again."""
    result = Path(f"{OUT}/runs/{wildcards.experiment}/{wildcards.scenario}/{wildcards.method}/seed{wildcards.seed}.json")
    try:
        if json.loads(result.read_text())["spec_hash"] == run_spec(wildcards)["spec_hash"]:
            return []
    except (OSError, ValueError, KeyError):
        pass
    return ancient(experiment_files(wildcards.experiment))


def uses_gpu():
    if config["device"] == "cpu":
        return 0
    import torch

    return 1 if torch.cuda.is_available() else 0
