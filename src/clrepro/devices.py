"""Device choice. Where GPUs exist each training process takes one of its own: it holds an
exclusive ``flock`` on a per-GPU lock file for its lifetime (released by the OS even if the
process is killed), so concurrent Snakemake jobs never share a GPU. Snakemake's ``gpu`` resource
bounds how many jobs run at once; ``CUDA_VISIBLE_DEVICES`` (set by Slurm) is respected."""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

import torch

LOCK_DIR = Path(os.environ.get("CLREPRO_GPU_LOCK_DIR", Path(tempfile.gettempdir()) / "clrepro-gpu-locks"))
_held: list = []   # open lock files, kept for the life of the process


def claim_gpu(n_gpus: int, lock_dir: Path = LOCK_DIR, timeout: float = 3600.0) -> int:
    """Index of a GPU no other process of this machine holds; waits while all are taken."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for i in range(n_gpus):
            f = open(lock_dir / f"gpu{i}.lock", "w")
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
    """``auto``: a GPU of its own if CUDA is available, else the CPU; or an explicit device."""
    if request != "auto":
        return torch.device(request)
    if torch.cuda.is_available():
        return torch.device("cuda", claim_gpu(torch.cuda.device_count()))
    return torch.device("cpu")
