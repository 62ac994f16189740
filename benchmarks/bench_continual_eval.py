"""The cost of continual evaluation (``continual_eval``: the accuracy on every task seen, every k
iterations, on a fixed test subset) in a split-MNIST Class-IL run (van de Ven & Tolias protocol,
MLP 784-400-400, batch 128): per setting, the seconds spent evaluating (timed around each
evaluation, so the share holds on a loaded machine too) against the rest of the run.

    python benchmarks/bench_continual_eval.py --threads 1 --out benchmarks/results/continual_eval_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from clrepro import config, data, train
from timing import write_record

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [(1, 2000), (10, 1000), (10, 200), (50, 1000), (100, 1000)]   # (every k iterations, test samples per task)


def timed_evaluations() -> list[float]:
    """Time every ``ContinualEval.record`` from now on; returns the list the seconds go to."""
    seconds, record = [], train.ContinualEval.record

    def timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        record(self, *args, **kwargs)
        seconds.append(time.perf_counter() - t0)

    train.ContinualEval.record = timed
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="none")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, default=400, help="iterations per task (the paper's: 2000)")
    p.add_argument("--data", default=str(REPO / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "continual_eval_cpu.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data.fetch("mnist", a.data)
    cfg = config.load(REPO / "config" / "config.yaml", {"data": {"root": a.data}})
    base = config.resolve(cfg, config.Run("split_mnist_vdv19", "class", a.method, 0))
    base["iters_per_task"] = a.iters
    rows, evaluating = [], timed_evaluations()
    for every, subset in [(None, None), *SETTINGS]:
        evaluating.clear()
        spec = dict(base)
        if every:
            spec["continual_eval"] = {"every": every, "test_subset": subset, "window": 10}
            spec["seeds"] = dict(base["seeds"], eval=0)
        spec["spec_hash"] = config.spec_hash(spec)
        result = train.run(spec, Path("/tmp") / "bench-continual-eval.json", device=a.device, threads=a.threads)
        seconds, evaluation = sum(result["seconds_per_task"]), sum(evaluating)
        rows.append({"every": every, "test_subset": subset, "seconds_run": round(seconds, 2),
                     "evaluations": len(evaluating), "seconds_evaluating": round(evaluation, 2),
                     "overhead": round(evaluation / (seconds - evaluation), 3)})
        print(json.dumps(rows[-1]), flush=True)
    write_record(a.out, rows, torch.device(a.device), a.threads, REPO, method=a.method, scenario="class",
                 iters_per_task=a.iters)


if __name__ == "__main__":
    main()
