"""Crash safety of the whole DAG: training jobs killed with SIGKILL at random points (and once the
whole Snakemake process group, as a node failure would) and the DAG rerun with
``--rerun-incomplete`` until it completes. Every run must end with exactly the numbers of an
uninterrupted run, and nothing half-written may be left anywhere."""
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from workflow_helpers import EXP, env, make_workdir, snakemake, snakemake_cmd

from clrepro import config, train

pytestmark = pytest.mark.slow

PRESET = {"seeds": 1, "iters_per_task": 600, "batch_size": 16, "model": {"type": "mlp", "hidden": [256]}}
METHODS, SCENARIOS = ["none", "ewc", "si", "lwf"], ["task", "class"]
TRAIN_KILLS = 4


def train_pids(work: Path) -> list[int]:
    """``clrepro train`` processes started in ``work``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == str(work) and b"train" in cmd and any(c.endswith(b"clrepro") for c in cmd[:2]):
            pids.append(int(proc.name))
    return pids


def checkpoint_folder(work: Path, pid: int) -> Path | None:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    return work / cmd[cmd.index("--checkpoints") + 1] if "--checkpoints" in cmd else None


def running_training_job(work: Path, proc: subprocess.Popen, rng: random.Random) -> int | None:
    """A ``clrepro train`` process of ``work`` that has written a checkpoint and then run for a
    random while more (training ~3 s), or None once snakemake has ended. Waiting for the first
    checkpoint, not a fixed time, keeps the kills inside training however slow the start-up."""
    while proc.poll() is None:
        pids = train_pids(work)
        if pids:
            pid = rng.choice(pids)
            folder = checkpoint_folder(work, pid)
            while folder and Path(f"/proc/{pid}").exists() and not any(folder.glob("task-*")):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 2.0))
            if Path(f"/proc/{pid}").exists():
                return pid
        time.sleep(0.05)
    return None


def test_sigkilled_jobs_resume_to_identical_metrics(tiny_mnist, tmp_path):
    work = make_workdir(tmp_path / "work", tiny_mnist, PRESET, methods=METHODS, scenarios=SCENARIOS,
                        checkpoint_every_s=0.05, worker=False)   # the training processes themselves are killed
    rng = random.Random(20261121)
    log = (tmp_path / "snakemake.log").open("w")
    plan = ["job"] * TRAIN_KILLS + ["node"]      # a training job, then the node: snakemake and all
    for _attempt in range(12):
        # no retries (profiles/default has them): each kill ends the call, and the next call's
        # --rerun-incomplete picks the killed jobs up
        proc = subprocess.Popen(snakemake_cmd(work, "--cores", "2", "--rerun-incomplete", "--retries", "0"), env=env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        pid = running_training_job(work, proc, rng) if plan else None
        if pid and plan.pop(0) == "job":
            os.kill(pid, signal.SIGKILL)
        elif pid:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            assert snakemake(work, "--unlock").returncode == 0   # its lock outlived it
            continue
        if proc.wait(timeout=600) == 0 and not plan:
            break
    else:
        pytest.fail("the DAG did not complete after 12 attempts")
    assert not plan, f"the DAG completed before these kills: {plan}"

    cfg = config.load(work / "config" / "config.yaml", {"data": {"root": str(work / "data")}})
    out = work / "reports" / "test" / "runs"
    resumed = 0
    for run in config.runs(cfg):
        got = json.loads((out / f"{run.path}.json").read_text())
        if not got["resumed"]:   # trained from its first step to its last in one process
            continue
        ref = train.run(config.resolve(cfg, run), tmp_path / "ref" / f"{run.path}.json", device="cpu",
                        threads=1)
        for key in ("R", "random_init", "train_loss", "metrics", "spec_hash"):
            assert got[key] == ref[key], (run.path, key)
        resumed += 1
    assert resumed >= 1

    # nothing half-written: no temporaries, every JSON whole, the report complete
    hidden = [p for d in ("reports", "data", "logs") for p in (work / d).rglob(".*")]
    assert hidden == [], hidden
    for path in (work / "reports").rglob("*.json"):
        json.loads(path.read_text())
    assert (work / "reports" / "test" / "report.html").read_text().rstrip().endswith("</html>")
    ckpts = sorted(p.name for p in (work / "data" / "checkpoints" / "test").rglob("task-*"))
    assert ckpts and all(re.fullmatch(r"task-\d\d", n) for n in ckpts)   # finished runs end after a task
    proc = snakemake(work, "--cores", "1", "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_sigterm_preemption_is_retried_within_the_same_call(tiny_mnist, tmp_path):
    """SIGTERM (what Slurm sends before preempting) to a training job: it checkpoints and exits
    143, snakemake's retry (profiles/default) resumes it, and the call succeeds with the numbers
    of an uninterrupted run."""
    work = make_workdir(tmp_path / "work", tiny_mnist, PRESET, methods=["si"], scenarios=["class"],
                        checkpoint_every_s=0)
    proc = subprocess.Popen(snakemake_cmd(work, "--cores", "1"), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ckpt = work / "data" / "checkpoints" / "test" / EXP / "class" / "si" / "seed0"
    deadline = time.monotonic() + 300
    while not any(ckpt.glob("task-*")):               # training has begun: the handler is in place
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    (pid,) = train_pids(work)
    os.kill(pid, signal.SIGTERM)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "exit status 143" in out and "Trying to restart job" in out, out[-3000:]
    cfg = config.load(work / "config" / "config.yaml", {"data": {"root": str(work / "data")}})
    (run,) = config.runs(cfg)
    got = json.loads((work / "reports" / "test" / "runs" / f"{run.path}.json").read_text())
    ref = train.run(config.resolve(cfg, run), tmp_path / "ref.json", device="cpu", threads=1)
    assert got["resumed"] is True
    assert got["R"] == ref["R"] and got["train_loss"] == ref["train_loss"]
