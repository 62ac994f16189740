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


def write_record(out, rows: list[dict], device: torch.device, threads: int, repo, **about) -> None:
    """Write a benchmark's ``rows`` to ``out`` (JSON) with what measured them: ``about`` (the
    protocol), the device, threads, package versions, machine and git commit of ``repo``."""
    import json
    import platform
    from pathlib import Path

    from clrepro import provenance
    record = {**about, "device": provenance.device_description(device), "threads": threads,
              "packages": provenance.package_versions(), "machine": platform.machine(),
              "git": provenance.git_commit(repo), "results": rows}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=1))
