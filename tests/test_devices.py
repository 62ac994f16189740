"""Each concurrent training process gets a GPU of its own (lock files; no CUDA needed to test)."""
import os
import subprocess
import sys
import textwrap

import pytest

from clrepro.devices import claim_gpu

CLAIM = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from clrepro.devices import claim_gpu
    print(claim_gpu(int(sys.argv[1]), Path(sys.argv[2]), timeout=float(sys.argv[3])), flush=True)
    time.sleep(float(sys.argv[4]))
""")


def claimant(n, lock_dir, timeout=10.0, hold=3.0, visible=None, per_gpu=None):
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("CLREPRO_JOBS_PER_GPU", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    if per_gpu is not None:
        env["CLREPRO_JOBS_PER_GPU"] = per_gpu
    return subprocess.Popen([sys.executable, "-c", CLAIM, str(n), str(lock_dir), str(timeout), str(hold)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_processes_get_distinct_gpus(tmp_path):
    procs = [claimant(2, tmp_path) for _ in range(2)]
    claimed = sorted(int(p.communicate(timeout=60)[0]) for p in procs)
    assert claimed == [0, 1]


def test_a_process_waits_while_every_gpu_is_taken_and_a_killed_holder_frees_it(tmp_path):
    holder = claimant(1, tmp_path, hold=60.0)
    assert holder.stdout.readline().strip() == "0"
    with pytest.raises(RuntimeError, match="no free GPU"):
        claim_gpu(1, tmp_path, timeout=1.5)
    holder.kill()                       # the OS releases the lock of a killed process
    holder.wait()
    assert claim_gpu(1, tmp_path, timeout=10) == 0


def test_jobs_given_different_gpus_by_slurm_do_not_wait_on_each_other(tmp_path):
    """Slurm gives each job one GPU, which each sees as index 0: the locks follow the physical
    GPU, so both start at once; two jobs on the same physical GPU still exclude each other."""
    a = claimant(1, tmp_path, hold=30.0, visible="1")
    b = claimant(1, tmp_path, timeout=5.0, hold=0.0, visible="GPU-3f2a")
    assert a.stdout.readline().strip() == "0"
    assert b.communicate(timeout=60)[0].strip() == "0" and b.returncode == 0
    c = claimant(1, tmp_path, timeout=1.5, hold=0.0, visible="1")
    assert c.wait(timeout=60) != 0 and "no free GPU" in c.stderr.read()
    a.kill()
    a.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu1.lock", "gpuGPU-3f2a.lock"]


def test_jobs_per_gpu_share_each_gpu_spread_over_the_gpus_first(tmp_path, monkeypatch):
    """With CLREPRO_JOBS_PER_GPU=2 and two GPUs, the first two jobs take one GPU each, the next
    two share them, and a fifth waits."""
    holders = []
    for expected in (0, 1, 0, 1):                     # one after another: each gets the least shared
        holders.append(claimant(2, tmp_path, hold=60.0, per_gpu="2"))
        assert holders[-1].stdout.readline().strip() == str(expected)
    fifth = claimant(2, tmp_path, timeout=1.5, hold=0.0, per_gpu="2")
    assert fifth.wait(timeout=60) != 0 and "no free GPU" in fifth.stderr.read()
    for h in holders:
        h.kill()
        h.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu0.1.lock", "gpu0.lock", "gpu1.1.lock", "gpu1.lock"]
    monkeypatch.setenv("CLREPRO_JOBS_PER_GPU", "0")
    with pytest.raises(ValueError, match="CLREPRO_JOBS_PER_GPU='0'"):
        claim_gpu(1, tmp_path, timeout=1.0)
