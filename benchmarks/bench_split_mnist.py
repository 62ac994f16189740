"""Seconds per split-MNIST run per method against the compute floor of the protocol.

floor = FLOPs of the run's training steps / measured matmul throughput, where
FLOPs = tasks x iterations x 6 x batch x sum(in x out) over the linear layers (forward 2, backward
4 multiply-adds x 2) and the throughput is measured on the same GEMM shapes (forward and both
backward products) with the same thread count. Goal: None/EWC/SI within 1.5x of the floor on CPU.

    python benchmarks/bench_split_mnist.py --threads 1 --out benchmarks/results/split_mnist_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from clrepro import config, data, models, train
from timing import calls_per_second, write_record

REPO = Path(__file__).resolve().parents[1]


def gemm_throughput(dims: list[int], batch: int, device: torch.device, seconds: float = 3.0) -> float:
    """FLOP/s of the forward and backward matmuls of an MLP with layer sizes ``dims``."""
    mats = []
    for a, b in zip(dims[:-1], dims[1:]):
        x, w, g = (torch.randn(batch, a, device=device), torch.randn(b, a, device=device),
                   torch.randn(batch, b, device=device))
        mats.append((x, w, g))
    flops = sum(6 * batch * w.shape[0] * w.shape[1] for _, w, _ in mats)

    def step():
        for x, w, g in mats:
            x @ w.T          # forward
            g @ w            # gradient w.r.t. the input
            g.T @ x          # gradient w.r.t. the weights

    return flops * calls_per_second(step, device, seconds, warmup=20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["none", "ewc", "si", "online_ewc", "joint", "lwf", "mas", "l2"])
    p.add_argument("--scenario", default="task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--adam", nargs="+", default=["foreach"], choices=["foreach", "fused"],
                   help="Adam's update kernels to measure (the training setting `adam`)")
    p.add_argument("--iters", type=int, help="iterations per task (default: the paper's 2000)")
    p.add_argument("--data", default=str(REPO / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "split_mnist_cpu.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data.fetch("mnist", a.data)
    cfg = config.load(REPO / "config" / "config.yaml", {"data": {"root": a.data}})
    device = torch.device(a.device)
    rows = []
    for method, kernel in ((m, k) for m in a.methods for k in a.adam):
        spec = config.resolve(cfg, config.Run("split_mnist_vdv19", a.scenario, method, 0))
        if a.iters:
            spec["iters_per_task"] = a.iters
            spec["spec_hash"] = config.spec_hash(spec)
        dims = [784, *spec["model"]["hidden"], 10]
        mlp = models.build(spec["model"], (784,), 10)
        steps = 5 * spec["iters_per_task"]
        flops = steps * 3 * spec["batch_size"] * models.flops_per_sample(mlp, (784,))
        throughput = gemm_throughput(dims, spec["batch_size"], device)
        t0 = time.perf_counter()
        result = train.run(spec, Path("/tmp") / f"bench-{method}.json", device=a.device, threads=a.threads,
                           adam_kernel=kernel)
        wall = time.perf_counter() - t0
        train_s = sum(result["seconds_per_task"])
        floor = flops / throughput
        rows.append({"method": method, "adam": kernel, "scenario": a.scenario, "iters_per_task": spec["iters_per_task"],
                     "seconds_run": round(wall, 2), "seconds_training": round(train_s, 2),
                     "flops": flops, "gemm_gflops": round(throughput / 1e9, 1),
                     "floor_seconds": round(floor, 2), "ratio_to_floor": round(train_s / floor, 3),
                     "acc": round(100 * result["metrics"]["acc"], 2)})
        print(json.dumps(rows[-1]), flush=True)
    write_record(a.out, rows, device, a.threads, REPO)


if __name__ == "__main__":
    main()
