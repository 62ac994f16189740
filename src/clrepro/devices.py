"""Device choice. Where GPUs exist each training process takes one of its own: it holds an
exclusive ``flock`` on a per-GPU lock file for its lifetime (released by the OS even if the
process is killed), so concurrent Snakemake jobs never share a GPU; ``$CLREPRO_JOBS_PER_GPU``
(default 1) lets that many share each one, for networks too small to fill it. Snakemake's ``gpu``
resource bounds how many jobs run at once. Under ``CUDA_VISIBLE_DEVICES`` (set by Slurm per job)
the locks are named after the physical GPUs it lists, so jobs given different GPUs never wait on
each other."""
from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from pathlib import Path

import torch

LOCK_DIR = Path(os.environ.get("CLREPRO_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "clrepro-gpu-locks"))
_held: list = []   # open lock files, kept for the life of the process


def physical_ids(n_gpus: int) -> list[str]:
    """Names of the visible GPUs: the entries of ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs),
    else ``0..n_gpus-1``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    if not ids:
        return [str(i) for i in range(n_gpus)]
    return [re.sub(r"[^A-Za-z0-9_.-]", "_", v) for v in ids[:n_gpus]]


def jobs_per_gpu() -> int:
    """How many training processes may share one GPU: ``$CLREPRO_JOBS_PER_GPU``, default 1."""
    value = os.environ.get("CLREPRO_JOBS_PER_GPU", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"CLREPRO_JOBS_PER_GPU={value!r}: expected a whole number of at least 1")
    return int(value)


def claim_gpu(n_gpus: int, lock_dir: Path = LOCK_DIR, timeout: float = 3600.0) -> int:
    """Index (among the visible GPUs) of a GPU that fewer than ``jobs_per_gpu()`` other processes
    of this machine hold, the least shared first; waits while all are full."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    ids = physical_ids(n_gpus)
    slots = [(i, f"gpu{name}.{k}.lock" if k else f"gpu{name}.lock")
             for k in range(jobs_per_gpu()) for i, name in enumerate(ids)]
    deadline = time.monotonic() + timeout
    while True:
        for i, lock_name in slots:
            f = open(lock_dir / lock_name, "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            f.write(str(os.getpid()))
            f.flush()
            _held.append(f)
            return i
        if time.monotonic() > deadline:
            raise RuntimeError(f"no free GPU among {n_gpus} after {timeout:.0f}s (locks in {lock_dir})")
        time.sleep(1.0)


def select_device(request: str = "auto") -> torch.device:
    """``auto``: a GPU of its own (or a share of one, ``jobs_per_gpu``) if CUDA is available, else
    the CPU; or an explicit device."""
    if request != "auto":
        try:
            dev = torch.device(request)
        except RuntimeError:
            raise ValueError(f"device: {request!r} is not a device (auto, cpu, cuda or cuda:N)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {request!r}, but CUDA is not available here (use auto or cpu)")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", claim_gpu(torch.cuda.device_count()))
    return torch.device("cpu")
