"""Paper-scale runs with denormal numbers kept and flushed to zero: seconds, and whether the numbers
are the same bit for bit (the training setting ``denormals``).

Each run (``experiment/scenario/method``, seed 0, the paper preset unless ``--iters`` shortens its
tasks) trains twice in this process on one thread, ``keep`` then ``flush``; a row records both
training times and whether R, the training losses, the untrained accuracies and the method's log
are equal.

    python benchmarks/bench_denormals.py --data data --out benchmarks/results/denormals_cpu.json \\
        --runs split_mnist_vdv19/task/none split_mnist_vdv19/class/ewc
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from clrepro import config, train
from timing import write_record

REPO = Path(__file__).resolve().parents[1]
NUMBERS = ("R", "train_loss", "random_init", "method_log")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="EXPERIMENT/SCENARIO/METHOD")
    p.add_argument("--iters", type=int, help="iterations per task (default: the paper's)")
    p.add_argument("--data", default=str(REPO / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "denormals_cpu.json"))
    a = p.parse_args()
    cfg = config.load(REPO / "config" / "config.yaml", {"data": {"root": a.data}})
    rows = []
    for name in a.runs:
        experiment, scenario, method = name.split("/")
        spec = config.resolve(cfg, config.Run(experiment, scenario, method, 0))
        if a.iters:
            spec["iters_per_task"] = a.iters
            spec["spec_hash"] = config.spec_hash(spec)
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for mode in ("keep", "flush"):
                results[mode] = train.run(spec, Path(tmp) / f"{mode}.json", device="cpu", threads=1, denormals=mode)
        keep, flush = results["keep"], results["flush"]
        rows.append({"run": name, "iters_per_task": spec["iters_per_task"],
                     "seconds_keep": round(sum(keep["seconds_per_task"]), 2),
                     "seconds_flush": round(sum(flush["seconds_per_task"]), 2),
                     "speed_up": round(sum(keep["seconds_per_task"]) / sum(flush["seconds_per_task"]), 2),
                     "bit_identical": all(keep.get(k) == flush.get(k) for k in NUMBERS)})
        print(json.dumps(rows[-1]), flush=True)
    write_record(a.out, rows, torch.device("cpu"), 1, REPO)


if __name__ == "__main__":
    main()
