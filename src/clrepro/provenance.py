"""What produced a result: code version, package versions, device."""
from __future__ import annotations

import fnmatch
import hashlib
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


# -- the training code a result was made by --------------------------------------------------------
#: the package's modules on the training path: what can change a run's numbers beside its spec and
#: data (the spec's resolution, the analysis, the report and the command line cannot)
TRAINING_CODE = ("data.py", "metrics.py", "models.py", "scenarios.py", "train.py", "methods/*.py")
PACKAGE = Path(__file__).resolve().parent

#: fingerprints of earlier training code shown bit-identical to the current one (tiny runs of every
#: method before and after gave the same R and losses, bit for bit): results they made count as
#: made by the current code. Each entry says what the change was.
EQUIVALENT_TRAINING_CODE = {
    "c17a55c6ef120625": "the training code up to ffae70c; the next version adds the checkpoints' sha256 and "
                        "weights-only loading, the finite-loss check, the verification of the MNIST files read, "
                        "and the permuted benchmark's pad and permute_first (absent: as before). `clrepro "
                        "bit-identity --against ffae70c`: 95 tiny runs, every method and scenario of the five "
                        "MNIST experiments, stopped and resumed, gave the same R, losses, untrained accuracies "
                        "and method logs, bit for bit",
    "7b9bca9fe501486a": "the training code up to 443733f; the next version adds continual evaluation (off unless "
                        "an experiment sets continual_eval), the rotated benchmark and incremental joint training. "
                        "`clrepro bit-identity --against 443733f`: 98 tiny runs, every method and scenario of the "
                        "five MNIST experiments, stopped and resumed, gave the same R, losses, untrained accuracies "
                        "and method logs, bit for bit",
    "e2e06f03fc3a9700": "the training code up to 88248ba; the next version updates Adam with its multi-tensor "
                        "(foreach) kernels and gathers a batch's rows with index_select. `clrepro bit-identity "
                        "--against 91b815a`: 98 tiny runs, every method and scenario of the five MNIST experiments, "
                        "stopped and resumed, gave the same R, losses, untrained accuracies and method logs, bit "
                        "for bit",
    "3d1bf03cdce10e4b": "the training code up to b020d09; the next version makes Adam's update kernel a named "
                        "setting (adam: foreach, as before, or fused), recorded with each result. `clrepro "
                        "bit-identity --against b020d09`: 98 tiny runs, every method and scenario of the five MNIST "
                        "experiments, stopped and resumed, gave the same R, losses, untrained accuracies and method "
                        "logs, bit for bit",
    "88b681153825cb29": "the training code up to 9c5950f; the next version adds XdG and passes each task's index "
                        "to a method's scores. `clrepro bit-identity --against 9c5950f`: 98 tiny runs, every method "
                        "and scenario of the five MNIST experiments, stopped and resumed, gave the same R, losses, "
                        "untrained accuracies and method logs, bit for bit (XdG's runs are new)",
    "27036ca3d0325575": "the training code of b8515ff; the next versions let a method take its own benchmark, add "
                        "CRUMB, SGD's weight decay, epochs_first_task and record the memory a method holds and the "
                        "peak RAM. `clrepro bit-identity --against b8515ff`: 99 tiny runs, every method and scenario "
                        "of the five MNIST experiments, stopped and resumed, gave the same R, losses, untrained "
                        "accuracies and method logs, bit for bit (the CRUMB experiment's runs are new)",
    "f4d6d9c773f4f386": "the training code of 9bdab10 (the A-GEM variants' runs); the next versions add CRUMB, "
                        "SGD's weight decay, epochs_first_task and record the memory a method holds and the peak "
                        "RAM. `clrepro bit-identity --against 9bdab10`: 101 tiny runs, bit-identical (the CRUMB "
                        "experiment's runs are new)",
    "869d889ea017eef1": "the training code of 9e34d2e (split MNIST seeds 6-7); the next versions add SqueezeNet "
                        "from pretrained weights, CORe50 and its class-instance ordering, and Net.stem. `clrepro "
                        "bit-identity --against 9e34d2e`: 108 tiny runs, every method and scenario of the MNIST "
                        "experiments, stopped and resumed, gave the same R, losses, untrained accuracies and method "
                        "logs, bit for bit",
    "38b59e2c7b039908": "the training code of 5a34467; the next version adds optional hyperparameters, the "
                        "step_groups hook (CRUMB's replay_step), verifies pretrained weights when a network is "
                        "built and samples CORe50's frames below the 300th. `clrepro bit-identity --against "
                        "5a34467`: 108 tiny runs, every method and scenario of the MNIST experiments, stopped and "
                        "resumed, gave the same R, losses, untrained accuracies and method logs, bit for bit",
    "f51573c1a97089db": "the training code of fa7fc6f; the next versions declare the metric names once "
                        "(metrics.OF_R) and make the small idioms helpers (generator_for, frozen(model, state), "
                        "evaluating, in_chunks, classes_before). `clrepro bit-identity --against fa7fc6f`: 110 "
                        "tiny runs, every method and scenario of the MNIST experiments, stopped and resumed, gave "
                        "the same R, losses, untrained accuracies and method logs, bit for bit",
    "2b29ccd6f728bfd8": "the training code of c1a543d; the next version marks replayed batches (Batch.replayed) "
                        "instead of passing the current batches' count between hooks. `clrepro bit-identity "
                        "--against c1a543d`: 110 tiny runs, every method and scenario of the MNIST experiments, "
                        "stopped and resumed, gave the same R, losses, untrained accuracies and method logs, bit "
                        "for bit",
    "4f78de0f93661132": "the training code of f16c9c0; the next version passes every hook of a step one Step "
                        "(batches, outputs, extras) instead of method attributes, splits the loop into "
                        "train.Trainer, train.learn and train.History with build_run shared with verify, and "
                        "declares each hyperparameter once (methods.base.Hyperparameter). `clrepro bit-identity "
                        "--against f16c9c0`: 110 tiny runs, every method and scenario of the MNIST experiments, "
                        "stopped and resumed, gave the same R, losses, untrained accuracies and method logs, bit "
                        "for bit",
    "c15a45bb803dbf1d": "the training code of 0a61dbe; the next version sets gradients to None before backward "
                        "(a parameter the loss no longer reaches gets zeros, as before), checks every declared "
                        "enum when a method is built, reads clip_grad_norm once per task, and lets the warm "
                        "worker's jobs take a dataset it verified and decoded (data.preload). `clrepro "
                        "bit-identity --against 0a61dbe`: 110 tiny runs, every method and scenario of the MNIST "
                        "experiments, stopped and resumed, gave the same R, losses, untrained accuracies and "
                        "method logs, bit for bit",
    "e21a8b7d07bbaac5": "the training code up to 3d8ae78; the next version adds iCaRL's exemplars setting "
                        "(absent: herding, as before; random: the three-scenarios reference code's effective "
                        "exemplars). `clrepro bit-identity --against 3d8ae78`: 110 tiny runs, every method and "
                        "scenario of the five MNIST experiments, stopped and resumed, gave the same R, losses, "
                        "untrained accuracies and method logs, bit for bit",
    "f192803b49c12e5f": "the training code up to 3a9bbf8; the next version adds the split benchmarks' class_order "
                        "'reference' (the reference code's digit pairs per seed; absent or another order: as "
                        "before). `clrepro bit-identity --against 3a9bbf8`: 120 tiny runs, every method and "
                        "scenario of the six MNIST experiments, stopped and resumed, gave the same R, losses, "
                        "untrained accuracies and method logs, bit for bit",
    "6f9980bf5a2634d0": "the training code up to 7e10278; the next version adds the setting denormals, which "
                        "flushes denormal numbers to zero on the CPU by default (keep: as before). `clrepro "
                        "bit-identity --against 7e10278`: 138 tiny runs, every method and scenario of the six "
                        "MNIST experiments, stopped and resumed, gave the same R, losses, untrained accuracies "
                        "and method logs, bit for bit (flushed against kept); benchmarks/bench_denormals.py "
                        "found the same at paper scale (benchmarks/README.md)",
    "5a40eba2995cd7bf": "the training code of 704abe1; the next version lets DGR+distill reduce its distillation "
                        "term as LwF's (kd_reduction, optional: summed over the units unless set). `clrepro "
                        "bit-identity --against 704abe1`: 138 tiny runs, every method and scenario of the six "
                        "MNIST experiments, stopped and resumed; 135 gave the same R, losses, untrained accuracies "
                        "and method logs, bit for bit, LwF's averaged distillation (split MNIST's lwf_preprint) "
                        "among them; the other 3, permuted MNIST's LwF (32x32), differ because its configuration "
                        "changed with it (kd_reduction: mean)",
    "5a5ae04c45927b14": "the training code of 9478c0a; the next version records the denormal mode in every "
                        "checkpoint, so that a run resumes in the mode it was trained in (before, a resumed run "
                        "took keep). `clrepro bit-identity --against 9478c0a`: 141 tiny runs, every method and "
                        "scenario of the six MNIST experiments, stopped and resumed, gave the same R, losses, "
                        "untrained accuracies and method logs, bit for bit (trained flushed, the tiny runs "
                        "resumed with denormals kept under the earlier code and flushed under this one)",
    "ebe7fe2f8234fab1": "the training code up to 08dc7b2; the next version records each task's CPU time "
                        "(cpu_seconds_per_task) beside its wall time. `clrepro bit-identity --against 08dc7b2`: "
                        "141 tiny runs, every method and scenario of the six MNIST experiments, stopped and "
                        "resumed, gave the same R, losses, untrained accuracies and method logs, bit for bit",
}


def _fingerprint(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:16]


def _files(patterns) -> dict[str, bytes]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_bytes() for pattern in patterns for p in PACKAGE.glob(pattern)}


def training_code() -> str:
    """Fingerprint of the training code that runs now (the files of ``TRAINING_CODE``)."""
    return _fingerprint(_files(TRAINING_CODE))


def package_code() -> str:
    """Fingerprint of the whole package (modules, templates, schemas): the param of the rules that
    aggregate, audit, draw and report, so that a change of the code reruns them (not training)."""
    return _fingerprint(_files(("**/*.py", "**/*.j2", "**/*.yaml")))


def training_code_at(commit: str, repo: str | os.PathLike = ".") -> str | None:
    """Fingerprint of the training code of a git ``commit`` of the repository at ``repo`` (for
    results recorded before results carried one); None when git cannot tell."""
    prefix = "src/clrepro/"
    try:
        listing = subprocess.run(["git", "ls-tree", "-r", "--full-tree", "--name-only", commit, "--", prefix], cwd=repo,
                                 capture_output=True, text=True, timeout=20)
        if listing.returncode != 0:
            return None
        files = {}
        for path in listing.stdout.split():
            rel = path[len(prefix):]
            if any(fnmatch.fnmatchcase(rel, pattern) for pattern in TRAINING_CODE):
                blob = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=repo, capture_output=True, timeout=20)
                if blob.returncode != 0:
                    return None
                files[rel] = blob.stdout
        return _fingerprint(files) if files else None
    except (OSError, subprocess.SubprocessError):
        return None


def code_status(fingerprint: str | None, current: str) -> str:
    """``current`` (or made by code shown bit-identical to it), ``other`` or ``unknown``."""
    if fingerprint is None:
        return "unknown"
    return "current" if fingerprint == current or fingerprint in EQUIVALENT_TRAINING_CODE else "other"


def committed_version(path: str | os.PathLike) -> bytes | None:
    """The content of ``path`` in the last commit of the git repository holding it, or None (not in
    a repository, or not committed)."""
    path = Path(path).resolve()
    try:
        proc = subprocess.run(["git", "show", f"HEAD:./{path.name}"], cwd=path.parent, capture_output=True,
                              timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None
