import json
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

PRESET = config["preset"]
OUT = f"{config['outdir']}/{PRESET}"
CKPT = f"{config['checkpoints']}/{PRESET}"
DATA = config["data"]["root"]
RUNS = clconfig.runs(CFG)
EXPERIMENTS = list(CFG["_experiments"])
REPORT = f"{OUT}/report.html"


wildcard_constraints:
    experiment="[A-Za-z0-9_]+",
    scenario="task|domain|class",
    method="[a-z0-9_]+",
    seed=r"\d+",
    dataset="[a-z0-9]+",


def experiment_config(experiment):
    """The experiment's file: an input of the analysis rules, so that editing labels, targets or
    notes re-renders what shows them."""
    return str(Path(CONFIGFILE).parent / "experiments" / f"{experiment}.yaml")


def raw_files(dataset):
    """The verified raw files of a dataset (downloads and their unpacked copies)."""
    folder = cldata.raw_folder(DATA, dataset)
    out = []
    for name, _ in cldata.resources(dataset, config["data"].get("checksums")):
        out.append(f"{folder}/{name}")
        if name.endswith(".gz"):
            out.append(f"{folder}/{name[:-3]}")
    return out


def run_result(run):
    return f"{OUT}/runs/{run.path}.json"


def run_spec(wildcards):
    run = clconfig.Run(wildcards.experiment, wildcards.scenario, wildcards.method, int(wildcards.seed))
    return clconfig.resolve(CFG, run)


def uses_gpu():
    if config["device"] == "cpu":
        return 0
    import torch

    return 1 if torch.cuda.is_available() else 0
