"""Configuration: the top-level ``config/config.yaml``, one file per experiment, presets, and the
expansion into runs (experiment x scenario x method x seed), each resolved to one flat spec.

A *run spec* is everything that determines a run's numbers; its hash is the run's identity,
stored beside every result and checkpoint."""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import data as datasets
from . import methods
from .methods.base import derive_seed
from .metrics import OF_R, is_metric_of_R, parse_task_metric

#: the figures an experiment may list (``figures:``; drawn by ``clrepro.figures``)
FIGURE_KINDS = ("accuracy_per_task", "final_accuracy", "average_accuracy", "task_bars", "stability_gap", "memory")

#: the JSON schemas of the configuration files, shipped with the package (workflow/schemas links here)
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


class Experiment(dict):
    """An experiment's settings (its file with the preset applied, validated: the keys of
    experiment.schema.yaml), and what the configuration chose of it: ``method_seeds``, the seeds
    of the methods given their own number; ``seeds_in_file``, the file's number of seeds where
    fewer run; ``all_methods``, the file's methods, and ``left_out``, the labels of those a
    ``methods`` choice leaves out."""

    def __init__(self, name: str, settings: dict):
        super().__init__(settings)
        self.name = name
        self.method_seeds: dict[str, int | dict[str, int]] = {}
        self.seeds_in_file: int | None = None
        self.all_methods: list[str] = list(settings["methods"])
        self.left_out: list[str] = []


class Config(dict):
    """The configuration (config.yaml with every override and its preset's choices applied,
    validated: the keys of config.schema.yaml, as Snakemake's ``config`` has them), and what is
    resolved from it: its ``file``, its ``experiments`` and ``simulations``."""

    def __init__(self, settings: dict, file: Path):
        super().__init__(settings)
        self.file = file
        self.experiments: dict[str, Experiment] = {}
        self.simulations: dict[str, dict] = {}


#: libyaml's safe loader where PyYAML was built with it (several times faster), else PyYAML's
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            return yaml.load(f, Loader=_SAFE_LOADER) or {}
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None


def schema(name: str) -> dict:
    """The JSON schema ``SCHEMA_DIR/<name>``; the experiment schema with each method's
    hyperparameters, generated from their declarations (``methods.schema``)."""
    out = _load_yaml(SCHEMA_DIR / name)
    if name == "experiment.schema.yaml":
        out["properties"]["methods"]["additionalProperties"]["allOf"] = methods.schema()
    return out


def validate(data: dict, schema_name: str, where: str) -> None:
    """Validate against the schema ``schema_name`` (filling defaults), naming the key."""
    import jsonschema

    complete = schema(schema_name)
    validator_cls = jsonschema.validators.validator_for(complete)

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from validator_cls.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(validator_cls, {"properties": set_defaults})
    errors = sorted(filling(complete).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"{where}: {key}: {e.message}")


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


#: what a preset of config.yaml may choose for the whole configuration, as ``--config`` would (which
#: experiments, simulations and methods run); its other keys apply to every experiment it runs
PRESET_CHOICES = ("experiments", "simulations", "methods")


def apply_preset_choices(config: dict, explicit=()) -> dict:
    """``config`` with its preset's choices (``presets.<preset>.experiments``, ``simulations``,
    ``methods``) in place of its own, except the keys named in ``explicit`` (given on the command
    line: they win). The choices are then taken out of the preset, so that applying it again (a
    job reading the resolved configuration) changes nothing. The preset's ``methods`` of
    experiments that do not run are dropped."""
    preset = config.get("preset", "paper")
    own = (config.get("presets") or {}).get(preset) or {}
    if not any(k in own for k in PRESET_CHOICES):
        return config
    out = copy.deepcopy(config)
    out["presets"][preset] = {k: v for k, v in own.items() if k not in PRESET_CHOICES}
    for key in PRESET_CHOICES:
        if key in own and key not in explicit:
            out[key] = copy.deepcopy(own[key])
    if "methods" in own and "methods" not in explicit and out.get("methods"):
        out["methods"] = {name: keep for name, keep in out["methods"].items() if name in out["experiments"]}
    return out


def load(path: str | os.PathLike = "config/config.yaml", overrides: dict | None = None) -> Config:
    """Read and validate the top-level config and its experiments and simulations. The preset's
    choices (``PRESET_CHOICES``) apply unless ``overrides`` give the same keys."""
    path = Path(path)
    config = deep_merge(_load_yaml(path), overrides or {})
    validate(config, "config.schema.yaml", str(path))
    config = apply_preset_choices(config, explicit=set(overrides or {}))
    where = Path(config["config_dir"]) / path.name if config.get("config_dir") else path
    config = Config(config, where)
    config.experiments = {name: Experiment(name, load_experiment(experiment_path(where, name), config))
                          for name in config["experiments"]}
    config.simulations = {name: load_simulation(experiment_path(where, name, "simulations"), config["preset"])
                          for name in config["simulations"]}
    seeds = config.get("seeds")   # e.g. --config seeds=5, seeds='{split_mnist_vdv19: 5}' or '{exp: {ewc: 2}}'
    if isinstance(seeds, dict) and set(seeds) - set(config.experiments):
        raise ConfigError(f"{path}: seeds: no experiment named {sorted(set(seeds) - set(config.experiments))} "
                          f"(experiments: {list(config.experiments)})")
    for name, exp in config.experiments.items():
        own = len(seeds_of(exp))
        given = seeds.get(name) if isinstance(seeds, dict) else seeds
        if isinstance(given, dict):     # {method: number}: the methods named run that many seeds
            unknown = sorted(set(given) - set(exp["methods"]))
            if unknown:
                raise ConfigError(f"{path}: seeds.{name}: no method {unknown} in the experiment "
                                  f"(has: {list(exp['methods'])})")
            exp.method_seeds = {m: _method_seeds(exp, name, m, n, path) for m, n in given.items()}
        elif given:
            exp["seeds"] = int(given)
        if len(seeds_of(exp)) < own:
            exp.seeds_in_file = own     # the report says it holds fewer seeds than the file names
    for name, keep in (config.get("methods") or {}).items():   # e.g. --config 'methods={exp: [none, si]}'
        if name not in config.experiments:
            raise ConfigError(f"{path}: methods: no experiment named {name!r} "
                              f"(experiments: {list(config.experiments)})")
        exp = config.experiments[name]
        known = exp["methods"]
        unknown = [m for m in keep if m not in known]
        if unknown:
            raise ConfigError(f"{path}: methods.{name}: no method {unknown} in the experiment (has: {list(known)})")
        exp["methods"] = {m: spec for m, spec in known.items() if m in keep}
        exp.left_out = [known[m].get("label", m) for m in known if m not in keep]
    try:
        datasets.check_checksums(all_datasets(config), config["data"].get("checksums") or {})
    except KeyError as err:
        raise ConfigError(f"{path}: data.checksums: {err.args[0]}") from None
    return config


def write_resolved(config: dict, config_file: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Write the workflow's configuration (its config file with every ``--config`` override
    applied) as one file every job reads, named by its content (so concurrent workflows of other
    configurations never share one, and an unchanged one is not rewritten); returns its path."""
    resolved = dict(config)
    resolved["config_dir"] = resolved.get("config_dir") or str(Path(config_file).parent)
    text = yaml.safe_dump(resolved, sort_keys=True)
    path = Path(folder) / f"config-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.exists():
        from .atomic import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return path


def labels(exp: dict) -> dict[str, str]:
    """{method key: label shown and matched to targets.csv}, in the experiment's order."""
    return {key: spec.get("label", key) for key, spec in exp["methods"].items()}


def experiment_path(config_file: str | os.PathLike, name: str, kind: str = "experiments") -> Path:
    """``config/<kind>/<name>.yaml`` beside the top-level config file (kind: experiments or
    simulations)."""
    return Path(config_file).parent / kind / f"{name}.yaml"


def checkpoint_dir(config: dict, run: "Run | None" = None) -> Path:
    """``<checkpoints>/<preset>``, or one run's folder below it."""
    root = Path(config["checkpoints"]) / config["preset"]
    return root / run.path if run else root


def dataset_names(exp: dict) -> list[str]:
    """The datasets an experiment reads (``dataset``: one name or a list, concatenated)."""
    return exp["dataset"] if isinstance(exp["dataset"], list) else [exp["dataset"]]


def pretrained_weights(model: dict) -> list[str]:
    """The pretrained weights (``data.WEIGHTS`` keys) a network starts from."""
    return ["squeezenet1_0"] if model["type"] == "squeezenet" and model.get("weights") == "imagenet" else []


def downloads(exp: dict) -> list[str]:
    """What an experiment needs fetched: its datasets, then the pretrained weights of its networks."""
    weights = {w for key in exp["methods"] for w in pretrained_weights(method_model(exp, key))}
    return dataset_names(exp) + sorted(weights)


def all_datasets(config: Config) -> list[str]:
    """The downloads (datasets, pretrained weights) of all configured experiments."""
    return sorted({d for exp in config.experiments.values() for d in downloads(exp)})


#: what an experiment does not take from the one it extends: what it shows and audits
NOT_INHERITED = ("title", "targets", "audit_map", "choices", "figures", "checks", "continual_eval")


def _extended(exp: dict, path: Path) -> dict:
    """An experiment file that ``extends`` another (``{experiment, methods}``): the other's protocol
    and the methods named (all when none are), with this file's keys over them."""
    ext = exp["extends"]
    if not isinstance(ext, dict) or not isinstance(ext.get("experiment"), str):
        raise ConfigError(f"{path}: extends: give {{experiment: <name>, methods: [<key>, ...]}}")
    base_path = path.parent / f"{ext['experiment']}.yaml"
    base = _load_yaml(base_path)
    if "extends" in base:
        raise ConfigError(f"{path}: extends: {base_path} extends another experiment itself")
    keep = ext.get("methods", list(base["methods"]))
    unknown = [m for m in keep if m not in base["methods"]]
    if unknown:
        raise ConfigError(f"{path}: extends.methods: no method {unknown} in {base_path} (has: {list(base['methods'])})")
    base = {k: v for k, v in base.items() if k not in NOT_INHERITED}
    base["methods"] = {m: base["methods"][m] for m in keep}
    return deep_merge(base, exp)


def extended_path(path: Path) -> Path | None:
    """The file of the experiment that the experiment file ``path`` extends, or None."""
    ext = _load_yaml(path).get("extends")
    return path.parent / f"{ext['experiment']}.yaml" if isinstance(ext, dict) and "experiment" in ext else None


def load_experiment(path: Path, config: dict) -> dict:
    """An experiment file with the active preset applied, validated, methods checked."""
    exp = _load_yaml(path)
    if "extends" in exp:
        exp = _extended(exp, path)
    validate(exp, "experiment.schema.yaml", str(path))
    preset = config["preset"]
    if preset != "paper":
        if preset not in config.get("presets", {}) and preset not in exp.get("presets", {}):
            raise ConfigError(f"{path}: preset: unknown preset {preset!r}")
        exp = deep_merge(exp, config.get("presets", {}).get(preset, {}))
        exp = deep_merge(exp, exp.get("presets", {}).get(preset, {}))
        validate(exp, "experiment.schema.yaml", f"{path} (preset {preset})")
    for label, spec in exp["methods"].items():
        for field, own in (("model", method_model), ("optimizer", method_optimizer), ("benchmark", method_benchmark)):
            if field in spec:   # the method's own, checked as the experiment's is
                validate({**exp, field: own(exp, label)}, "experiment.schema.yaml", f"{path} (methods.{label}.{field})")
        extra = set(spec.get("scenarios", [])) - set(exp["scenarios"])
        if extra:
            raise ConfigError(f"{path}: methods.{label}.scenarios: {sorted(extra)} not among the experiment's "
                              f"{exp['scenarios']}")
        for scenario in method_scenarios(exp, label):
            try:
                methods.expand(label, spec, scenario)
            except ValueError as err:
                raise ConfigError(f"{path}: {err}") from None
    check_references(exp, path)
    return exp


def load_simulation(path: Path, preset: str) -> dict:
    """A simulation file with its own preset applied (the paper's values when it names none:
    presets of training protocols mean nothing to it), validated."""
    sim = _load_yaml(path)
    validate(sim, "simulation.schema.yaml", str(path))
    if preset in sim.get("presets", {}):
        sim = deep_merge(sim, sim["presets"][preset])
        validate(sim, "simulation.schema.yaml", f"{path} (preset {preset})")
    sim["preset"] = preset if preset in sim.get("presets", {}) else "paper"
    return sim


def method_scenarios(exp: dict, key: str) -> list[str]:
    """The scenarios ``methods.<key>`` runs in: its ``scenarios``, else all of the experiment's."""
    return [s for s in exp["scenarios"] if s in exp["methods"][key].get("scenarios", exp["scenarios"])]


def _method_own(exp: dict, key: str, field: str, kind: str) -> dict:
    """``methods.<key>.<field>`` merged into the experiment's ``<field>`` when both have the same
    ``kind`` (the model's type, the optimiser's name), replacing it otherwise; the experiment's when
    the method has none."""
    own = exp["methods"][key].get(field)
    if own is None:
        return exp[field]
    if own.get(kind, exp[field][kind]) == exp[field][kind]:
        return deep_merge(exp[field], own)
    return copy.deepcopy(own)


def method_model(exp: dict, key: str) -> dict:
    """The network of ``methods.<key>`` (variants of one method on different networks)."""
    return _method_own(exp, key, "model", "type")


def method_optimizer(exp: dict, key: str) -> dict:
    """The optimiser of ``methods.<key>`` (a method run with its own published optimiser)."""
    return _method_own(exp, key, "optimizer", "name")


def method_benchmark(exp: dict, key: str) -> dict:
    """The benchmark of ``methods.<key>`` (a method run as another version of its code runs it,
    e.g. with every output unit active in Class-IL)."""
    return _method_own(exp, key, "benchmark", "type")


def n_tasks(exp: dict) -> int:
    bench = exp["benchmark"]
    if bench["type"] == "split":
        return len(bench["tasks"])
    return len(bench["angles"]) if bench["type"] == "rotated" else bench["n_tasks"]


def check_references(exp: dict, path) -> None:
    """What the schema cannot check: ``audit_map`` names scenarios and tasks the experiment has
    (a method left out of ``methods`` is allowed: its targets are "not run"); per-task bar figures
    need a single scenario. Fills in the scenario of a single-scenario experiment."""
    for target, m in exp.get("audit_map", {}).items():
        where = f"{path}: audit_map.{target}"
        if len(exp["scenarios"]) == 1:
            m.setdefault("scenario", exp["scenarios"][0])
        if m.get("scenario") not in exp["scenarios"]:
            raise ConfigError(f"{where}.scenario: give one of the experiment's scenarios {exp['scenarios']}")
        if not is_metric_of_R(m["metric"]):
            raise ConfigError(f"{where}.metric: unknown {m['metric']!r} (one of {', '.join(OF_R)}, acc_task<j>, "
                              f"learned_task<j>)")
        task = parse_task_metric(m["metric"])
        if task is not None and not 1 <= task[1] <= n_tasks(exp):
            raise ConfigError(f"{where}.metric: {m['metric']!r}: the experiment has {n_tasks(exp)} tasks")
    if "task_bars" in exp.get("figures", []) and len(exp["scenarios"]) > 1:
        raise ConfigError(f"{path}: figures: task_bars draws one scenario; the experiment has {exp['scenarios']}")
    if (exp.get("checks") or "stability_gap" in exp.get("figures", [])) and not exp.get("continual_eval"):
        raise ConfigError(f"{path}: checks and the stability_gap figure read continual-evaluation curves: "
                          f"set continual_eval")
    for i, check in enumerate(exp.get("checks", [])):
        where = f"{path}: checks[{i}] ({check['id']})"
        if check["method"] not in exp["methods"]:
            raise ConfigError(f"{where}.method: no method {check['method']!r} (has: {list(exp['methods'])})")
        last = n_tasks(exp) - ("max_gap" in check)   # a recovery is read at the end of the next task
        for key in ("task", "after"):
            if check[key] > last:
                raise ConfigError(f"{where}.{key}: {check[key]} is past task {last} of {n_tasks(exp)}")


@dataclass(frozen=True)
class Run:
    experiment: str
    scenario: str
    method: str
    seed: int

    @property
    def path(self) -> str:
        return f"{self.experiment}/{self.scenario}/{self.method}/seed{self.seed}"


def _method_seeds(exp: Experiment, name: str, method: str, n, path) -> int | dict[str, int]:
    """A method's seed count from ``--config seeds=...``: a number, or one per scenario."""
    if not isinstance(n, dict):
        return int(n)
    unknown = sorted(set(n) - set(method_scenarios(exp, method)))
    if unknown:
        raise ConfigError(f"{path}: seeds.{name}.{method}: no scenario {unknown} for this method "
                          f"(has: {method_scenarios(exp, method)})")
    return {s: int(k) for s, k in n.items()}


def seeds_of(exp: Experiment | dict, method: str | None = None, scenario: str | None = None) -> list[int]:
    """The seeds an experiment (or a simulation) runs, or one of an experiment's methods
    (``--config 'seeds={exp: {method: n}}'``), in one scenario where they are given per scenario
    (``{exp: {method: {scenario: n}}}``; a scenario not named runs none)."""
    s = exp.method_seeds.get(method, exp["seeds"]) if isinstance(exp, Experiment) else exp["seeds"]
    if isinstance(s, dict):
        s = s.get(scenario, 0) if scenario else max(s.values(), default=0)
    return list(range(s)) if isinstance(s, int) else list(s)


def runs(config: Config) -> list[Run]:
    out = []
    for name, exp in config.experiments.items():
        for scenario in exp["scenarios"]:
            for label in exp["methods"]:
                if scenario in method_scenarios(exp, label):
                    out += [Run(name, scenario, label, s) for s in seeds_of(exp, label, scenario)]
    return out


def resolve(config: Config, run: Run) -> dict:
    """The flat spec of one run: protocol, method and hyperparameters, all four seeds."""
    exp = config.experiments[run.experiment]
    cls, hp = methods.expand(run.method, exp["methods"][run.method], run.scenario)
    bench = method_benchmark(exp, run.method)
    s = run.seed
    seeds = {
        "seed": s,
        "order": {"shuffled": derive_seed(s, "order"), "reference": s}.get(bench.get("class_order")),
        "perm": derive_seed(s, "perm") if exp["benchmark"]["type"] == "permuted" else None,
        "init": derive_seed(s, "init"),
        "data": derive_seed(s, "data"),
    }
    if exp.get("continual_eval"):   # only then: the spec (and hash) of other runs is unchanged
        seeds["eval"] = derive_seed(s, "eval")
    seeds.update({k: v for k, v in exp.get("seed_overrides", {}).items() if k in seeds})
    spec = {
        "experiment": run.experiment,
        "scenario": run.scenario,
        "method": run.method,
        "method_class": cls.name,
        "hyperparameters": hp,
        "preset": config["preset"],
        "seeds": seeds,
        "dataset": exp["dataset"],
        "benchmark": bench,
        "model": method_model(exp, run.method),
        "optimizer": method_optimizer(exp, run.method),
        "batch_size": exp["batch_size"],
        "train_subset": exp.get("train_subset"),
        "data": {"root": config["data"]["root"], "checksums": config["data"].get("checksums") or {}},
    }
    # a task is iters_per_task steps, or else epochs_per_task passes over its data
    steps = "iters_per_task" if exp.get("iters_per_task") else "epochs_per_task"
    spec[steps] = exp[steps]
    if steps == "epochs_per_task" and exp.get("epochs_first_task"):   # only then: other specs are unchanged
        spec["epochs_first_task"] = exp["epochs_first_task"]
    if exp.get("continual_eval"):
        spec["continual_eval"] = exp["continual_eval"]
    spec["spec_hash"] = spec_hash(spec)
    return spec


def spec_hash(spec: dict) -> str:
    """Hash of everything that determines the numbers: the protocol and, for data other than the
    official files (``data.checksums`` overrides), their checksums; not where the data live."""
    core = {k: v for k, v in spec.items() if k not in ("spec_hash", "data")}
    if spec.get("data", {}).get("checksums"):
        core["data_checksums"] = spec["data"]["checksums"]
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:16]
