"""Running the real Snakemake DAG from tests: a work folder with its own copy of ``config/``
(tiny MNIST mirror, a reduced preset) and ``snakemake`` in a subprocess."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXP = "split_mnist_vdv19"


def env() -> dict:
    out = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    out.pop("CLREPRO_DATA_MIRROR", None)   # the config's mirror key must be what is used
    return out


def snakemake_cmd(workdir: Path, *args: str, timeout: int = 900, snakefile: Path | None = None) -> list[str]:
    """Always under ``timeout -k``: a hung executor must fail the test, not stall it."""
    return ["timeout", "-k", "10", str(timeout), sys.executable, "-m", "snakemake", "--snakefile",
            str(snakefile or REPO / "Snakefile"), "--directory", str(workdir), "--configfile",
            str(workdir / "config" / "config.yaml"), *args]


def snakemake(workdir: Path, *args: str, timeout: int = 900, snakefile: Path | None = None
              ) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_cmd(workdir, *args, timeout=timeout, snakefile=snakefile),
                          capture_output=True, text=True, env=env(), timeout=timeout + 30)


def make_workdir(work: Path, tiny_mnist, preset: dict, *, methods: list[str] | None = None,
                 scenarios: list[str] | None = None, **top) -> Path:
    """``work/config`` = the repository's config with the "test" preset ``preset``, data from the
    tiny mirror, on the CPU; optionally fewer methods/scenarios of split MNIST; ``top``: other
    top-level keys (``experiments`` defaults to split MNIST alone, ``simulations`` to none)."""
    mirror, checksums = tiny_mnist
    top.setdefault("experiments", [EXP])
    top.setdefault("simulations", [])
    shutil.copytree(REPO / "config", work / "config")
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg.update(preset="test", data={"root": "data", "mirror": str(mirror), "checksums": checksums},
               device="cpu", **top)
    cfg["presets"]["test"] = preset
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    for name in top["simulations"]:   # a small network, one seed
        path = work / "config" / "simulations" / f"{name}.yaml"
        sim = yaml.safe_load(path.read_text())
        eq = {"n": 200, "burn_in": 300, "snapshots": 2, "every": 100}
        sim["presets"]["test"] = {"seeds": 1, "panels": {
            "forgetting": {"n": 200, "steps": 100}, "rehearsal": eq, "scaling": dict(eq, n=[100, 200]),
            "lesion": dict(eq, duration=5)}}
        path.write_text(yaml.safe_dump(sim, sort_keys=False))
    if methods or scenarios:
        path = work / "config" / "experiments" / f"{EXP}.yaml"
        exp = yaml.safe_load(path.read_text())
        if methods:
            exp["methods"] = {k: v for k, v in exp["methods"].items() if k in methods}
        if scenarios:
            exp["scenarios"] = scenarios
        path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return work


def run_experiments(work: Path, mirror: Path, checksums: dict, experiments: dict, seeds: int) -> Path:
    """``work/config`` = the repository's config running only ``experiments`` ({name: (its "test"
    preset, the methods kept or None for all)}) with ``seeds`` seeds each, on the mirror folder
    with its ``checksums``, on the CPU; then the whole DAG. Returns ``work/reports/test``."""
    shutil.copytree(REPO / "config", work / "config")
    cfg = yaml.safe_load((work / "config" / "config.yaml").read_text())
    cfg.update(preset="test", experiments=list(experiments), simulations=[], device="cpu",
               data={"root": "data", "mirror": str(mirror), "checksums": checksums})
    cfg["presets"]["test"] = {"seeds": seeds, "train_subset": None}
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    for name, (preset, methods) in experiments.items():
        path = work / "config" / "experiments" / f"{name}.yaml"
        exp = yaml.safe_load(path.read_text())
        exp["presets"]["test"] = preset
        if methods is not None:
            exp["methods"] = {k: v for k, v in exp["methods"].items() if k in methods}
        path.write_text(yaml.safe_dump(exp, sort_keys=False))
    proc = snakemake(work, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return work / "reports" / "test"
