"""Configuration: loading, presets, expansion into runs, resolution, and refusal of bad values."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import clrepro.methods.lwf
from clrepro import config, methods
from clrepro.config import ConfigError
from clrepro.methods.base import derive_seed
from conftest import REPO

EXP = "split_mnist_vdv19"
METHODS = ["none", "joint", "ewc", "online_ewc", "si", "lwf_preprint", "lwf", "lwf_no_t2", "mas", "l2", "dgr",
           "dgr_distill", "dgr_distill_preprint", "bir", "er", "agem", "agem_sgd"]
CLASS_ONLY = ["icarl_random", "icarl", "cln", "agem_shared", "agem_all_units", "lwf_preprint_refpairs"]
TASK_ONLY = ["xdg"]
PER_SEED = 3 * len(METHODS) + len(CLASS_ONLY) + len(TASK_ONLY)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.fixture
def cfg(in_repo):
    return config.load("config/config.yaml")


@pytest.fixture
def cfg_copy(tmp_path):
    """config.yaml, experiments/ and simulations/ copied to tmp_path; returns the copied config.yaml path."""
    shutil.copy(REPO / "config" / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(REPO / "config" / "experiments", tmp_path / "experiments")
    shutil.copytree(REPO / "config" / "simulations", tmp_path / "simulations")
    return tmp_path / "config.yaml"


def edit_yaml(path: Path, fn):
    d = yaml.safe_load(path.read_text())
    fn(d)
    path.write_text(yaml.safe_dump(d, sort_keys=False))


def test_load_paper_config_and_runs(cfg):
    assert cfg["preset"] == "paper"
    assert list(cfg.experiments) == [EXP, "split_mnist_si17", "permuted_mnist_si17", "permuted_mnist_vdv19",
                                         "split_cifar_si17", "split_mnist_sdm23", "rotated_mnist_stability_gap",
                                         "split_mnist_stability_gap", "crumb_split_mnist", "crumb_stream_cifar100",
                                         "crumb_stream_core50"]
    assert list(cfg.simulations) == ["consolidation_shaham22"]
    sim = cfg.simulations["consolidation_shaham22"]
    assert config.seeds_of(sim) == list(range(sim["seeds"]))   # a simulation's seeds, as its panels read them
    exp = cfg.experiments[EXP]
    assert exp["iters_per_task"] == 2000 and exp["model"]["hidden"] == [400, 400]
    runs = [r for r in config.runs(cfg) if r.experiment == EXP]
    assert len(runs) == PER_SEED * 20 == 1160
    assert len(set(runs)) == 1160
    assert {r.scenario for r in runs} == {"task", "domain", "class"}
    assert sorted({r.method for r in runs}) == sorted(METHODS + CLASS_ONLY + TASK_ONLY)
    assert {r.scenario for r in runs if r.method in CLASS_ONLY} == {"class"}
    assert {r.scenario for r in runs if r.method in TASK_ONLY} == {"task"}
    assert {r.seed for r in runs} == set(range(20))
    assert config.Run(EXP, "class", "si", 7).path == f"{EXP}/class/si/seed7"
    # defaults filled in from the schema
    assert cfg["audit"] == {"alpha": 0.05, "tolerance_pp": 1.0}
    assert cfg["data"]["mirror"] is None


def test_quick_preset_applies_overrides(in_repo):
    cfg = config.load("config/config.yaml", {"preset": "quick"})
    exp = cfg.experiments[EXP]
    assert exp["seeds"] == 2 and exp["iters_per_task"] == 60 and exp["train_subset"] == 0.25
    assert exp["model"] == {"type": "mlp", "hidden": [100, 100]}   # the experiment's own preset
    assert len([r for r in config.runs(cfg) if r.experiment == EXP]) == PER_SEED * 2


def test_load_with_absolute_path_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config.load(REPO / "config" / "config.yaml")
    assert len([r for r in config.runs(cfg) if r.experiment == EXP]) == PER_SEED * 20


@pytest.mark.parametrize("scenario,ewc_lambda,si_c", [("task", 1e7, 50.0), ("domain", 1e6, 500.0),
                                                      ("class", 1e8, 0.5)])
def test_resolve_per_scenario_hyperparameters(cfg, scenario, ewc_lambda, si_c):
    ewc = config.resolve(cfg, config.Run(EXP, scenario, "ewc", 0))
    assert ewc["method_class"] == "ewc"
    assert ewc["hyperparameters"] == {"lambda": ewc_lambda, "fisher": "predicted", "fisher_n": None,
                                      "online": False, "gamma": 1.0, "gamma_in_penalty": False}
    si = config.resolve(cfg, config.Run(EXP, scenario, "si", 0))
    assert si["hyperparameters"] == {"c": si_c, "xi": 0.1, "gradient": "total", "omega_clip": "none"}
    oewc = config.resolve(cfg, config.Run(EXP, scenario, "online_ewc", 0))
    assert oewc["method_class"] == "ewc" and oewc["hyperparameters"]["online"] is True
    assert oewc["hyperparameters"]["gamma"] == {"task": 0.8, "domain": 0.7, "class": 0.8}[scenario]
    lwf = config.resolve(cfg, config.Run(EXP, scenario, "lwf", 0))
    assert lwf["hyperparameters"] == {"temperature": 2.0, "kd_reduction": "batchmean", "t_squared": True}
    assert config.resolve(cfg, config.Run(EXP, scenario, "none", 0))["hyperparameters"] == {}


def test_resolve_records_seeds_and_protocol(cfg):
    spec = config.resolve(cfg, config.Run(EXP, "class", "ewc", 5))
    seeds = spec["seeds"]
    assert seeds["seed"] == 5
    assert seeds["perm"] is None                               # split benchmark: no permutation
    assert seeds["order"] == derive_seed(5, "order")           # class_order: shuffled
    assert seeds["init"] == derive_seed(5, "init") and seeds["data"] == derive_seed(5, "data")
    assert len({seeds["order"], seeds["init"], seeds["data"], seeds["seed"]}) == 4
    assert all(0 <= seeds[k] < 2 ** 63 for k in ("order", "init", "data"))
    assert spec["benchmark"]["tasks"] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert spec["optimizer"]["lr"] == 0.001 and spec["batch_size"] == 128
    assert spec["iters_per_task"] == 2000 and spec["preset"] == "paper"
    assert spec["data"] == {"root": "data", "checksums": {}}
    assert spec["spec_hash"] == config.spec_hash(spec)
    # a method's own class order: the reference code's, drawn with the run's seed itself
    ref = config.resolve(cfg, config.Run(EXP, "class", "lwf_preprint_refpairs", 5))
    assert ref["seeds"]["order"] == 5 and ref["benchmark"]["class_order"] == "reference"


def test_spec_hash_identity(cfg):
    a = config.resolve(cfg, config.Run(EXP, "task", "si", 0))
    a2 = config.resolve(cfg, config.Run(EXP, "task", "si", 0))
    b = config.resolve(cfg, config.Run(EXP, "task", "si", 1))
    c = config.resolve(cfg, config.Run(EXP, "domain", "si", 0))
    assert a["spec_hash"] == a2["spec_hash"] == config.spec_hash(a)
    assert len(a["spec_hash"]) == 16
    assert len({a["spec_hash"], b["spec_hash"], c["spec_hash"]}) == 3
    # where the data live is not part of the identity; which data (their checksums) and the number
    # of iterations are; the official files (no override) keep the hashes of committed results
    moved = dict(a, data={"root": "/elsewhere", "checksums": {}})
    assert config.spec_hash(moved) == a["spec_hash"]
    other_data = dict(a, data={"root": "data", "checksums": {"train-images-idx3-ubyte.gz": "0" * 32}})
    assert config.spec_hash(other_data) != a["spec_hash"]
    assert config.spec_hash(dict(a, iters_per_task=1999)) != a["spec_hash"]
    assert config.spec_hash(dict(a, hyperparameters=dict(a["hyperparameters"], c=50.1))) != a["spec_hash"]


def test_copied_config_loads(cfg_copy):
    runs = config.runs(config.load(cfg_copy))
    assert len([r for r in runs if r.experiment == EXP]) == PER_SEED * 20


def test_unknown_top_level_key(cfg_copy):
    edit_yaml(cfg_copy, lambda d: d.update(lerning_rate=0.1))
    with pytest.raises(ConfigError, match="lerning_rate"):
        config.load(cfg_copy)


def test_hyperparameter_given_as_string(cfg_copy):
    exp = cfg_copy.parent / "experiments" / f"{EXP}.yaml"
    text = exp.read_text()
    assert "lambda: {task: 1.0e+7," in text
    # YAML 1.1 reads 1e7 (no dot) as the *string* "1e7": a classic typo that must not pass
    exp.write_text(text.replace("lambda: {task: 1.0e+7,", "lambda: {task: 1e7,"))
    assert yaml.safe_load(exp.read_text())["methods"]["ewc"]["lambda"]["task"] == "1e7"
    with pytest.raises(ConfigError, match="lambda") as err:
        config.load(cfg_copy)
    assert "methods.ewc.lambda" in str(err.value)


def test_hyperparameter_string_scalar(cfg_copy):
    exp = cfg_copy.parent / "experiments" / f"{EXP}.yaml"
    edit_yaml(exp, lambda d: d["methods"]["mas"].update({"lambda": "1e7"}))
    with pytest.raises(ConfigError, match="lambda"):
        config.load(cfg_copy)


def test_unknown_hyperparameter_of_method(cfg_copy):
    exp = cfg_copy.parent / "experiments" / f"{EXP}.yaml"
    edit_yaml(exp, lambda d: d["methods"]["ewc"].update({"lamda": 3.0}))
    with pytest.raises(ConfigError, match="lamda") as err:
        config.load(cfg_copy)
    assert "methods.ewc" in str(err.value)
    # a hyperparameter of another method is refused as well (SI's c on L2)
    edit_yaml(exp, lambda d: (d["methods"]["ewc"].pop("lamda"), d["methods"]["l2"].update({"c": 1.0})))
    with pytest.raises(ConfigError, match=r"methods\.l2\.c"):
        config.load(cfg_copy)


def test_hyperparameter_values_are_checked_against_their_methods_declarations(cfg_copy):
    exp = cfg_copy.parent / "experiments" / f"{EXP}.yaml"
    edit_yaml(exp, lambda d: d["methods"]["si"].update({"gradient": "totl"}))
    with pytest.raises(ConfigError, match=r"methods\.si\.gradient: 'totl' is not one of \['unregularised', 'total'\]"):
        config.load(cfg_copy)
    edit_yaml(exp, lambda d: (d["methods"]["si"].pop("gradient"), d["methods"]["dgr"].update({"latent": 0})))
    with pytest.raises(ConfigError, match=r"methods\.dgr\.latent: 0 is less than the minimum of 1"):
        config.load(cfg_copy)


@pytest.mark.parametrize("name", sorted(methods.REGISTRY))
def test_every_declared_hyperparameter_is_described_and_its_default_valid(name):
    import jsonschema
    cls = methods.REGISTRY[name]
    for key, h in {**cls.hyperparameters, **cls.optional_hyperparameters}.items():
        assert h.help.endswith("."), f"{name}.{key}"
        if h.default is not methods.REQUIRED:
            jsonschema.validate(h.default, h.schema())


def test_method_models_merge_into_the_experiments_or_replace_it(cfg):
    sdm = "split_mnist_sdm23"
    ablation = config.resolve(cfg, config.Run(sdm, "class", "sdm_no_norm", 0))["model"]
    assert ablation == {"type": "sdm", "neurons": 1000, "k": 10, "activation": "gaba", "switch_after": 100000,
                        "normalize": False}
    assert config.resolve(cfg, config.Run(sdm, "class", "relu_si", 0))["model"] == {"type": "mlp", "hidden": [1000]}
    assert config.resolve(cfg, config.Run(sdm, "class", "sdm", 0))["model"] == cfg.experiments[sdm]["model"]


def test_method_optimizers_merge_into_the_experiments_or_replace_it(cfg):
    exp = cfg.experiments[EXP]
    assert config.resolve(cfg, config.Run(EXP, "class", "agem_sgd", 0))["optimizer"] == {"name": "sgd", "lr": 0.1}
    assert config.resolve(cfg, config.Run(EXP, "class", "agem", 0))["optimizer"] == exp["optimizer"]
    same = {**exp, "methods": {"m": {"method": "agem", "optimizer": {"lr": 0.01, "clip_grad_norm": 1.0}}}}
    assert config.method_optimizer(same, "m") == {**exp["optimizer"], "lr": 0.01, "clip_grad_norm": 1.0}


def test_a_method_benchmark_merges_into_the_experiments(cfg, cfg_copy):
    exp = cfg.experiments[EXP]
    all_units = config.resolve(cfg, config.Run(EXP, "class", "agem_all_units", 0))
    assert all_units["benchmark"] == {**exp["benchmark"], "outputs": "all"}
    assert config.resolve(cfg, config.Run(EXP, "class", "agem", 0))["benchmark"] == exp["benchmark"]
    path = cfg_copy.parent / "experiments" / f"{EXP}.yaml"
    edit_yaml(path, lambda d: d["methods"]["agem_all_units"]["benchmark"].update({"outputs": "every"}))
    with pytest.raises(ConfigError, match=r"methods\.agem_all_units\.benchmark.*every"):
        config.load(cfg_copy)


def test_bad_method_optimizer_names_the_method(cfg_copy):
    exp = cfg_copy.parent / "experiments" / f"{EXP}.yaml"
    edit_yaml(exp, lambda d: d["methods"]["agem_sgd"]["optimizer"].update({"momentm": 0.9}))
    with pytest.raises(ConfigError, match=r"methods\.agem_sgd\.optimizer.*momentm"):
        config.load(cfg_copy)


@pytest.mark.parametrize("preset", ["paper", "quick"])
def test_committed_results_are_what_the_config_resolves_to(in_repo, preset):
    """Every committed result records the spec hash its run has under today's configuration:
    a changed protocol or hyperparameter (a new one included) is re-run, not left stale."""
    cfg = config.load("config/config.yaml", {"preset": preset})
    stale = []
    for path in sorted(Path(f"reports/{preset}/runs").rglob("seed*.json")):
        r = json.loads(path.read_text())
        run = config.Run(r["experiment"], r["scenario"], r["method"], r["seed"])
        if r["method"] not in cfg.experiments.get(run.experiment, {}).get("methods", {}):
            stale.append(f"{path} (no such experiment or method)")
        elif config.resolve(cfg, run)["spec_hash"] != r["spec_hash"]:
            stale.append(str(path))
    assert len(stale) == 0, "results that today's configuration would not produce:\n" + "\n".join(stale)


def test_bad_method_model_names_the_method(cfg_copy):
    exp = cfg_copy.parent / "experiments" / "split_mnist_sdm23.yaml"
    edit_yaml(exp, lambda d: d["methods"]["sdm_k3"]["model"].update({"kk": 3}))
    with pytest.raises(ConfigError, match=r"methods\.sdm_k3\.model.*kk"):
        config.load(cfg_copy)


def test_unknown_method(cfg_copy):
    exp = cfg_copy.parent / "experiments" / f"{EXP}.yaml"
    edit_yaml(exp, lambda d: d["methods"]["l2"].update({"method": "gem"}))
    with pytest.raises(ConfigError, match="gem"):
        config.load(cfg_copy)


def test_unsupported_method_scenario_refused_before_training(in_repo, monkeypatch):
    from clrepro import train

    monkeypatch.setattr(clrepro.methods.lwf.LwF, "scenarios", ("task", "domain"))
    monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError) as err:
        config.load("config/config.yaml")
    msg = str(err.value)
    assert "lwf" in msg and "class" in msg


def test_unknown_preset(in_repo):
    with pytest.raises(ConfigError, match="fast"):
        config.load("config/config.yaml", {"preset": "fast"})


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")


def test_bad_checksum_override_refused(in_repo):
    with pytest.raises(ConfigError, match="checksums"):
        config.load("config/config.yaml", {"data": {"checksums": {"train-images-idx3-ubyte.gz": "xyz"}}})


def test_seeds_for_every_or_named_experiments(in_repo):
    cfg = config.load("config/config.yaml", {"seeds": {EXP: 3}})
    assert cfg.experiments[EXP]["seeds"] == 3
    assert cfg.experiments[EXP].seeds_in_file == 20            # the report names the shortfall
    assert cfg.experiments["split_mnist_si17"]["seeds"] == 10     # its own number
    assert cfg.experiments["split_mnist_si17"].seeds_in_file is None
    assert config.load("config/config.yaml", {"seeds": 25}).experiments[EXP].seeds_in_file is None
    cfg = config.load("config/config.yaml", {"seeds": 2})
    assert {e["seeds"] for e in cfg.experiments.values()} == {2}
    with pytest.raises(ConfigError, match="seeds"):
        config.load("config/config.yaml", {"seeds": {EXP: 0}})


def test_seeds_for_the_methods_named(in_repo):
    """`--config 'seeds={exp: {method: n}}'`: the methods named run n seeds, the others their own
    number; `{method: {scenario: n}}`: n seeds in each scenario named, none in the others."""
    cfg = config.load("config/config.yaml", {"seeds": {EXP: {"ewc": 2, "si": "3", "lwf": {"domain": 2, "class": "1"}}}})
    seeds = {}
    for run in config.runs(cfg):
        if run.experiment == EXP:
            seeds.setdefault(run.method, set()).add(run.seed)
            seeds.setdefault((run.method, run.scenario), set()).add(run.seed)
    assert seeds["ewc"] == {0, 1} and seeds["si"] == {0, 1, 2} and seeds["none"] == set(range(20))
    assert seeds["lwf", "domain"] == {0, 1} and seeds["lwf", "class"] == {0} and ("lwf", "task") not in seeds
    with pytest.raises(ConfigError, match=r"seeds\.split_mnist_vdv19\.icarl: no scenario \['task'\]"):
        config.load("config/config.yaml", {"seeds": {EXP: {"icarl": {"task": 2}}}})
    assert cfg.experiments[EXP].seeds_in_file is None
    with pytest.raises(ConfigError, match=r"seeds\.split_mnist_vdv19: no method \['nope'\]"):
        config.load("config/config.yaml", {"seeds": {EXP: {"nope": 2}}})
    with pytest.raises(ConfigError, match="seeds"):
        config.load("config/config.yaml", {"seeds": {EXP: {"ewc": 0}}})


def test_seeds_naming_no_experiment_refused(in_repo):
    with pytest.raises(ConfigError, match="seeds: no experiment named \\['split_mnist_si1'\\]"):
        config.load("config/config.yaml", {"seeds": {"split_mnist_si1": 5}})


def test_methods_subset_runs_and_labels_only_those(in_repo):
    cfg = config.load("config/config.yaml", {"methods": {EXP: ["si", "none", "icarl"]}, "seeds": {EXP: 2}})
    assert list(cfg.experiments[EXP]["methods"]) == ["none", "si", "icarl"]      # the experiment's order
    assert "DGR+distill" in cfg.experiments[EXP].left_out and "SI" not in cfg.experiments[EXP].left_out
    runs = [r for r in config.runs(cfg) if r.experiment == EXP]
    assert len(runs) == (3 + 3 + 1) * 2 and {r.method for r in runs} == {"none", "si", "icarl"}
    assert len(cfg.experiments["split_mnist_si17"]["methods"]) > 3               # others untouched
    with pytest.raises(ConfigError, match="methods.split_mnist_vdv19: no method \\['sii'\\]"):
        config.load("config/config.yaml", {"methods": {EXP: ["sii"]}})
    with pytest.raises(ConfigError, match="methods: no experiment named 'nope'"):
        config.load("config/config.yaml", {"methods": {"nope": ["si"]}})


@pytest.mark.parametrize("entry,message", [
    ({"method": "none", "metric": "acc_task7"}, "audit_map.si_cifar_avg6_0.metric: 'acc_task7': the experiment has 6"),
    ({"method": "none", "metric": "accuracy"}, "audit_map.si_cifar_avg6_0.metric: unknown 'accuracy' \\(one of acc, "
                                               "bwt, fwt, forgetting, learned, acc_task<j>"),
    ({"method": "none", "metric": "acc", "scenario": "class"}, "audit_map.si_cifar_avg6_0.scenario"),
])
def test_audit_map_names_what_the_experiment_has(cfg_copy, entry, message):
    edit_yaml(cfg_copy.parent / "experiments" / "split_cifar_si17.yaml",
              lambda d: d["audit_map"].update(si_cifar_avg6_0=entry))
    with pytest.raises(ConfigError, match=message):
        config.load(cfg_copy)


def test_task_bars_need_one_scenario(cfg_copy):
    edit_yaml(cfg_copy.parent / "experiments" / "split_cifar_si17.yaml",
              lambda d: d.update(scenarios=["task", "class"], audit_map={}))
    with pytest.raises(ConfigError, match="task_bars draws one scenario"):
        config.load(cfg_copy)


def test_demo_preset_chooses_what_runs(in_repo):
    """A preset may choose the experiments, simulations and methods (presets.demo): one experiment,
    five methods, one seed, no simulation; its other keys apply to the experiment as a preset's do."""
    cfg = config.load("config/config.yaml", {"preset": "demo"})
    assert list(cfg.experiments) == [EXP] and cfg.simulations == {}
    exp = cfg.experiments[EXP]
    assert list(exp["methods"]) == ["none", "ewc", "si", "lwf_preprint", "er"]
    assert exp["seeds"] == 1 and exp["iters_per_task"] == 200 and exp["model"]["hidden"] == [100, 100]
    assert len(config.runs(cfg)) == 5 * 3
    assert "experiments" not in cfg["presets"]["demo"]          # applied once: a job's reload changes nothing


def test_explicit_config_wins_over_the_presets_choices(in_repo):
    """`--config experiments=[...]` (or simulations, methods) wins; the preset's methods of the
    experiments that do not run are dropped, and its other keys still apply."""
    cfg = config.load("config/config.yaml", {"preset": "demo", "experiments": ["split_mnist_si17"]})
    assert list(cfg.experiments) == ["split_mnist_si17"] and cfg.simulations == {}
    assert cfg.experiments["split_mnist_si17"]["seeds"] == 1
    cfg = config.load("config/config.yaml", {"preset": "demo", "methods": {EXP: ["si"]},
                                             "simulations": ["consolidation_shaham22"]})
    assert list(cfg.experiments[EXP]["methods"]) == ["si"]
    assert list(cfg.simulations) == ["consolidation_shaham22"]
    # as the workflow does it: only the keys given with --config are explicit, the config file's are not
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text()) | {"preset": "demo"}
    applied = config.apply_preset_choices(base, explicit={"preset"})
    assert applied["experiments"] == [EXP] and applied["simulations"] == []
    assert config.apply_preset_choices(applied, explicit=()) == applied
    kept = config.apply_preset_choices(base | {"experiments": ["split_mnist_si17"]}, explicit={"preset", "experiments"})
    assert kept["experiments"] == ["split_mnist_si17"] and kept["methods"] == {}


def test_resolved_configuration_of_a_preset_that_chooses_reloads_the_same(in_repo, tmp_path):
    """The jobs read the resolved configuration: it holds the preset's choice, and loading it again
    (with or without the --config keys) gives the same runs."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for given in ({"preset": "demo"}, {"preset": "demo", "experiments": ["split_mnist_si17"]}):
        applied = config.apply_preset_choices(config.deep_merge(base, given), explicit=set(given))
        path = config.write_resolved(applied, REPO / "config" / "config.yaml", tmp_path)
        assert config.runs(config.load(path)) == config.runs(config.load("config/config.yaml", given))


def test_a_presets_choices_are_validated(cfg_copy):
    text = cfg_copy.read_text().replace("experiments: [split_mnist_vdv19]", "experiments: split_mnist_vdv19")
    assert text != cfg_copy.read_text()
    cfg_copy.write_text(text)
    with pytest.raises(ConfigError, match=r"presets\.demo\.experiments"):
        config.load(cfg_copy, {"preset": "demo"})


def test_cost_of_a_configuration_from_the_committed_runs_times(in_repo):
    """Per experiment: its runs, and the hours they take at the mean time of the committed runs of
    the same method and scenario (else of the method, else of its method class, else of the
    experiment) on its usual device, over the CPU-timed runs among them where there are any; "not
    measured" without committed runs or for another preset."""
    import pandas as pd
    from clrepro import cost
    times = pd.DataFrame([(EXP, "task", "none", "none", 10.0, "cpu:x"), (EXP, "domain", "none", "none", 30.0, "cpu:x"),
                          (EXP, "task", "ewc", "ewc", 60.0, "cpu:x"), (EXP, "task", "ewc", "ewc", 1.0, "cuda:y"),
                          (EXP, "task", "dgr", "dgr", 200.0, "cpu:x"), (EXP, "task", "dgr", "dgr", 500.0, "cpu:x")],
                         columns=cost.COLUMNS[:-2])
    times["kind"] = ["GPU" if d.startswith("cuda") else "CPU" for d in times.device]
    times["clock"] = ["cpu"] * 3 + ["wall", "cpu", "wall"]   # the second DGR run: a wall time
    cfg = config.load("config/config.yaml", {"methods": {EXP: ["none", "ewc", "si", "dgr_distill"]}, "seeds": {EXP: 2}})
    est = cost.estimate(cfg, times=times)
    # none: 10 + 30 + 20 (its mean, class); ewc: 60 in each scenario; si: the experiment's mean over
    # its CPU-timed runs (300/4); dgr_distill: its method class's (DGR's) CPU-timed 200 in each scenario
    assert est[EXP]["runs"] == 24 and est[EXP]["kind"] == "CPU" and est[EXP]["measured"] == 5
    assert est[EXP]["hours"] == pytest.approx(2 * (60 + 180 + 225 + 600) / 3600)
    # without CPU times, the wall times count: si at (10 + 30 + 60 + 200 + 500)/5, dgr_distill at 350
    walls = cost.estimate(cfg, times=times.assign(clock="wall"))
    assert walls[EXP]["hours"] == pytest.approx(2 * (60 + 180 + 3 * 160 + 3 * 350) / 3600)
    assert est["split_cifar_si17"]["hours"] is None
    assert "not measured" in cost.summary(cfg, [], times) and "all present" in cost.summary(cfg, [], times)
    quick = config.load("config/config.yaml", {"preset": "quick"})
    assert cost.estimate(quick, times=times)[EXP]["hours"] is None


def test_cost_reads_the_training_time_of_every_committed_run(tmp_path):
    """Each run file gives its device and summed training time: a CPU run's CPU time where it has
    it for every task, else its wall time, and a GPU job's wall time. A rerun beside it is not a
    run of its own, and a file without them is named."""
    from clrepro import cost
    run = {"experiment": EXP, "scenario": "task", "method": "dgr_distill", "method_class": "dgr",
           "seconds_per_task": [1.5, 2.5], "cpu_seconds_per_task": [1.0, 2.0], "provenance": {"device": "cuda:H100"}}
    folder = tmp_path / EXP / "task" / "dgr_distill"
    folder.mkdir(parents=True)
    (folder / "seed0.json").write_text(json.dumps(run))
    (folder / "seed0.rerun.json").write_text(json.dumps({**run, "seconds_per_task": [100.0]}))
    cpu = {**run, "provenance": {"device": "cpu:x"}}
    (folder / "seed1.json").write_text(json.dumps(cpu))
    (folder / "seed2.json").write_text(json.dumps({**cpu, "cpu_seconds_per_task": [None, 2.0]}))
    (folder / "seed3.json").write_text(json.dumps({k: v for k, v in cpu.items() if k != "cpu_seconds_per_task"}))
    times = cost.measured_times(tmp_path)
    assert times.values.tolist() == [[EXP, "task", "dgr_distill", "dgr", 4.0, "cuda:H100", "GPU", "wall"],
                                     [EXP, "task", "dgr_distill", "dgr", 3.0, "cpu:x", "CPU", "cpu"],
                                     [EXP, "task", "dgr_distill", "dgr", 4.0, "cpu:x", "CPU", "wall"],
                                     [EXP, "task", "dgr_distill", "dgr", 4.0, "cpu:x", "CPU", "wall"]]
    assert cost.measured_times(tmp_path / "absent").empty
    (folder / "seed1.json").write_text(json.dumps({**run, "provenance": {}}))
    with pytest.raises(ValueError, match=r"dgr_distill/seed1\.json"):
        cost.measured_times(tmp_path)


@pytest.mark.slow
def test_the_installed_package_validates_with_the_schemas_it_ships(tmp_path):
    """Installed from a wheel, away from the repository, the package reads its own schemas: a
    configuration is validated (defaults filled) and a wrong one refused, naming the key."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-cache-dir", "--target", str(site), str(REPO)], check=True, timeout=600, cwd=tmp_path)
    shutil.rmtree(REPO / "build", ignore_errors=True)
    code = ("import sys, clrepro.config as c; assert c.__file__.startswith(sys.argv[1]), c.__file__; "
            "cfg = c.load(sys.argv[2]); assert cfg['audit']['alpha'] == 0.05; "
            "c.validate({'experiments': [], 'audit': {'alpha': 'high'}}, 'config.schema.yaml', 'mine.yaml')")
    proc = subprocess.run([sys.executable, "-c", code, str(site), str(REPO / "config" / "config.yaml")],
                          capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""},
                          timeout=300)
    assert proc.returncode == 1 and "ConfigError: mine.yaml: audit.alpha" in proc.stderr, proc.stderr[-2000:]

