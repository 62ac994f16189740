"""Versioned storage of the large artefacts with DVC: the downloaded datasets and the training
checkpoints. Snakemake owns the DAG; DVC only records and moves files (``dvc add``, ``dvc push``,
``dvc pull``), so a fresh clone plus ``dvc pull`` has everything the DAG made, and
:func:`verify_checkpoints` shows that the restored checkpoints give the recorded numbers."""
from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import pandas as pd
import torch

from . import config as clconfig
from . import data as datasets
from .atomic import atomic_path
from .train import build_run, evaluate, latest_checkpoint, set_denormals

log = logging.getLogger("clrepro.store")

#: accuracy (fraction) by which a re-evaluation on another kind of device may differ
CROSS_DEVICE_TOLERANCE = 0.002


def targets(cfg: dict) -> list[Path]:
    """What DVC tracks for this configuration: each dataset folder of its experiments and the
    preset's checkpoint folder (those that exist)."""
    root = Path(cfg["data"]["root"])
    found = [datasets.dataset_folder(root, n) for n in clconfig.all_datasets(cfg)]
    found.append(clconfig.checkpoint_dir(cfg))
    return [p for p in found if p.exists()]


def dvc(*args: str) -> None:
    cmd = ["dvc", *args]
    log.info("%s", " ".join(cmd))
    proc = subprocess.run(cmd, text=True, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")


def share(cfg: dict, push: bool = True, remote: str | None = None) -> list[Path]:
    """``dvc add`` the datasets and checkpoints, then ``dvc push`` them; returns the ``.dvc`` files
    to commit with git."""
    found = targets(cfg)
    if not found:
        raise FileNotFoundError("nothing to record: no dataset or checkpoint folder exists yet")
    dvc("add", *map(str, found))
    files = [p.with_name(p.name + ".dvc") for p in found]
    if push:
        dvc("push", *(["--remote", remote] if remote else []), *map(str, files))
    return files


def verify_checkpoints(cfg: dict, results: list[str | os.PathLike], out: str | os.PathLike,
                       device: str = "cpu") -> pd.DataFrame:
    """Re-evaluate each run's final checkpoint on the test set, with the arithmetic it was trained
    with, and compare with the last row of R in its result file: exactly on the kind of device it
    was trained on, within ``CROSS_DEVICE_TOLERANCE`` on another (GPU and CPU kernels round
    differently). Writes one row per run; raises if any checkpoint is missing or differs."""
    rows = []
    for path in results:
        result = json.loads(Path(path).read_text())
        run = clconfig.Run(result["experiment"], result["scenario"], result["method"], result["seed"])
        spec = clconfig.resolve(cfg, run)
        folder = clconfig.checkpoint_dir(cfg, run)
        refused = []
        found = latest_checkpoint(folder, result["spec_hash"], refused) if folder.exists() else None
        row = {"run": run.path, "spec_hash": result["spec_hash"], "checkpoint": str(folder)}
        last = len(result["R"]) - 1
        if found is None or found[0]["task"] != last or found[0].get("step") is not None:
            status = f"refused: {refused[0]}" if refused else "missing"
            rows.append(row | {"status": status, "max_abs_diff": None})
            continue
        dev = torch.device(device)
        bench, model, method, amp = build_run(spec, result["provenance"], dev)
        set_denormals(result["provenance"].get("denormals", "keep"))   # as the run was trained
        model.load_state_dict(found[1]["model"])   # after the method, as in training (CLN checks the room to grow)
        method.load_state_dict(found[1]["method"])
        with torch.autocast(**amp):
            again = evaluate(model, bench, upto=last, scores=method.scores)
        diff = max(abs(a - b) for a, b in zip(again, result["R"][-1]))
        same = result["provenance"]["device"].split(":")[0] == dev.type   # "cuda:<name>" or "cpu:<name>"
        ok = diff == 0 if same else diff <= CROSS_DEVICE_TOLERANCE
        status = ("agrees" if same else "agrees within tolerance (other device)") if ok else "differs"
        rows.append(row | {"status": status, "max_abs_diff": diff})
    table = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    bad = table[~table.status.str.startswith("agrees")]
    if len(bad):
        raise RuntimeError(f"{len(bad)} of {len(table)} checkpoints missing or not reproducing their "
                           f"results, first: {bad.iloc[0].run} ({bad.iloc[0].status}); see {out}")
    return table

