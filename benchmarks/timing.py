"""Calls per second of a step function, after a warm-up, with the device synchronised."""
from __future__ import annotations

import time

import torch


def calls_per_second(step, device: torch.device, seconds: float, warmup: int = 10) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)
