"""Checkpointing and resumption of the training loop on a tiny MNIST: an interrupted run, resumed
from its checkpoint, ends with exactly the numbers of an uninterrupted one."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clrepro import cli, config, data, train
from clrepro import worker as warm
from clrepro.methods import REGISTRY
from clrepro.methods.base import defaults
from conftest import REPO

EXP = "split_mnist_vdv19"


@pytest.fixture(scope="module")
def data_root(tiny_mnist, tmp_path_factory):
    mirror, checksums = tiny_mnist
    root = tmp_path_factory.mktemp("resume") / "data"
    data.fetch("mnist", root, mirror=str(mirror), checksums=checksums)
    return root, checksums


@pytest.fixture(scope="module")
def cfg(data_root):
    root, checksums = data_root
    return config.load(REPO / "config" / "config.yaml",
                       {"preset": "quick", "data": {"root": str(root), "checksums": checksums}})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


EXTRA = {"scratch": {}, "er": {"per_class": 3, "selection": "reservoir"},
         "er_herding": {"per_class": 3, "selection": "herding"}, "agem": {"per_class": 3, "selection": "reservoir"},
         "icarl": {"budget": 20}, "dgr": {"latent": 8}, "dgr_distill": {"latent": 8, "distill": True},
         "bir_internal": {"latent": 8, "internal": 1, "gating": 0.2}, "crumb": {"budget": 20, "blocks": 16},
         "crumb_separate": {"budget": 20, "blocks": 16, "replay_step": "separate"}}
MODELS = {"bir_internal": {"type": "mlp", "hidden": [32, 16]}, "crumb": {"type": "mlp", "hidden": [32, 16]},
          "crumb_separate": {"type": "mlp", "hidden": [32, 16]},
          "cln": {"type": "mlp", "hidden": [16, 16], "capacity": [216, 216]}}   # 4 births of 50


def make_spec(cfg, scenario, method, seed=0, iters=25):
    """A quick spec of split MNIST; the methods of ``EXTRA`` (not in the experiment) are
    fine-tuning's spec with that method."""
    spec = config.resolve(cfg, config.Run(EXP, scenario, "none" if method in EXTRA else method, seed))
    if method in EXTRA:
        cls = REGISTRY[method.split("_")[0]]
        spec.update(method=method, method_class=cls.name, hyperparameters=defaults(cls.hyperparameters) | EXTRA[method])
    spec["iters_per_task"] = iters
    spec["train_subset"] = None
    spec["batch_size"] = 16            # 60 training images per task in the tiny MNIST
    spec["model"] = MODELS.get(method, {"type": "mlp", "hidden": [32]})
    spec["spec_hash"] = config.spec_hash(spec)
    return spec


def run(spec, out, ckpt=None, stop=None, **kw):
    return train.run(spec, out, ckpt, device="cpu", threads=1, stop_after_task=stop, **kw)


def folder_entries(folder):
    return sorted(p.name for p in folder.iterdir())


CASES = [("task", "none"), ("class", "none"), ("task", "ewc"), ("class", "ewc"), ("domain", "si"),
         ("class", "si"), ("task", "lwf"), ("class", "lwf"), ("task", "joint"), ("domain", "online_ewc"),
         ("task", "scratch"), ("class", "er"), ("task", "er_herding"), ("domain", "agem"), ("class", "icarl"),
         ("task", "dgr"), ("class", "dgr_distill"), ("domain", "bir"), ("class", "bir_internal"), ("class", "cln"),
         ("task", "xdg"), ("class", "crumb"), ("class", "crumb_separate")]


@pytest.mark.parametrize("scenario,method", CASES)
def test_resumed_run_equals_uninterrupted(cfg, tmp_path, scenario, method):
    spec = make_spec(cfg, scenario, method)
    full = run(spec, tmp_path / "full.json")
    assert (tmp_path / "full.json").is_file()
    assert full["resumed"] is False and len(full["R"]) == 5 and all(len(r) == 5 for r in full["R"])
    assert json.loads((tmp_path / "full.json").read_text())["R"] == full["R"]

    ckpt = tmp_path / "ckpt"
    out = tmp_path / "resumed.json"
    assert run(spec, out, ckpt, stop=1) == {}
    assert not out.exists()                                     # interrupted: no result yet
    assert folder_entries(ckpt) == ["task-01"]
    meta = json.loads((ckpt / "task-01" / "meta.json").read_text())
    assert meta["task"] == 1 and meta["spec_hash"] == spec["spec_hash"]
    assert meta["R"] == full["R"][:2]

    resumed = run(spec, out, ckpt)
    assert resumed["resumed"] is True
    assert resumed["R"] == full["R"]
    assert resumed["random_init"] == full["random_init"]
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["metrics"] == full["metrics"]
    assert resumed.get("method_log") == full.get("method_log")      # e.g. the units CLN grew
    assert json.loads(out.read_text())["R"] == full["R"]
    # only the last task's checkpoint, nothing temporary
    assert folder_entries(ckpt) == ["task-04"]
    assert folder_entries(ckpt / "task-04") == ["meta.json", "state.pt"]


@pytest.mark.parametrize("scenario,method", CASES)
def test_resumed_inside_a_task_equals_uninterrupted(cfg, tmp_path, scenario, method):
    """Stopped 7 steps into task 2 (the sampler has crossed two epochs of the tiny task), resumed:
    the numbers of an uninterrupted run, down to the training loss."""
    spec = make_spec(cfg, scenario, method)
    full = run(spec, tmp_path / "full.json")
    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    run(spec, out, ckpt, stop=1)
    with pytest.raises(train.Preempted, match="step 7 of task 2"):
        run(spec, out, ckpt, stop_after_step=7)
    assert folder_entries(ckpt) == ["task-02-step-0000007"] and not out.exists()
    meta = json.loads((ckpt / "task-02-step-0000007" / "meta.json").read_text())
    assert meta["task"] == 2 and meta["step"] == 7 and len(meta["R"]) == 2
    resumed = run(spec, out, ckpt)
    assert resumed["resumed"] is True
    assert resumed["R"] == full["R"] and resumed["train_loss"] == full["train_loss"]
    assert resumed.get("method_log") == full.get("method_log")
    assert folder_entries(ckpt) == ["task-04"]


def test_cpu_time_leaves_out_the_waiting(cfg, tmp_path, monkeypatch):
    """Per task, a run records its wall time and its process's CPU time: waiting (here a sleep in
    every step, as a paused run or one crowded off its core waits) counts in the first only. Both
    carry over a resumption inside a task; a checkpoint without CPU times leaves those tasks None."""
    spec = make_spec(cfg, "task", "none", iters=10)
    learn = train.learn
    monkeypatch.setattr(train, "learn", lambda *a, **k: time.sleep(0.03) or learn(*a, **k))
    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    with pytest.raises(train.Preempted):
        run(spec, out, ckpt, stop_after_step=4)
    r = run(spec, out, ckpt)
    assert len(r["cpu_seconds_per_task"]) == 5
    for wall, cpu in zip(r["seconds_per_task"], r["cpu_seconds_per_task"]):
        assert 0 < cpu and wall - cpu > 0.9 * 10 * 0.03      # ten sleeps, four before the stop

    shutil.rmtree(ckpt)
    run(spec, out, ckpt, stop=1)
    meta = json.loads((ckpt / "task-01" / "meta.json").read_text())
    del meta["cpu_seconds"]                                   # as written before CPU times were kept
    (ckpt / "task-01" / "meta.json").write_text(json.dumps(meta))
    r = run(spec, out, ckpt)
    assert r["resumed"] and r["cpu_seconds_per_task"][:2] == [None, None]
    assert all(c > 0 for c in r["cpu_seconds_per_task"][2:])


def test_timed_checkpoints_keep_only_the_latest(cfg, tmp_path):
    """A timer shorter than a step checkpoints after every step: still one checkpoint, nothing
    temporary, the same numbers; leftovers of a killed writer are swept on resumption."""
    spec = make_spec(cfg, "task", "si", iters=10)
    full = run(spec, tmp_path / "full.json")
    ckpt = tmp_path / "ckpt"
    with pytest.raises(train.Preempted):
        run(spec, tmp_path / "r.json", ckpt, checkpoint_every=1e-9, stop_after_step=4)
    assert folder_entries(ckpt) == ["task-00-step-0000004"]
    (ckpt / ".tmp-killed").mkdir()
    (ckpt / ".tmp-killed" / "state.pt").write_bytes(b"half")
    resumed = run(spec, tmp_path / "r.json", ckpt, checkpoint_every=1e-9)
    assert resumed["R"] == full["R"] and resumed["train_loss"] == full["train_loss"]
    assert resumed.get("method_log") == full.get("method_log")
    assert folder_entries(ckpt) == ["task-04"]


def test_checkpoint_order():
    names = ["task-01", "task-02-step-0000003", "task-02-step-0000010", "task-00", "task-02"]
    ordered = sorted((Path(n) for n in names), key=train._ckpt_order)
    assert [p.name for p in ordered] == ["task-00", "task-01", "task-02-step-0000003",
                                         "task-02-step-0000010", "task-02"]


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """A warm worker (``clrepro worker``), as the workflow starts one: {env var: its socket}, and
    its log (it says which jobs it ran and which it refused)."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    proc, path = warm.start(log)
    yield {warm.ENV: path}, log
    warm.stop(proc, path)


def await_checkpoint(ckpt, pattern, proc, timeout=120):
    """Wait until ``ckpt`` holds a checkpoint matching ``pattern`` while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while not any(ckpt.glob(pattern)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
        time.sleep(0.05)


def train_command(spec, out, ckpt=None):
    return ([sys.executable, "-m", "clrepro", "train", "--spec", json.dumps(spec), "--out", str(out),
             "--device", "cpu", "--threads", "1", "--checkpoint-every", "0"]
            + (["--checkpoints", str(ckpt)] if ckpt else []))


def test_a_job_of_the_worker_is_the_job_run_alone(cfg, tmp_path, worker):
    """A job forked from the warm worker writes the result of a run in a process of its own, bit
    for bit (its dataset verified and decoded in the worker), its log goes where the job's stderr
    goes, and its exit status is the job's."""
    env, log = worker
    spec = make_spec(cfg, "class", "ewc")
    alone = run(spec, tmp_path / "alone.json")
    out = tmp_path / "r.json"
    done = subprocess.run(train_command(spec, out), env=os.environ | env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "clrepro.train INFO task 5:" in done.stderr
    result = json.loads(out.read_text())
    for key in ("R", "train_loss", "random_init", "metrics", "method_log", "spec_hash"):
        assert result.get(key) == alone.get(key), key
    assert result["provenance"]["training_code"] == alone["provenance"]["training_code"]
    bad = dict(spec, optimizer={"name": "rmsprop", "lr": 0.1})
    failed = subprocess.run(train_command(bad, tmp_path / "bad.json"), env=os.environ | env,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2 and "optimizer.name: unknown optimizer 'rmsprop'" in failed.stderr
    assert not (tmp_path / "bad.json").exists()
    assert log.read_text().count("forked job") == 2, log.read_text()
    # the dataset was verified and decoded in the worker once, for both jobs (the numbers above)
    assert log.read_text().count("verified and decoded mnist") == 1, log.read_text()


def test_a_worker_runs_no_job_with_code_it_did_not_import(tmp_path):
    """After the package's files change, the worker refuses the job and ``clrepro train`` runs it
    in its own process: a job never runs code other than what is on disk."""
    package = tmp_path / "clrepro"
    shutil.copytree(REPO / "src" / "clrepro", package, ignore=shutil.ignore_patterns("__pycache__"))
    env = os.environ | {"PYTHONPATH": str(tmp_path)}
    proc, path = warm.start(tmp_path / "worker.log", env)
    env[warm.ENV] = path
    try:
        with open(package / "metrics.py", "a") as f:
            f.write("\n# changed\n")
        done = subprocess.run([sys.executable, "-m", "clrepro", "train", "--help"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "--spec" in done.stdout
        said = (tmp_path / "worker.log").read_text()
        assert "refused a job" in said and "forked" not in said, said
    finally:
        warm.stop(proc, path)


def test_a_job_outlives_no_dead_worker(cfg, tmp_path):
    """The worker killed outright while a job runs: the job's ``clrepro train`` stops the job with
    SIGTERM (it checkpoints) and waits for it to end before failing, so a retry never trains the
    same run beside it."""
    server, path = warm.start(tmp_path / "worker.log")
    ckpt = tmp_path / "ckpt"
    client = subprocess.Popen(train_command(make_spec(cfg, "class", "si", iters=3000), tmp_path / "r.json", ckpt),
                              stderr=subprocess.PIPE, text=True, env=os.environ | {warm.ENV: path})
    await_checkpoint(ckpt, "task-00", client)
    server.kill()
    server.wait()
    err = client.communicate(timeout=180)[1]
    assert client.returncode == 1 and "ended before its job" in err and "received SIGTERM" in err, err
    assert any(ckpt.glob("task-0*-step-*")) and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("via", ["process", "worker"])
def test_sigterm_checkpoints_and_exits_for_a_retry(cfg, tmp_path, via, request):
    """The real signal: ``clrepro train`` gets SIGTERM in the middle of training, saves a
    checkpoint, exits with 143; the retry finishes with the numbers of an uninterrupted run. The
    same through a worker: the job's ``clrepro train`` passes the signal to the forked job. The
    checkpoint folder's ``train.log`` keeps both attempts' logs, in order."""
    env = os.environ | (request.getfixturevalue("worker")[0] if via == "worker" else {})
    spec = make_spec(cfg, "class", "si", iters=400)
    full = run(spec, tmp_path / "full.json")
    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    proc = subprocess.Popen(train_command(spec, out, ckpt), stderr=subprocess.PIPE, text=True, env=env)
    await_checkpoint(ckpt, "task-01*", proc)          # well into training
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    assert "received SIGTERM" in err and not out.exists()
    left, log = folder_entries(ckpt)
    assert left.startswith("task-0") and log == cli.TRAIN_LOG
    subprocess.run(train_command(spec, out, ckpt), env=env, check=True, capture_output=True, timeout=300)
    resumed = json.loads(out.read_text())
    assert resumed["resumed"] is True
    lines = (ckpt / cli.TRAIN_LOG).read_text().splitlines()
    said = [next(i for i, line in enumerate(lines) if text in line) for text in
            ("received SIGTERM", f"checkpointed in {ckpt}", "resuming ", "task 5:", f"finished: {out}")]
    starts = [i for i, line in enumerate(lines) if f"{cli.ATTEMPT} {out}" in line]
    assert len(starts) == 2 and starts[0] < said[0] < said[1] < starts[1] < said[2] < said[3] < said[4], lines
    assert not any("no closing record" in line for line in lines)
    assert resumed["R"] == full["R"] and resumed["train_loss"] == full["train_loss"]
    assert resumed.get("method_log") == full.get("method_log")


def test_train_log_names_a_killed_attempt_and_keeps_a_failed_one(cfg, tmp_path):
    """An attempt killed outright (SIGKILL) writes no closing record: the next attempt names it and
    its last record. A failed attempt closes with its error in ``train.log``, which stderr shows
    once (as ``clrepro train: error:``); the attempt after it has nothing to report."""
    spec = make_spec(cfg, "class", "si", iters=400)
    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    proc = subprocess.Popen(train_command(spec, out, ckpt), stderr=subprocess.DEVNULL)
    await_checkpoint(ckpt, "task-00*", proc)
    proc.kill()
    proc.wait()
    killed_last = (ckpt / cli.TRAIN_LOG).read_text().splitlines()[-1]
    failed = subprocess.run(train_command(spec, out, ckpt) + ["--adam", "fused"], capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 2 and failed.stderr.count("Adam's foreach kernel") == 1, failed.stderr
    subprocess.run(train_command(spec, out, ckpt), check=True, capture_output=True, timeout=300)
    lines = (ckpt / cli.TRAIN_LOG).read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if f"{cli.ATTEMPT} {out}" in line]
    unclosed = [i for i, line in enumerate(lines) if "left no closing record" in line]
    assert len(starts) == 3 and unclosed == [starts[1] + 1], lines
    assert lines[unclosed[0]].endswith(f"its last record: {killed_last}") and lines[starts[1] - 1] == killed_last
    closing = [i for i, line in enumerate(lines) if f"{cli.attempts.name} ERROR failed: ValueError: adam:" in line]
    assert len(closing) == 1 and starts[1] < closing[0] < starts[2], lines
    assert lines[-1].endswith(f"finished: {out}")


def test_a_killed_client_stops_its_job_with_a_checkpoint(cfg, tmp_path, worker):
    """``clrepro train`` killed outright (SIGKILL: it cannot pass the signal on): the worker sees its
    connection close and sends the job SIGTERM, which checkpoints and ends it."""
    spec = make_spec(cfg, "class", "si", iters=3000)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(train_command(spec, tmp_path / "r.json", ckpt), stderr=subprocess.PIPE,
                            env=os.environ | worker[0])
    await_checkpoint(ckpt, "task-00", proc)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while not any(ckpt.glob("task-0*-step-*")):    # the job's own checkpoint on SIGTERM, inside a task
        assert time.monotonic() < deadline, folder_entries(ckpt)
        time.sleep(0.05)
    assert not (tmp_path / "r.json").exists()


def test_sigterm_without_a_checkpoint_folder_ends_the_run_at_once(cfg, tmp_path):
    """With nothing to save, SIGTERM keeps its default: the run does not carry on to its end."""
    spec = make_spec(cfg, "task", "none", iters=3000)
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "clrepro", "train", "--spec", json.dumps(spec), "--out", str(out),
           "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:                   # after task 1 of 5
        if "task 1:" in line:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM and not out.exists()


def test_learns_something(cfg, tmp_path):
    """Sanity of the tiny data: the current task is learnt well above chance in Task-IL."""
    result = run(make_spec(cfg, "task", "none", iters=30), tmp_path / "r.json")
    assert result["R"][-1][-1] > 0.8
    assert result["train_loss"][0] < 0.69       # below ln 2, the loss of guessing in a 2-way head


def test_resume_twice_and_after_finish(cfg, tmp_path):
    spec = make_spec(cfg, "class", "ewc")
    full = run(spec, tmp_path / "full.json")
    ckpt = tmp_path / "ckpt"
    assert run(spec, tmp_path / "r.json", ckpt, stop=0) == {}
    assert folder_entries(ckpt) == ["task-00"]
    assert run(spec, tmp_path / "r.json", ckpt, stop=2) == {}
    assert folder_entries(ckpt) == ["task-02"]
    resumed = run(spec, tmp_path / "r.json", ckpt)
    assert resumed["R"] == full["R"] and resumed["train_loss"] == full["train_loss"]
    assert resumed.get("method_log") == full.get("method_log")
    # a finished run's checkpoint: no training left, same numbers
    again = run(spec, tmp_path / "again.json", ckpt)
    assert again["resumed"] is True and again["R"] == full["R"]
    assert again["train_loss"] == full["train_loss"]


def test_checkpoint_of_other_spec_is_ignored(cfg, tmp_path):
    spec_a = make_spec(cfg, "task", "si", iters=25)
    spec_b = make_spec(cfg, "task", "si", iters=26)
    assert spec_a["spec_hash"] != spec_b["spec_hash"]
    ckpt = tmp_path / "ckpt"
    run(spec_a, tmp_path / "a.json", ckpt, stop=2)
    assert folder_entries(ckpt) == ["task-02"]

    fresh_b = run(spec_b, tmp_path / "b0.json")
    b = run(spec_b, tmp_path / "b.json", ckpt)
    assert b["resumed"] is False
    assert b["R"] == fresh_b["R"] and b["train_loss"] == fresh_b["train_loss"]
    assert len(b["train_loss"]) == 5
    # the foreign checkpoint was replaced by b's own
    assert folder_entries(ckpt) == ["task-04"]
    assert json.loads((ckpt / "task-04" / "meta.json").read_text())["spec_hash"] == spec_b["spec_hash"]


def test_data_location_does_not_change_identity(cfg, data_root, tmp_path):
    """A checkpoint stays valid when the data move (data is not part of the spec hash)."""
    spec = make_spec(cfg, "domain", "lwf")
    ckpt = tmp_path / "ckpt"
    run(spec, tmp_path / "x.json", ckpt, stop=1)
    import shutil
    moved_root = tmp_path / "moved"
    shutil.copytree(data_root[0], moved_root)
    moved = dict(spec, data={"root": str(moved_root), "checksums": spec["data"]["checksums"]})
    assert config.spec_hash(moved) == spec["spec_hash"]
    assert run(moved, tmp_path / "y.json", ckpt)["resumed"] is True


def test_train_subset_is_deterministic_fraction(cfg):
    spec = make_spec(cfg, "task", "none")
    spec["train_subset"] = 0.5
    a, b = train.build_benchmark(spec), train.build_benchmark(spec)
    assert sum(len(t) for t in a.train) == 150                  # int(300 * 0.5)
    assert all(torch.equal(x.x, y.x) for x, y in zip(a.train, b.train))
    assert sum(len(t) for t in a.test) == 100                   # the test set is never reduced


def test_train_subset_is_class_stratified(cfg):
    spec = make_spec(cfg, "task", "none")
    spec["train_subset"] = 0.5
    bench = train.build_benchmark(spec)
    counts = torch.cat([t.p for t in bench.train]).bincount(minlength=10)
    assert counts.tolist() == [15] * 10                          # 30 per class -> 15 each


def test_epochs_per_task_and_si17_model_options(cfg, tmp_path):
    """``epochs_per_task``: ceil(N / batch) steps per epoch of each task's data; Glorot
    initialisation with a zero output layer (the SI protocol) starts at chance on every task; an
    interrupted run resumes to the same numbers."""
    spec = make_spec(cfg, "task", "si")
    del spec["iters_per_task"]
    spec.update(epochs_per_task=3, model={"type": "mlp", "hidden": [32], "init": "glorot", "head_init": "zero"})
    spec["optimizer"]["reset_per_task"] = True
    spec["spec_hash"] = config.spec_hash(spec)
    full = run(spec, tmp_path / "full.json")
    bench = train.build_benchmark(spec)
    assert full["steps_per_task"] == [3 * math.ceil(len(t) / 16) for t in bench.train]
    assert full["random_init"] == [0.5] * 5          # zero output layer: every logit ties -> unit 0
    assert full["metrics"]["acc"] > 0.8
    ckpt = tmp_path / "ckpt"
    with pytest.raises(train.Preempted):
        run(spec, tmp_path / "r.json", ckpt, stop_after_step=5)
    assert run(spec, tmp_path / "r.json", ckpt)["R"] == full["R"]


def test_scratch_reinitialises_network_and_optimiser(cfg, tmp_path):
    """From scratch: every task starts from a fresh network (the seed's own draw, not the trained
    weights) and a fresh optimiser, so a task's accuracy right after it was trained does not
    depend on the tasks before it."""
    spec = make_spec(cfg, "task", "scratch", iters=40)
    res = run(spec, tmp_path / "s.json")
    alone = make_spec(cfg, "task", "none", iters=40)
    # task 1 alone: fine-tuning's first task is the same computation as from scratch's
    assert res["R"][0] == run(alone, tmp_path / "n.json")["R"][0]
    from clrepro import models
    from clrepro.methods import REGISTRY
    bench = train.build_benchmark(spec)
    torch.manual_seed(spec["seeds"]["init"])
    model = models.build(spec["model"], bench.input_shape, bench.n_outputs)
    method = REGISTRY["scratch"](model, bench, {}, spec["seeds"]["data"])
    before = [p.detach().clone() for p in model.parameters()]
    method.begin_task(0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # task 1: untouched
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)                                                          # "trained"
    method.begin_task(1)
    fresh = [p.detach().clone() for p in model.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, fresh))            # a new draw ...
    assert all(float(p.detach().abs().max()) <= 1 / 28 + 1e-6 for p in list(model.parameters())[:2])   # init scale
    method.begin_task(1)
    assert all(torch.equal(a, b) for a, b in zip(fresh, model.parameters()))    # seeded per task
    assert REGISTRY["scratch"].fresh_optimizer and not REGISTRY["none"].fresh_optimizer


def test_precision_choice_and_record(cfg, tmp_path):
    """auto: bf16 autocast and channels-last only for a CNN on a GPU; an explicit bf16 runs on the
    CPU too, is recorded with the result, and resumes to the same numbers."""
    mlp, cnn = {"model": {"type": "mlp"}}, {"model": {"type": "cnn"}}
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert train.execution(cnn, gpu) == {"precision": "bf16", "channels_last": True, "adam": "foreach",
                                         "denormals": "keep"}
    assert train.execution(mlp, gpu) == {"precision": "fp32", "channels_last": False, "adam": "foreach",
                                         "denormals": "keep"}
    assert train.execution(cnn, cpu, adam="fused") == {"precision": "fp32", "channels_last": False, "adam": "fused",
                                                       "denormals": "flush"}
    assert train.execution(cnn, gpu, "fp32")["precision"] == "fp32"
    with pytest.raises(ValueError, match="precision"):
        train.execution(cnn, cpu, "fp16")
    with pytest.raises(ValueError, match="adam: 'sparse'"):
        train.execution(cnn, cpu, adam="sparse")
    spec = make_spec(cfg, "task", "si", iters=10)
    full = run(spec, tmp_path / "full.json", precision="bf16")
    assert full["provenance"]["precision"] == "bf16" and full["provenance"]["channels_last"] is False
    assert run(spec, tmp_path / "fp32.json")["provenance"]["precision"] == "fp32"
    ckpt = tmp_path / "ckpt"
    with pytest.raises(train.Preempted):
        run(spec, tmp_path / "r.json", ckpt, stop_after_step=4, precision="bf16")
    assert run(spec, tmp_path / "r.json", ckpt, precision="bf16")["R"] == full["R"]


def test_resume_keeps_the_checkpoints_precision(cfg, tmp_path):
    """A run checkpointed in bf16 resumes in bf16 under ``auto`` (e.g. a GPU job retried on a CPU
    node) and refuses an explicit other precision rather than mix the two."""
    spec = make_spec(cfg, "task", "none", iters=10)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(train.Preempted):
        run(spec, tmp_path / "r.json", ckpt, stop_after_step=4, precision="bf16")
    with pytest.raises(ValueError, match="trained in bf16"):
        run(spec, tmp_path / "r.json", ckpt, precision="fp32")
    full = run(spec, tmp_path / "full.json", precision="bf16")
    resumed = run(spec, tmp_path / "r.json", ckpt)
    assert resumed["provenance"]["precision"] == "bf16" and resumed["R"] == full["R"]


def test_fused_adam_is_a_named_setting_that_resumes_as_itself(cfg, tmp_path, monkeypatch):
    """``--adam fused``: the result records it, its numbers agree with foreach's up to rounding
    (not bit for bit), and a fused checkpoint resumes, bit for bit, only as fused."""
    from clrepro.methods import base
    monkeypatch.setattr(base, "adam_kernel", base.adam_kernel)   # what the runs set, restored after
    spec = make_spec(cfg, "class", "dgr", iters=10)
    foreach = run(spec, tmp_path / "foreach.json")
    fused = run(spec, tmp_path / "fused.json", adam_kernel="fused")
    assert foreach["provenance"]["adam"] == "foreach" and fused["provenance"]["adam"] == "fused"
    assert fused["train_loss"] != foreach["train_loss"]   # another rounding: not bit for bit
    assert fused["train_loss"] == pytest.approx(foreach["train_loss"], rel=1e-3)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(train.Preempted):
        run(spec, tmp_path / "r.json", ckpt, stop_after_step=4, adam_kernel="fused")
    with pytest.raises(ValueError, match="with Adam's fused kernel"):
        run(spec, tmp_path / "r.json", ckpt)
    resumed = run(spec, tmp_path / "r.json", ckpt, adam_kernel="fused")
    assert resumed["R"] == fused["R"] and resumed["train_loss"] == fused["train_loss"]


def test_denormals_flush_on_the_cpu_as_a_named_setting_that_resumes_as_itself(cfg, tmp_path):
    """``denormals``: auto flushes on the CPU (not on a GPU); flushing turns a denormal product
    into zero; the result records the mode, and a checkpoint resumes only in its own mode."""
    cpu, gpu, mlp = torch.device("cpu"), torch.device("cuda", 0), {"model": {"type": "mlp"}}
    assert train.execution(mlp, cpu)["denormals"] == "flush" and train.execution(mlp, gpu)["denormals"] == "keep"
    assert train.execution(mlp, cpu, denormals="keep")["denormals"] == "keep"
    with pytest.raises(ValueError, match="denormals: 'zero'"):
        train.execution(mlp, cpu, denormals="zero")
    tiny = torch.tensor([1e-20], dtype=torch.float32)          # 1e-40: below float32's 1.18e-38
    try:
        train.set_denormals("keep")
        assert 0 < float(tiny * tiny) < 1.2e-38
        train.set_denormals("flush")
        assert float(tiny * tiny) == 0.0
    finally:
        train.set_denormals("keep")
    spec = make_spec(cfg, "task", "si", iters=10)
    full = {"keep": run(spec, tmp_path / "keep.json", denormals="keep"), "flush": run(spec, tmp_path / "flush.json")}
    assert {mode: r["provenance"]["denormals"] for mode, r in full.items()} == {"keep": "keep", "flush": "flush"}
    for mode, other in (("keep", "flush"), ("flush", "keep")):
        ckpt = tmp_path / f"ckpt-{mode}"
        with pytest.raises(train.Preempted):
            run(spec, tmp_path / f"r-{mode}.json", ckpt, stop_after_step=4, denormals=mode)
        with pytest.raises(ValueError, match=f"trained with denormals {mode}"):
            run(spec, tmp_path / f"r-{mode}.json", ckpt, denormals=other)
        resumed = run(spec, tmp_path / f"r-{mode}.json", ckpt)        # auto: the checkpoint's mode
        assert resumed["provenance"]["denormals"] == mode and resumed["R"] == full[mode]["R"]


def test_verify_exact_on_the_same_device_within_tolerance_on_another(cfg, tmp_path):
    """``verify`` re-evaluates a run's final checkpoint with its recorded arithmetic: the recorded
    accuracies exactly on the kind of device it was trained on; on another kind (GPU and CPU
    kernels round differently) within ``CROSS_DEVICE_TOLERANCE``, and a larger gap fails."""
    from clrepro import store
    spec = make_spec(cfg, "task", "none", iters=10)
    local = config.Config(dict(cfg, checkpoints=str(tmp_path / "ckpt")), cfg.file)
    local.experiments = {EXP: config.Experiment(EXP, dict(cfg.experiments[EXP], iters_per_task=10,
                                                          batch_size=16, train_subset=None, model=spec["model"]))}
    spec = config.resolve(local, config.Run(EXP, "task", "none", 0))
    folder = tmp_path / "ckpt" / "quick" / EXP / "task" / "none" / "seed0"
    out = tmp_path / "r.json"
    run(spec, out, folder)
    table = store.verify_checkpoints(local, [out], tmp_path / "v.csv")
    assert table.status.tolist() == ["agrees"] and table.max_abs_diff.tolist() == [0]
    result = json.loads(out.read_text())
    result["provenance"]["device"] = "cuda:NVIDIA H100"
    result["R"][-1][0] += store.CROSS_DEVICE_TOLERANCE / 2
    out.write_text(json.dumps(result))
    assert store.verify_checkpoints(local, [out], tmp_path / "v.csv").status.tolist() == [
        "agrees within tolerance (other device)"]
    result["R"][-1][0] += store.CROSS_DEVICE_TOLERANCE
    out.write_text(json.dumps(result))
    with pytest.raises(RuntimeError, match="differs"):
        store.verify_checkpoints(local, [out], tmp_path / "v.csv")


def test_sdm_resumed_inside_a_task_equals_uninterrupted(cfg, tmp_path):
    """The SDM-MLP's GABA-switch counts travel with its checkpoints (one 10-way head, clipped SGD)."""
    spec = make_spec(cfg, "class", "none")
    spec.update(model={"type": "sdm", "neurons": 64, "k": 4, "switch_after": 3000},
                optimizer={"name": "sgd", "lr": 0.05, "clip_grad_norm": 1.0},
                benchmark=dict(spec["benchmark"], outputs="all"))
    spec["spec_hash"] = config.spec_hash(spec)
    full = run(spec, tmp_path / "full.json")
    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    run(spec, out, ckpt, stop=1)
    with pytest.raises(train.Preempted):
        run(spec, out, ckpt, stop_after_step=7)
    counts = torch.load(ckpt / "task-02-step-0000007" / "state.pt", weights_only=False)["model"]["topk.count"]
    assert 0 < counts.max() < 3000                 # mid-switch
    resumed = run(spec, out, ckpt)
    assert resumed["R"] == full["R"] and resumed["train_loss"] == full["train_loss"]
    assert resumed.get("method_log") == full.get("method_log")


@pytest.mark.parametrize("scenario,method", [("class", "cln"), ("domain", "bir")])
def test_verify_rebuilds_grown_and_generative_methods(cfg, tmp_path, scenario, method):
    """A CLN checkpoint holds a grown network (the method is built before its weights load, as in
    training); BI-R's holds its generator: both re-evaluate exactly."""
    from clrepro import store
    local = config.Config(dict(cfg, checkpoints=str(tmp_path / "ckpt")), cfg.file)
    local.experiments = {EXP: config.Experiment(EXP, dict(cfg.experiments[EXP], iters_per_task=10,
                                                          batch_size=16, train_subset=None,
                                                          model={"type": "mlp", "hidden": [32]}))}
    spec = config.resolve(local, config.Run(EXP, scenario, method, 0))   # CLN: its own 200-200 of 400-400
    out = tmp_path / "r.json"
    run(spec, out, tmp_path / "ckpt" / "quick" / EXP / scenario / method / "seed0")
    table = store.verify_checkpoints(local, [out], tmp_path / "v.csv")
    assert table.status.tolist() == ["agrees"] and table.max_abs_diff.tolist() == [0]


def test_ctrl_c_checkpoints_and_says_how_to_resume(cfg, tmp_path):
    """Ctrl-C: the terminal sends SIGINT to snakemake and every job. `clrepro train` checkpoints,
    says where and that the same command resumes (the text a failed job's log shows in the
    terminal), and exits non-zero."""
    spec = make_spec(cfg, "class", "si", iters=400)
    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    cmd = [sys.executable, "-m", "clrepro", "train", "--spec", json.dumps(spec), "--out", str(out),
           "--checkpoints", str(ckpt), "--device", "cpu", "--threads", "1", "--checkpoint-every", "0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(ckpt.glob("task-01*")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == train.Preempted.exit_code, err
    assert "received SIGINT" in err and f"checkpointed in {ckpt}; rerun the same command to resume" in err, err
    assert not out.exists()
    left, _ = folder_entries(ckpt)
    assert left.startswith("task-0")


@pytest.mark.parametrize("scenario,method", [("task", "er"), ("class", "icarl")])
def test_continual_evaluation_reads_the_training_and_resumes(cfg, tmp_path, scenario, method):
    """Continual evaluation changes no number of the run, and on the whole test set its points are
    R's rows where they coincide (the end of the run; in Task-IL also a task's end, the first
    point of the next); stopped inside a task and resumed, its curve is the uninterrupted one."""
    plain = make_spec(cfg, scenario, method, iters=6)
    spec = dict(plain, continual_eval={"every": 2, "test_subset": 10_000, "window": 3})
    spec["seeds"] = dict(plain["seeds"], eval=123)
    spec["spec_hash"] = config.spec_hash(spec)
    before = run(plain, tmp_path / "plain.json")
    full = run(spec, tmp_path / "full.json")
    assert full["R"] == before["R"] and full["train_loss"] == before["train_loss"]
    ce = full["continual_eval"]
    assert ce["iteration"] == list(range(0, 31, 2)) and ce["task"] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4]
    assert [len(row) for row in ce["acc"]] == [t + 1 for t in ce["task"]]
    assert ce["acc"][-1] == full["R"][-1]
    if scenario == "task":
        assert ce["acc"][3][0] == full["R"][0][0]
    assert set(ce["metrics"]) == {"min_acc", "wc_acc", "wf"}

    ckpt, out = tmp_path / "ckpt", tmp_path / "r.json"
    run(spec, out, ckpt, stop=1)
    with pytest.raises(train.Preempted):
        run(spec, out, ckpt, stop_after_step=3)
    resumed = run(spec, out, ckpt)
    assert resumed["continual_eval"] == ce and resumed["R"] == full["R"]
