"""What one training step of an MLP costs beside its matrix products, part by part.

For the split-MNIST network (784-400-400-10, batch 128) and the permuted-MNIST one
(1024-1000-1000-10), each part is timed alone, with the same shapes and thread count:

- ``products``: the step's matrix products (``bench_split_mnist.step_products_per_second``): the floor;
- ``forward_backward``: forward, cross-entropy and backward of ``torch.nn`` layers, with the
  gradients set to None first: the products plus the bias, ReLU and loss work around them;
- ``by_hand``: the same gradients without autograd, derived by hand into preallocated buffers
  (``addmm`` with the bias, ReLU in place; softmax minus the one-hot targets over the batch, then
  per layer the weight and bias gradients and the input gradient masked where the unit was off),
  checked against autograd's: what is left once autograd's bookkeeping is gone;
- ``gather``: ``index_select`` of a batch of rows from a task's training set;
- ``adam_<kernel>``: PyTorch's Adam update alone on the network's parameters, for each kernel
  (``foreach``, ``fused``; ``compiled`` is the foreach update under ``torch.compile``).

The sum of the faster of ``forward_backward`` and ``by_hand``, ``gather`` and ``adam`` over
``products`` is the lowest ratio to the floor that a step written with these PyTorch kernels can
reach, whatever the code around it.

    python benchmarks/bench_step_parts.py --threads 1 --out benchmarks/results/step_parts_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bench_split_mnist import mlp, step_products_per_second
from timing import calls_per_second, write_record

REPO = Path(__file__).resolve().parents[1]
NETWORKS = {"split_mnist": [784, 400, 400, 10], "permuted_mnist": [1024, 1000, 1000, 10]}


def adam_step_per_second(net: torch.nn.Module, kernel: str, device: torch.device, seconds: float) -> float:
    """Adam updates per second on ``net``'s parameters, with fixed random gradients."""
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, **({"fused": True} if kernel == "fused" else {"foreach": True}))
    step = opt.step
    if kernel == "compiled":
        step = torch.compile(opt.step)
    return calls_per_second(step, device, seconds, warmup=20)


def by_hand_step(net: torch.nn.Sequential, xb: torch.Tensor, yb: torch.Tensor):
    """A step's forward and backward written out (module docstring); returns the function and
    the gradients it writes, one (weight, bias) pair per layer."""
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    W, b = [m.weight.detach() for m in layers], [m.bias.detach() for m in layers]
    batch = xb.shape[0]
    h = [torch.empty(batch, w.shape[0], dtype=xb.dtype, device=xb.device) for w in W]
    g = [torch.empty_like(a) for a in h]
    grads = [(torch.empty_like(w), torch.empty_like(c)) for w, c in zip(W, b)]
    onehot = torch.nn.functional.one_hot(yb, W[-1].shape[0]).to(xb.dtype) / batch

    def step():
        a = xb
        for i, (w, c) in enumerate(zip(W, b)):
            torch.addmm(c, a, w.T, out=h[i])
            if i < len(W) - 1:
                h[i].clamp_min_(0)
            a = h[i]
        torch.softmax(h[-1], 1, out=g[-1])         # d(mean cross-entropy)/d(logits)
        g[-1].div_(batch).sub_(onehot)
        for i in reversed(range(len(W))):
            torch.mm(g[i].T, xb if i == 0 else h[i - 1], out=grads[i][0])
            torch.sum(g[i], 0, out=grads[i][1])
            if i:
                torch.mm(g[i], W[i], out=g[i - 1])
                g[i - 1].masked_fill_(h[i - 1] == 0, 0)
    return step, grads


def parts(dims: list[int], batch: int, kernels: list[str], device: torch.device, seconds: float) -> dict[str, float]:
    """Milliseconds per step of each part (module docstring)."""
    net = mlp(dims).to(device)
    x = torch.rand(12000, dims[0], device=device)
    y = torch.randint(0, dims[-1], (12000,), device=device)
    idx = torch.randint(0, 12000, (batch,), device=device)
    xb, yb = x.index_select(0, idx), y.index_select(0, idx)

    def forward_backward():
        for p in net.parameters():
            p.grad = None
        torch.nn.functional.cross_entropy(net(xb), yb).backward()

    by_hand, grads = by_hand_step(net, xb, yb)
    forward_backward()
    by_hand()
    for m, (gw, gb) in zip([m for m in net if isinstance(m, torch.nn.Linear)], grads):
        torch.testing.assert_close((gw, gb), (m.weight.grad, m.bias.grad))
    ms = {"products": 1e3 / step_products_per_second(dims, batch, device, seconds),
          "forward_backward": 1e3 / calls_per_second(forward_backward, device, seconds),
          "by_hand": 1e3 / calls_per_second(by_hand, device, seconds),
          "gather": 1e3 / calls_per_second(lambda: (x.index_select(0, idx), y.index_select(0, idx)), device, seconds)}
    for kernel in kernels:
        ms[f"adam_{kernel}"] = 1e3 / adam_step_per_second(net, kernel, device, seconds)
    return ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    p.add_argument("--kernels", nargs="+", default=["foreach", "fused"], choices=["foreach", "fused", "compiled"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=3.0, help="timing window of each part")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "step_parts_cpu.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows = []
    for name in a.networks:
        t0 = time.perf_counter()
        ms = parts(NETWORKS[name], a.batch, a.kernels, device, a.seconds)
        row = {"network": name, "dims": NETWORKS[name], "batch": a.batch,
               **{f"ms_{k}": round(v, 4) for k, v in ms.items()}}
        for kernel in a.kernels:
            lowest = min(ms["forward_backward"], ms["by_hand"]) + ms["gather"] + ms[f"adam_{kernel}"]
            row[f"lowest_ratio_{kernel}"] = round(lowest / ms["products"], 3)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_record(a.out, rows, device, a.threads, REPO)   # the device line names the CPU


if __name__ == "__main__":
    main()
