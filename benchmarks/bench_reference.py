"""Seconds per split-MNIST run: clrepro beside the authors' reference code, same protocol, one thread.

Each run is a whole process, as a user starts it (interpreter, imports, data loading, training,
evaluation): split MNIST in Task-IL, an MLP 784-400-400, Adam (lr 0.001), batch 128, 5 tasks x
2000 iterations.

- clrepro: ``clrepro train`` of ``split_mnist_vdv19`` (its own process, no worker);
- reference: GMvandeVen/continual-learning at ``REFERENCE_COMMIT``, run unchanged:
  ``main.py --experiment=splitMNIST --scenario=task [--ewc | --si] --no-gpus``, with its own
  defaults for everything else. It reads the same MNIST files, linked into its data folder.

Both run with one thread (``OMP_NUM_THREADS=1``), interleaved (clrepro, reference, clrepro, ...),
so that a change in the machine's load falls on both. The reference code is cloned into
``benchmarks/reference/`` (ignored by git), or read from ``--reference`` (a checkout).

    python benchmarks/bench_reference.py --out benchmarks/results/reference_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from clrepro import data
from timing import write_record

REPO = Path(__file__).resolve().parents[1]
REFERENCE_URL = "https://github.com/GMvandeVen/continual-learning"
REFERENCE_COMMIT = "e6d795aa81b9cef742b8de76cb71222d4d1ce00b"
METHOD_FLAGS = {"none": [], "ewc": ["--ewc"], "si": ["--si"]}   # the reference's options for each method


def reference_checkout(path: str | None) -> Path:
    """The reference code at ``REFERENCE_COMMIT``: ``path`` if given, else a clone in benchmarks/reference."""
    if path:
        return Path(path)
    tree = REPO / "benchmarks" / "reference"
    if not (tree / "main.py").exists():
        subprocess.run(["git", "clone", "--quiet", REFERENCE_URL, str(tree)], check=True)
    subprocess.run(["git", "-C", str(tree), "checkout", "--quiet", REFERENCE_COMMIT], check=True)
    return tree


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(METHOD_FLAGS), choices=list(METHOD_FLAGS))
    p.add_argument("--repeats", type=int, default=1, help="runs of each method by each code")
    p.add_argument("--adam", default="foreach", choices=["foreach", "fused"], help="clrepro's Adam kernel")
    p.add_argument("--denormals", default="auto", choices=["auto", "keep", "flush"],
                   help="clrepro's denormal numbers (auto: flushed on the CPU)")
    p.add_argument("--reference", help="a checkout of the reference code (default: clone it)")
    p.add_argument("--data", default=str(REPO / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "reference_cpu.json"))
    a = p.parse_args()
    torch.set_num_threads(1)   # as the runs' processes (recorded with the device)
    data.fetch("mnist", a.data)
    reference = reference_checkout(a.reference)
    env = {k: v for k, v in os.environ.items() if k != "CLREPRO_WORKER"} | {"OMP_NUM_THREADS": "1",
                                                                            "MKL_NUM_THREADS": "1"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        linked = Path(tmp) / "data" / "MNIST" / "MNIST"   # where the reference looks: <data-dir>/MNIST/MNIST/raw
        linked.mkdir(parents=True)
        (linked / "raw").symlink_to(Path(a.data, "MNIST", "raw").resolve())
        for method in a.methods:
            ours, theirs, acc_ours, acc_theirs = [], [], None, None
            for seed in range(1, a.repeats + 1):
                out = Path(tmp) / f"{method}-{seed}.json"
                seconds, _ = timed([sys.executable, "-m", "clrepro", "train", "--config", "config/config.yaml",
                                    "--experiment", "split_mnist_vdv19", "--scenario", "task", "--method", method,
                                    "--seed", str(seed), "--data-root", a.data, "--out", str(out), "--threads", "1",
                                    "--device", "cpu", "--adam", a.adam, "--denormals", a.denormals], REPO, env)
                ours.append(seconds)
                result = json.loads(out.read_text())
                acc_ours, denormals = 100 * result["metrics"]["acc"], result["provenance"]["denormals"]
                seconds, log = timed([sys.executable, "main.py", "--experiment=splitMNIST", "--scenario=task",
                                      *METHOD_FLAGS[method], "--no-gpus", f"--seed={seed}",
                                      f"--data-dir={Path(tmp) / 'data'}", f"--results-dir={tmp}",
                                      f"--model-dir={tmp}"], reference, env)
                theirs.append(seconds)
                found = re.search(r"average accuracy over all 5 contexts: ([0-9.]+)", log)
                acc_theirs = 100 * float(found.group(1)) if found else None
            row = {"method": method, "adam": a.adam, "denormals": denormals, "seconds_clrepro": round(sum(ours) / len(ours), 1),
                   "seconds_reference": round(sum(theirs) / len(theirs), 1),
                   "speedup": round(sum(theirs) / sum(ours), 2), "acc_clrepro_last_seed": round(acc_ours, 2),
                   "acc_reference_last_seed": acc_theirs and round(acc_theirs, 2), "repeats": a.repeats}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'method':8} {'clrepro (s)':>12} {'reference (s)':>14} {'speed-up':>9}")
    for r in rows:
        print(f"{r['method']:8} {r['seconds_clrepro']:12.1f} {r['seconds_reference']:14.1f} {r['speedup']:8.2f}x")
    write_record(a.out, rows, torch.device("cpu"), 1, REPO, reference=f"{REFERENCE_URL}@{REFERENCE_COMMIT}",
                 protocol="split MNIST, Task-IL, MLP 784-400-400, Adam lr 0.001, batch 128, 5 x 2000 iterations; "
                          "whole processes")


if __name__ == "__main__":
    main()
