"""Seconds per split-MNIST run per method against the compute floor of the protocol.

floor = the run's steps x the seconds that the matrix products of one step take alone. A step
computes, per linear layer of in x out, the forward product, the weight gradient and (for every
layer but the first, whose input is the data) the input gradient: 2 x batch x in x out FLOPs each
(``models.flops_per_sample(..., training=True)``, for the GFLOP/s column). The products are timed
with the same shapes, memory layouts and thread count. Goal: None/EWC/SI within 1.5x of the floor
on CPU.

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


def step_products_per_second(dims: list[int], batch: int, device: torch.device, seconds: float = 3.0) -> float:
    """How many times a second the matrix products of one training step of an MLP with layer sizes
    ``dims`` run, in the memory layouts autograd uses (weights stored out x in)."""
    mats = []
    for a, b in zip(dims[:-1], dims[1:]):
        x, w, g = (torch.randn(batch, a, device=device), torch.randn(b, a, device=device),
                   torch.randn(batch, b, device=device))
        mats.append((x, w, g))

    def step():
        for i, (x, w, g) in enumerate(mats):
            x @ w.T          # forward
            g.T @ x          # gradient w.r.t. the weights
            if i:
                g @ w        # gradient w.r.t. the input (autograd skips it for the data)

    return calls_per_second(step, device, seconds, warmup=20)


def mlp(dims: list[int]) -> torch.nn.Sequential:
    """Linear layers of sizes ``dims`` with ReLU between them, in ``torch.nn``'s plainest form."""
    layers = [m for a, b in zip(dims[:-1], dims[1:]) for m in (torch.nn.Linear(a, b), torch.nn.ReLU())]
    return torch.nn.Sequential(*layers[:-1])


def bare_loop_seconds(dims: list[int], batch: int, steps: int, kernel: str, device: torch.device) -> float:
    """Seconds of ``steps`` steps of the plainest PyTorch loop on the same network and batch size:
    gather a batch, ``zero_grad()``, forward, cross-entropy, backward, Adam. No method, no
    evaluation, no bookkeeping: what the machine allows beside the matrix products."""
    gen = torch.Generator().manual_seed(0)
    net = mlp(dims).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, **{kernel: True})
    x, y = torch.randn(12000, dims[0], device=device), torch.randint(0, dims[-1], (12000,), device=device)
    order = torch.randint(0, 12000, (steps, batch), generator=gen).to(device)
    t0 = time.perf_counter()
    for idx in order:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x.index_select(0, idx)), y.index_select(0, idx)).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["none", "ewc", "si", "online_ewc", "joint", "lwf", "mas", "l2"])
    p.add_argument("--scenario", default="task")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--adam", nargs="+", default=["foreach"], choices=["foreach", "fused"],
                   help="Adam's update kernels to measure (the training setting `adam`)")
    p.add_argument("--denormals", nargs="+", default=["flush"], choices=["keep", "flush"],
                   help="denormal numbers kept or flushed to zero (the training setting `denormals`)")
    p.add_argument("--iters", type=int, help="iterations per task (default: the paper's 2000)")
    p.add_argument("--no-bare", action="store_true", help="skip the bare PyTorch loop's row")
    p.add_argument("--data", default=str(REPO / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "split_mnist_cpu.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data.fetch("mnist", a.data)
    cfg = config.load(REPO / "config" / "config.yaml", {"data": {"root": a.data}})
    device = torch.device(a.device)
    rows = []
    for method, kernel, mode in ((m, k, d) for m in a.methods for k in a.adam for d in a.denormals):
        spec = config.resolve(cfg, config.Run("split_mnist_vdv19", a.scenario, method, 0))
        if a.iters:
            spec["iters_per_task"] = a.iters
            spec["spec_hash"] = config.spec_hash(spec)
        dims = [784, *spec["model"]["hidden"], 10]
        steps = 5 * spec["iters_per_task"]
        step_flops = spec["batch_size"] * models.flops_per_sample(models.build(spec["model"], (784,), 10), (784,),
                                                                 training=True)
        rate = step_products_per_second(dims, spec["batch_size"], device)
        t0 = time.perf_counter()
        result = train.run(spec, Path("/tmp") / f"bench-{method}.json", device=a.device, threads=a.threads,
                           adam_kernel=kernel, denormals=mode)
        wall = time.perf_counter() - t0
        train_s = sum(result["seconds_per_task"])
        floor = steps / rate
        rows.append({"method": method, "adam": kernel, "denormals": mode, "scenario": a.scenario, "iters_per_task": spec["iters_per_task"],
                     "seconds_run": round(wall, 2), "seconds_training": round(train_s, 2),
                     "flops": steps * step_flops, "gemm_gflops": round(step_flops * rate / 1e9, 1),
                     "floor_seconds": round(floor, 2), "ratio_to_floor": round(train_s / floor, 3),
                     "acc": round(100 * result["metrics"]["acc"], 2)})
        print(json.dumps(rows[-1]), flush=True)
    if not a.no_bare:   # the same steps without clrepro: the loop any code would need
        for kernel in a.adam:
            rate = step_products_per_second(dims, spec["batch_size"], device)
            bare = bare_loop_seconds(dims, spec["batch_size"], steps, kernel, device)
            rows.append({"method": "bare PyTorch loop", "adam": kernel, "iters_per_task": spec["iters_per_task"],
                         "seconds_training": round(bare, 2), "flops": steps * step_flops,
                         "gemm_gflops": round(step_flops * rate / 1e9, 1), "floor_seconds": round(steps / rate, 2),
                         "ratio_to_floor": round(bare * rate / steps, 3)})
            print(json.dumps(rows[-1]), flush=True)
    write_record(a.out, rows, device, a.threads, REPO)


if __name__ == "__main__":
    main()
