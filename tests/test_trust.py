"""Results nobody can forge, corrupt or leave stale: checkpoints load as plain tensors only and are
checked against their recorded sha256; a run's identity covers its data and training code, not
where they live; the data training reads are verified; a non-finite loss stops the run; a
committed result is never replaced; each failure names the file or key."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest
import torch

from clrepro import aggregate, config, data, metrics, provenance, stale, store, train
from clrepro.devices import select_device
from conftest import REPO
from mnist_format import write_mnist
from test_resume import EXP, make_spec, run


@pytest.fixture(scope="module")
def cfg(tiny_mnist, tmp_path_factory):
    mirror, checksums = tiny_mnist
    root = tmp_path_factory.mktemp("trust") / "data"
    data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)
    return config.load(REPO / "config" / "config.yaml",
                       {"preset": "quick", "data": {"root": str(root), "checksums": checksums}})


class Payload:
    """What a forged checkpoint could carry: unpickling it would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def forge(ckpt, marker):
    """Replace a checkpoint's state by a pickle with a payload, with a meta.json that matches it."""
    state = torch.load(ckpt / "state.pt", weights_only=True)
    torch.save(dict(state, payload=Payload(marker)), ckpt / "state.pt")
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["state_sha256"] = hashlib.sha256((ckpt / "state.pt").read_bytes()).hexdigest()
    (ckpt / "meta.json").write_text(json.dumps(meta))


def test_a_forged_pickle_never_runs_neither_on_resume_nor_in_verify(cfg, tmp_path):
    spec = make_spec(cfg, "class", "lwf", iters=10)
    full = run(spec, tmp_path / "full.json")
    ckpt, marker = tmp_path / "ckpt", tmp_path / "pwned"
    run(spec, tmp_path / "r.json", ckpt, stop=1)
    forge(ckpt / "task-01", marker)
    again = run(spec, tmp_path / "r.json", ckpt)      # refused: the run starts again from scratch
    assert not marker.exists()
    assert again["resumed"] is False and again["R"] == full["R"]

    local = config.Config(dict(cfg, checkpoints=str(tmp_path / "store")), cfg.file)
    local.experiments = {EXP: config.Experiment(EXP, dict(cfg.experiments[EXP], iters_per_task=10,
                                                          batch_size=16, train_subset=None, model=spec["model"]))}
    spec = config.resolve(local, config.Run(EXP, "task", "none", 0))
    folder = tmp_path / "store" / "quick" / EXP / "task" / "none" / "seed0"
    run(spec, tmp_path / "v.json", folder)
    forge(folder / "task-04", marker)
    with pytest.raises(RuntimeError, match="missing or not reproducing"):
        store.verify_checkpoints(local, [tmp_path / "v.json"], tmp_path / "v.csv")
    assert not marker.exists()
    status = (tmp_path / "v.csv").read_text()
    assert "refused" in status and "state.pt" in status


def test_a_changed_state_file_is_refused_and_the_run_starts_again(cfg, tmp_path):
    spec = make_spec(cfg, "class", "ewc", iters=10)
    full = run(spec, tmp_path / "full.json")
    ckpt = tmp_path / "ckpt"
    run(spec, tmp_path / "r.json", ckpt, stop=2)
    state = ckpt / "task-02" / "state.pt"
    raw = bytearray(state.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = os.urandom(64)          # random bytes inside a tensor
    state.write_bytes(bytes(raw))
    again = run(spec, tmp_path / "r.json", ckpt)
    assert again["resumed"] is False and again["R"] == full["R"] and again["train_loss"] == full["train_loss"]


def test_a_non_finite_loss_stops_the_run_naming_it_and_the_step(cfg, tmp_path):
    spec = make_spec(cfg, "task", "none", iters=10)
    spec["optimizer"] = {"name": "sgd", "lr": 1e30}
    spec["spec_hash"] = config.spec_hash(spec)
    with pytest.raises(train.NonFiniteLoss, match=rf"run {EXP}/task/none/quick/0: .* by step \d+ of task 1"):
        run(spec, tmp_path / "r.json", tmp_path / "ckpt")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("damage", ["inverted", "truncated", "empty"])
def test_a_damaged_unpacked_file_is_refused_naming_it_and_download_repairs_it(tiny_mnist, tmp_path, damage):
    mirror, checksums = tiny_mnist
    root = tmp_path / "data"
    data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)
    name = "train-labels-idx1-ubyte" if damage == "truncated" else "train-images-idx3-ubyte"
    plain = root / "MNIST" / "raw" / name
    good = data.load("mnist", root, train=True, checksums=checksums)
    raw = plain.read_bytes()
    plain.write_bytes({"inverted": raw[:16] + bytes(255 - b for b in raw[16:]), "truncated": raw[: len(raw) // 2],
                       "empty": b""}[damage])
    with pytest.raises(data.ChecksumError, match=rf"{plain}.*clrepro download mnist"):
        data.load("mnist", root, train=True, checksums=checksums)
    data.load("mnist", root, train=False, checksums=checksums)      # the test split reads other files
    data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)
    again = data.load("mnist", root, train=True, checksums=checksums)
    assert torch.equal(again.x, good.x) and torch.equal(again.y, good.y)


def test_a_checkpoint_of_other_data_or_other_training_code_is_not_resumed(cfg, tmp_path, monkeypatch):
    """After a dataset is repaired (here: replaced by other files with their own checksums), or the
    training code changed, the run's checkpoints are set aside: it trains again from scratch."""
    spec = make_spec(cfg, "domain", "si", iters=10)
    ckpt = tmp_path / "ckpt"
    run(spec, tmp_path / "a.json", ckpt, stop=1)

    other_root = tmp_path / "other"
    checksums = write_mnist(tmp_path / "mirror", n_train_per_class=30, n_test_per_class=10, seed=1)
    data.fetch("mnist", other_root, mirror=str(tmp_path / "mirror"), checksums=checksums)
    repaired = dict(spec, data={"root": str(other_root), "checksums": checksums})
    repaired["spec_hash"] = config.spec_hash(repaired)
    fresh = run(repaired, tmp_path / "fresh.json")
    again = run(repaired, tmp_path / "b.json", ckpt)
    assert again["resumed"] is False and again["R"] == fresh["R"]
    assert again["provenance"]["data"] == {f"mnist/{f}": md5 for f, md5 in checksums.items()}

    run(spec, tmp_path / "c.json", ckpt, stop=1)
    monkeypatch.setattr(provenance, "training_code", lambda: "0" * 16)
    assert run(spec, tmp_path / "d.json", ckpt)["resumed"] is False


def git(cwd, *args):
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_committed_result_is_never_replaced_and_a_different_rerun_is_shown_beside_it(cfg, tmp_path):
    spec = make_spec(cfg, "task", "none", iters=10)
    repo = tmp_path / "repo"
    out = repo / "runs" / "seed0.json"
    run(spec, out)
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", "result", "--allow-empty")
    git(repo, "add", "runs/seed0.json")
    git(repo, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", "result")

    committed = out.read_bytes()
    out.unlink()                                      # what Snakemake does before a forced rerun
    run(spec, out)                                    # same numbers: the record stays as it was
    assert out.read_bytes() == committed and not (repo / "runs" / "seed0.rerun.json").exists()

    record = json.loads(committed)
    record["R"][-1][0] -= 0.25                        # a record that this code no longer reproduces
    record["metrics"] = metrics.summary(record["R"], record["random_init"])
    out.write_text(json.dumps(record))
    git(repo, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-am", "other numbers")
    committed = out.read_bytes()
    out.unlink()
    result = run(spec, out)
    assert out.read_bytes() == committed
    rerun = json.loads((repo / "runs" / "seed0.rerun.json").read_text())
    assert rerun["R"] == result["R"] != record["R"]
    runs = aggregate.runs_table(aggregate.load_results([out]))
    assert runs.rerun_acc[0] == pytest.approx(100 * sum(result["R"][-1]) / 5)
    assert runs.acc[0] == pytest.approx(100 * sum(record["R"][-1]) / 5)


def test_stale_tells_results_of_the_current_training_code_from_others(cfg, tmp_path):
    spec = make_spec(cfg, "task", "none", iters=5)
    result = run(spec, tmp_path / "current.json")
    assert result["provenance"]["training_code"] == provenance.training_code()
    other = dict(result, provenance=dict(result["provenance"], training_code="f" * 16))
    unknown = dict(result, provenance={k: v for k, v in result["provenance"].items() if k != "training_code"}
                   | {"git": {"commit": "unknown", "dirty": None}})
    for name, r in (("other", other), ("unknown", unknown)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    table = stale.table([tmp_path / f"{n}.json" for n in ("current", "other", "unknown")])
    assert table.training_code.tolist() == ["current", "other", "unknown"]
    earlier = next(iter(provenance.EQUIVALENT_TRAINING_CODE), None)
    if earlier:                                       # code shown bit-identical counts as current
        assert provenance.code_status(earlier, provenance.training_code()) == "current"


def test_a_full_disk_while_checkpointing_names_the_checkpoint(cfg, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 512 vs 448")

    monkeypatch.setattr(train.torch, "save", full)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(train.CheckpointError, match=rf"{ckpt / 'task-00'} \(is the disk full\?\)"):
        run(make_spec(cfg, "task", "none", iters=5), tmp_path / "r.json", ckpt)
    assert list(ckpt.iterdir()) == []


def test_the_device_is_validated_with_the_config(tmp_path):
    with pytest.raises(config.ConfigError, match="device"):
        config.load(REPO / "config" / "config.yaml", {"device": "gpu"})
    with pytest.raises(ValueError, match="'gpu' is not a device"):
        select_device("gpu")


def test_the_resolved_configuration_keeps_every_override(tmp_path):
    overrides = {"preset": "quick", "checkpoints": "elsewhere", "seeds": {"split_mnist_si17": 3},
                 "experiments": ["split_mnist_si17"], "audit": {"alpha": 0.01}}
    direct = config.load(REPO / "config" / "config.yaml", overrides)
    merged = {k: v for k, v in direct.items() if not k.startswith("_")}
    path = config.write_resolved(merged, REPO / "config" / "config.yaml", tmp_path / "a b")
    assert config.write_resolved(merged, REPO / "config" / "config.yaml", tmp_path / "a b") == path
    again = config.load(path)
    assert again["checkpoints"] == "elsewhere" and again["audit"]["alpha"] == 0.01 and again["preset"] == "quick"
    assert config.runs(again) == config.runs(direct)
    moved = tmp_path / "elsewhere.yaml"
    shutil.copy(path, moved)                          # found through config_dir, wherever it lies
    assert config.runs(config.load(moved)) == config.runs(direct)


def test_bit_identity_compares_the_tiny_runs_of_two_versions_of_the_training_code(tiny_mnist, tmp_path, monkeypatch):
    """The evidence behind ``EQUIVALENT_TRAINING_CODE``: each version of the code runs the tiny
    grid in a process of its own (here one experiment, against the checked-out commit)."""
    from clrepro import equivalence
    mirror, checksums = tiny_mnist
    data.fetch("mnist", tmp_path / "data", mirror=str(mirror), checksums=checksums)
    monkeypatch.setattr(equivalence, "EXPERIMENTS", ("split_mnist_si17",))
    found = equivalence.compare("HEAD", str(REPO / "config" / "config.yaml"),
                                {"root": str(tmp_path / "data"), "checksums": checksums}, REPO,
                                steps=3, fraction=1.0, batch=16)
    assert found["runs"] == 5 and found["new"] == [] and found["current"] == provenance.training_code()
    assert found["earlier"] == provenance.training_code_at("HEAD", REPO)
    if found["earlier"] == found["current"]:         # a clean checkout: the same code, the same numbers
        assert found["differ"] == []
