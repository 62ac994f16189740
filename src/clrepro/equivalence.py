"""Is the training code bit-identical to an earlier commit's? Tiny runs of every method in every
scenario of the configured experiments (seed 0, a few steps per task on a sliver of the data,
stopped after task 2 and resumed) are made with both versions of the code, each in a process of
its own, and their R, losses, untrained accuracies and method logs compared bit for bit. When they
agree, the earlier fingerprint may enter ``provenance.EQUIVALENT_TRAINING_CODE`` with the report
as its evidence, and the results it made count as made by the current code (``clrepro stale``)."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import provenance

#: the experiments whose data every machine of the project can have (no CIFAR)
EXPERIMENTS = ("split_mnist_vdv19", "permuted_mnist_vdv19", "split_mnist_si17", "permuted_mnist_si17",
               "split_mnist_sdm23", "crumb_split_mnist")


def tiny_runs(config_file: str, data: str, out: str, steps: str = "8", fraction: str = "0.02", batch: str = "0"
              ) -> None:
    """Run the tiny grid with the code importable now and write {run: numbers} to ``out``; ``data``:
    the configuration's ``data`` section as JSON; ``batch``: a batch size (0: the preset's)."""
    import torch

    from clrepro import config, train   # the clrepro on the path: this one, or an earlier commit's
    known = [e for e in EXPERIMENTS if (Path(config_file).parent / "experiments" / f"{e}.yaml").exists()]
    cfg = config.load(config_file, {"preset": "quick", "data": json.loads(data), "experiments": known, "seeds": 1})
    torch.set_num_threads(1)
    numbers = {}
    for run in config.runs(cfg):
        spec = config.resolve(cfg, run)
        spec.pop("epochs_per_task", None)
        spec.update(iters_per_task=int(steps), train_subset=float(fraction))
        spec["batch_size"] = int(batch) or spec["batch_size"]
        spec["spec_hash"] = config.spec_hash(spec)
        with tempfile.TemporaryDirectory() as tmp:
            train.run(spec, Path(tmp) / "r.json", Path(tmp) / "ckpt", device="cpu", stop_after_task=1)
            r = train.run(spec, Path(tmp) / "r.json", Path(tmp) / "ckpt", device="cpu")
        numbers[run.path] = {k: r.get(k) for k in ("R", "train_loss", "random_init", "method_log")}
    Path(out).write_text(json.dumps(numbers))


def compare(commit: str, config_file: str, data: dict, repo: str | os.PathLike = ".", steps: int = 8,
            fraction: float = 0.02, batch: int = 0) -> dict:
    """Run the tiny grid (``steps`` per task on a ``fraction`` of the training set) with the code of
    ``commit`` (a temporary git worktree) and with the current code, each with its own version of
    ``config_file`` (where the repository holds it: an earlier schema may not know a newer key);
    return the two fingerprints, the runs compared, those that differ (or that the current code no
    longer makes) and those new in the current code (a method added since)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=repo, check=True,
                       capture_output=True)
        try:
            outputs = {}
            current = Path(config_file).resolve()
            try:
                earlier_config = tree / current.relative_to(Path(repo).resolve())
            except ValueError:   # a configuration outside the repository: both read it
                earlier_config = current
            for name, src, cfg in (("earlier", tree / "src", earlier_config),
                                   ("current", provenance.PACKAGE.parent, current)):
                outputs[name] = Path(tmp) / f"{name}.json"
                env = dict(os.environ, PYTHONPATH=str(src))
                script = f"import json, sys, tempfile\nfrom pathlib import Path\n{inspect.getsource(tiny_runs)}\n" \
                         f"EXPERIMENTS = {EXPERIMENTS!r}\ntiny_runs(*sys.argv[1:])"
                subprocess.run([sys.executable, "-c", script, str(cfg), json.dumps(data),
                                str(outputs[name]), str(steps), str(fraction), str(batch)], env=env, check=True)
            earlier, current = (json.loads(p.read_text()) for p in outputs.values())
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, capture_output=True)
    both = sorted(set(earlier) & set(current))
    differ = [k for k in both if earlier[k] != current[k]] + sorted(set(earlier) - set(current))
    return {"earlier": provenance.training_code_at(commit, repo), "current": provenance.training_code(),
            "runs": len(both), "differ": differ, "new": sorted(set(current) - set(earlier))}
