import json
import shlex

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

PRESET = config["preset"]
OUT = f"{config['outdir']}/{PRESET}"
CKPT = str(clconfig.checkpoint_dir(CFG))
DATA = config["data"]["root"]
RUNS = clconfig.runs(CFG)
RESULTS = [f"{OUT}/runs/{run.path}.json" for run in RUNS]
EXPERIMENTS = list(CFG["_experiments"])
# the subsets of methods and seeds (--config methods=... seeds=...) as the report must know them
SUBSET_ARG = " ".join(f"--{k} {shlex.quote(json.dumps(config[k]))}" for k in ("methods", "seeds") if config.get(k))
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


def uses_gpu():
    if config["device"] == "cpu":
        return 0
    import torch

    return 1 if torch.cuda.is_available() else 0
