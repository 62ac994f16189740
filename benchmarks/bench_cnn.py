"""Training-step throughput of the split CIFAR-10/100 network (Zenke et al. 2017) per arithmetic
setting, and what it means for a paper-scale run: 6 tasks x 60 epochs of batch 256 (CIFAR-10:
196 steps per epoch, each CIFAR-100 block of 5,000 images: 20), i.e. 17,760 steps.

Settings: fp32; on CUDA also bf16 autocast, and bf16 with channels-last memory (what the
training loop uses there, ``precision: auto``). Inputs are random tensors of CIFAR's shape kept on
the device, as the loop keeps the real ones; each step is a forward pass, the cross-entropy over
the task's 10 output units, the backward pass and Adam's update.

    python benchmarks/bench_cnn.py --device cuda --out benchmarks/results/cnn_cuda.json
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from clrepro import config, models, provenance, train
from timing import calls_per_second

REPO = Path(__file__).resolve().parents[1]
# the paper-scale protocol of config/experiments/split_cifar_si17.yaml
PROTOCOL = config.resolve(config.load(REPO / "config" / "config.yaml"),
                          config.Run("split_cifar_si17", "task", "none", 0))
SPEC = PROTOCOL["model"]
STEPS_PER_RUN = sum(train.steps_per_task(PROTOCOL, n) for n in [50_000] + [5_000] * 5)


def steps_per_second(device: torch.device, bf16: bool, channels_last: bool, batch: int,
                     seconds: float) -> float:
    torch.manual_seed(0)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = models.build(SPEC, (3, 32, 32), 60).to(device, memory_format=memory).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 32, 32, device=device).contiguous(memory_format=memory)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x)[:, 10:20], y)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    return calls_per_second(step, device, seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=PROTOCOL["batch_size"])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    settings = [("fp32", False, False)]
    if device.type == "cuda":
        settings += [("bf16", True, False), ("bf16 + channels-last", True, True)]
    flops = a.batch * models.flops_per_sample(models.build(SPEC, (3, 32, 32), 60), (3, 32, 32), training=True)
    rows = []
    for name, bf16, cl in settings:
        rate = steps_per_second(device, bf16, cl, a.batch, a.seconds)
        rows.append({"setting": name, "steps_per_s": round(rate, 2), "achieved_tflops": round(rate * flops / 1e12, 3),
                     "paper_run_hours": round(STEPS_PER_RUN / rate / 3600, 2)})
        print(rows[-1], flush=True)
    result = {"device": provenance.device_description(device),
              "threads": a.threads, "batch": a.batch, "flop_per_step": flops, "steps_per_run": STEPS_PER_RUN,
              "torch": torch.__version__, "machine": platform.processor() or platform.machine(), "rows": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
