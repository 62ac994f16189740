"""The auditor's flow with real DVC and a local remote: the DAG runs, `snakemake share` records
the datasets and checkpoints in DVC and pushes them; a fresh git clone plus `dvc pull` restores
them bit for bit, and the DAG then re-renders the report and verifies every checkpoint against
its recorded results without running a single training job. A fresh clone without them keeps
its committed results too."""
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import REPO, env, make_workdir, snakemake

pytestmark = pytest.mark.slow

PRESET = {"seeds": 2, "iters_per_task": 15, "batch_size": 32, "model": {"type": "mlp", "hidden": [32]}}


def sh(cwd: Path, *cmd: str) -> str:
    if cmd[0] == "dvc":
        cmd = (str(Path(sys.executable).parent / "dvc"), *cmd[1:])
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def trained(out: str) -> list[str]:
    return re.findall(r"^\s*(?:local)?rule train:", out, flags=re.M)


def test_fresh_clone_pull_rerenders_and_verifies_without_training(tiny_mnist, tmp_path):
    origin, store = tmp_path / "origin", tmp_path / "store"
    origin.mkdir()
    for name in ("Snakefile", ".gitignore", ".dvcignore"):
        shutil.copy(REPO / name, origin / name)
    for name in ("workflow", "profiles"):
        shutil.copytree(REPO / name, origin / name)
    make_workdir(origin, tiny_mnist, PRESET, methods=["none", "si"], scenarios=["task", "class"])
    sh(origin, "git", "init", "-q")
    sh(origin, "git", "config", "user.email", "maintainer@example.org")
    sh(origin, "git", "config", "user.name", "Maintainer")
    sh(origin, "dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", origin / ".dvc" / "config")     # the project's DVC set-up
    sh(origin, "dvc", "remote", "modify", "--local", "local", "url", str(store))
    smk = origin / "Snakefile"

    proc = snakemake(origin, "--cores", "2", snakefile=smk)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = snakemake(origin, "--cores", "1", "share", snakefile=smk)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = sorted(p.relative_to(origin).as_posix() for p in (origin / "data").rglob("*.dvc"))
    assert records == ["data/MNIST.dvc", "data/checkpoints/test.dvc"]
    staged = sh(origin, "git", "diff", "--cached", "--name-only").split()
    assert set(records) <= set(staged)                # autostage: ready to commit
    assert len([p for p in store.rglob("*") if p.is_file()]) > len(digests(origin / "data" / "MNIST"))
    sh(origin, "git", "add", "-A")
    sh(origin, "git", "add", "-f", "reports/test")    # results are committed (the test preset is ignored)
    sh(origin, "git", "commit", "-q", "-m", "Results, with data and checkpoints in DVC")

    # the auditor: a fresh clone, the remote, `dvc pull`
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    assert not (clone / "data" / "MNIST").exists() and not (clone / "data" / "checkpoints" / "test").exists()
    sh(clone, "dvc", "remote", "modify", "--local", "local", "url", str(store))
    sh(clone, "dvc", "pull", "-q")
    for sub in ("data/MNIST", "data/checkpoints/test"):
        assert digests(clone / sub) == digests(origin / sub), sub

    results = digests(clone / "reports" / "test" / "runs")
    (clone / "reports" / "test" / "report.html").unlink()
    shutil.rmtree(clone / "reports" / "test" / "figures")
    proc = snakemake(clone, "--cores", "2", "all", "verify", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not trained(proc.stdout + proc.stderr) and "rule report" in proc.stdout + proc.stderr
    assert digests(clone / "reports" / "test" / "runs") == results        # not one run retrained
    assert (clone / "reports" / "test" / "report.html").read_text().rstrip().endswith("</html>")
    check = pd.read_csv(clone / "reports" / "test" / "audit" / "checkpoints.csv")
    assert len(check) == len(results) == 2 * 2 * 2 and (check.status == "agrees").all()

    # every --config override reaches `verify`: the checkpoints, moved, are found where it says
    shutil.move(clone / "data" / "checkpoints", clone / "data" / "moved checkpoints")
    proc = snakemake(clone, "--cores", "1", "verify", "--forcerun", "verify", "--config",
                     "checkpoints=data/moved checkpoints", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-4000:]
    check = pd.read_csv(clone / "reports" / "test" / "audit" / "checkpoints.csv")
    assert (check.status == "agrees").all() and check.checkpoint.str.startswith("data/moved checkpoints").all()


def test_a_fresh_clones_first_command_and_forcerun_leave_committed_results_as_they_are(tiny_mnist, tmp_path):
    """The README's first command on a fresh clone (no data, no checkpoints, no Snakemake records),
    here with one more seed, downloads the data and trains only the new runs, none of the committed
    ones; `--forcerun train` retrains those and keeps each committed result byte for byte (a rerun
    with other numbers would go beside it)."""
    origin = tmp_path / "origin"
    origin.mkdir()
    for name in ("Snakefile", ".gitignore"):
        shutil.copy(REPO / name, origin / name)
    for name in ("workflow", "profiles"):
        shutil.copytree(REPO / name, origin / name)
    make_workdir(origin, tiny_mnist, PRESET, methods=["none"], scenarios=["class"])
    proc = snakemake(origin, "--cores", "2", "runs", snakefile=origin / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-4000:]
    sh(origin, "git", "init", "-q")
    sh(origin, "git", "add", "-A")
    sh(origin, "git", "add", "-f", "reports/test")
    sh(origin, "git", "-c", "user.name=M", "-c", "user.email=m@example.org", "commit", "-q", "-m", "Results")

    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    committed = digests(clone / "reports" / "test" / "runs")
    assert len(committed) == 2
    proc = snakemake(clone, "--cores", "2", "--config", "seeds=3", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert "checkpoint download_mnist" in log and len(trained(log)) == 1, log[-3000:]  # seed 2
    after = digests(clone / "reports" / "test" / "runs")
    assert {k: after[k] for k in committed} == committed

    proc = snakemake(clone, "--cores", "2", "runs", "--forcerun", "train", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(trained(proc.stdout + proc.stderr)) == len(committed)
    after = digests(clone / "reports" / "test" / "runs")
    assert {k: after[k] for k in committed} == committed
