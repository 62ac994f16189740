"""What produced a result: code version, package versions, device."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

PACKAGES = ("torch", "torchvision", "numpy", "snakemake", "pandas", "seaborn")


def git_commit(path: str | os.PathLike = ".") -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, timeout=20)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": "unknown", "dirty": None}
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src", "config", "workflow")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu:{cpu} ({torch.get_num_threads()} threads)"


SCHEDULER_VARS = ("SLURM_JOB_ID", "SLURM_CLUSTER_NAME", "SLURM_RESTART_COUNT", "CUDA_VISIBLE_DEVICES",
                  "CLREPRO_JOBS_PER_GPU")


def collect(device: torch.device, repo: str | os.PathLike = ".") -> dict:
    return {"git": git_commit(repo), "packages": package_versions(), "device": device_description(device),
            "hostname": platform.node(),
            "scheduler": {k: os.environ[k] for k in SCHEDULER_VARS if k in os.environ}}
