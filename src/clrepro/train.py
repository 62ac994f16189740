"""The training loop: one run = one method on one task sequence with one seed.

After each task the loop evaluates every task (a row of R), then writes a checkpoint (state_dicts
+ JSON metadata) atomically; SIGTERM (what Slurm sends before preempting) and a timer add
checkpoints inside a task. A restarted run resumes from the latest and ends with the same numbers
as an uninterrupted one."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import resource
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import torch

from . import data as datasets
from . import config, metrics, models, provenance, scenarios
from .atomic import atomic_path
from .devices import select_device
from .methods import REGISTRY
from .methods import base as method_base
from .methods.base import ADAM_KERNELS, adam, generator

log = logging.getLogger("clrepro.train")
#: test samples scored at once (memory, not numbers)
EVAL_CHUNK = 8192


def load_datasets(spec: dict) -> tuple[datasets.TensorDataset, datasets.TensorDataset]:
    """The train and test sets; a list of datasets is concatenated, each one's labels shifted past
    the previous ones' (CIFAR-10 then CIFAR-100: classes 0-9, then 10-109)."""
    names = config.dataset_names(spec)
    root, checksums = spec["data"]["root"], spec["data"]["checksums"]
    parts, offset = [], 0
    for name in names:
        train = datasets.load(name, root, train=True, checksums=checksums)
        test = datasets.load(name, root, train=False, checksums=checksums)
        parts.append((train.x, train.y + offset, test.x, test.y + offset))
        offset += int(max(train.y.max(), test.y.max())) + 1
    if len(parts) == 1:
        x, y, xt, yt = parts[0]
        return datasets.TensorDataset(x, y, train.clips), datasets.TensorDataset(xt, yt, test.clips)
    x, y, xt, yt = (torch.cat(column) for column in zip(*parts))
    return datasets.TensorDataset(x, y), datasets.TensorDataset(xt, yt)


def build_benchmark(spec: dict) -> scenarios.Benchmark:
    bench = spec["benchmark"]
    train, test = load_datasets(spec)
    if spec.get("train_subset"):   # reduced presets: the same fraction of every class
        train = _subset(train, spec["train_subset"], spec["seeds"]["data"])
    if bench["type"] == "split":
        return scenarios.split(train, test, spec["scenario"], bench["tasks"], spec["seeds"]["order"],
                               name=spec["experiment"], all_outputs=bench.get("outputs") == "all",
                               ordering=bench.get("ordering", "class_iid"),
                               reference_order=bench.get("class_order") == "reference")
    if bench["type"] == "permuted":
        return scenarios.permuted(train, test, spec["scenario"], bench["n_tasks"], spec["seeds"]["perm"],
                                  first_identity=not bench.get("permute_first", False), name=spec["experiment"],
                                  pad=bench.get("pad", 0))
    if bench["type"] == "rotated":
        return scenarios.rotated(train, test, spec["scenario"], bench["angles"], name=spec["experiment"])
    raise ValueError(f"benchmark.type: unknown benchmark {bench['type']!r}")


def _subset(ds: datasets.TensorDataset, fraction: float, seed: int) -> datasets.TensorDataset:
    """A random ``fraction`` of each class (at least one sample), in the original order."""
    g = generator(seed)
    keep = []
    for c in ds.y.unique():
        rows = torch.nonzero(ds.y == c).squeeze(1)
        keep.append(rows[torch.randperm(len(rows), generator=g)[: max(1, int(len(rows) * fraction))]])
    keep = torch.cat(keep).sort().values
    return datasets.TensorDataset(ds.x[keep], ds.y[keep], None if ds.clips is None else ds.clips[keep])


@torch.inference_mode()
def evaluate(model: torch.nn.Module, bench: scenarios.Benchmark, upto: int, scores=None) -> list[float]:
    """Test accuracy on every task, with the classes of tasks ``0..upto`` seen (a row of R);
    ``scores(x, j)`` (a method's, default the model's outputs) is argmaxed over the active units."""
    accs = []
    with models.evaluating(model):
        for j, task in enumerate(bench.test):
            lo, hi = bench.active(j, upto)
            correct = 0
            for start in range(0, len(task), EVAL_CHUNK):
                idx = torch.arange(start, min(start + EVAL_CHUNK, len(task)), device=task.p.device)
                x = task.inputs(idx)
                pred = (scores(x, j) if scores else model(x))[:, lo:hi].argmax(1)
                correct += int((pred == bench.targets(task.p[idx], j)).sum())
            accs.append(correct / len(task))
    return accs


class ContinualEval:
    """Continual evaluation (De Lange, van de Ven & Tuytelaars 2023, Sec. 3): the accuracy on every
    task seen so far, every ``every`` training iterations, on a fixed test subset of
    ``test_subset`` samples per task drawn once per run from its own seed (the reference code
    draws a new subset for each evaluation). A point (iteration g, task t, accuracies on tasks
    0..t) is taken before the update g+1, in task t (the reference evaluates before each update),
    and once more after the last task. It reads no random number of the training."""

    def __init__(self, bench: scenarios.Benchmark, settings: dict, seed: int):
        self.settings, self.every = settings, settings["every"]
        gen = generator(seed)
        subsets = []
        for task in bench.test:
            rows = torch.randperm(len(task), generator=gen)[:settings["test_subset"]].sort().values
            rows = rows.to(task.p.device)
            subsets.append(scenarios.Task(task.x[rows], task.p[rows], task.perm))
        self.bench = dataclasses.replace(bench, test=subsets)
        self.points = {"iteration": [], "task": [], "acc": []}

    def record(self, model: torch.nn.Module, iteration: int, task: int, scores, amp: dict) -> None:
        seen = dataclasses.replace(self.bench, test=self.bench.test[:task + 1])
        with torch.autocast(**amp):
            accs = evaluate(model, seen, upto=task, scores=scores)
        for key, value in zip(("iteration", "task", "acc"), (iteration, task, accs)):
            self.points[key].append(value)

    def result(self, steps: list[int]) -> dict:
        """The settings, the curve and its metrics (``metrics.continual``) for the run's result."""
        window = self.settings["window"]
        return {**self.settings, **self.points, "metrics": metrics.continual(self.points, steps, window)}


def make_optimizer(model: torch.nn.Module, spec: dict) -> torch.optim.Optimizer:
    opt = spec["optimizer"]
    params = [p for p in model.parameters() if p.requires_grad]
    if opt["name"] == "adam":
        return adam(params, opt["lr"], opt.get("betas", (0.9, 0.999)))
    if opt["name"] == "sgd":
        return torch.optim.SGD(params, lr=opt["lr"], momentum=opt.get("momentum", 0.0),
                               weight_decay=opt.get("weight_decay", 0.0))
    raise ValueError(f"optimizer.name: unknown optimizer {opt['name']!r}")


# -- checkpoints -----------------------------------------------------------------------------------
# ``task-NN``: after task NN (the loop's state between tasks). ``task-NN-step-SSSSSSS``: SSSSSSS steps
# into task NN (written on SIGTERM and every ``checkpoint_every`` seconds). Only the latest is kept.

def _ckpt_name(task: int, step: int | None) -> str:
    return f"task-{task:02d}" if step is None else f"task-{task:02d}-step-{step:07d}"


def _ckpt_order(folder: Path) -> tuple[int, float]:
    parts = folder.name.split("-")
    try:
        return int(parts[1]), float(parts[3]) if len(parts) == 4 else float("inf")
    except (IndexError, ValueError):
        return -1, -1.0


class CheckpointError(RuntimeError):
    """A checkpoint could not be written (the message names it and the cause)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(folder: Path, task: int, state: dict, meta: dict, step: int | None = None) -> None:
    """Write ``<name>/{state.pt,meta.json}`` via a temporary folder and one rename, then drop
    older checkpoints. The meta records the state file's sha256, checked when it is loaded."""
    final = folder / _ckpt_name(task, step)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".tmp-"))
    except OSError as err:
        raise CheckpointError(f"cannot write the checkpoint {final}: {err}") from None
    try:
        torch.save(state, tmp / "state.pt")
        meta = dict(meta, state_sha256=_sha256(tmp / "state.pt"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except (OSError, RuntimeError) as err:   # torch reports a full disk as a RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"cannot write the checkpoint {final} (is the disk full?): {err}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in folder.glob("task-*"):
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)


def load_state(ckpt: Path, meta: dict) -> dict:
    """A checkpoint's ``state.pt``, checked against the sha256 its meta records (where the meta
    has one), loaded as plain tensors and containers only (``weights_only``: a pickle that would
    run code is refused, never run). Raises ValueError naming the file."""
    path = ckpt / "state.pt"
    recorded = meta.get("state_sha256")
    try:
        if recorded is not None and _sha256(path) != recorded:
            raise ValueError("its sha256 is not the one its meta.json records: it was changed after it was written")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # a changed file, an unpickling error, a truncated archive, ...
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path} is refused: {reason}") from None


def latest_checkpoint(folder: Path, identity: dict | str, refused: list | None = None) -> tuple[dict, dict] | None:
    """The most advanced checkpoint of this run, or None. ``identity``: what the checkpoint's meta
    must record (``spec_hash``, and for resuming the ``training_code`` and ``data`` checksums; a
    plain string is a spec hash). Checkpoints of another identity, or whose state file is changed,
    corrupt or not plain tensors, are set aside with a warning (and the reason appended to
    ``refused``); leftovers of a writer killed mid-write (``.tmp-*``) are removed."""
    if isinstance(identity, str):
        identity = {"spec_hash": identity}
    for tmp in folder.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for ckpt in sorted(folder.glob("task-*"), key=_ckpt_order, reverse=True):
        try:
            meta = json.loads((ckpt / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        other = [k for k, v in identity.items() if meta.get(k) != v]
        if other:
            log.warning("ignoring checkpoint %s: made with another %s", ckpt, " and ".join(other))
            continue
        if "training_code" in identity and "state_sha256" not in meta:
            log.warning("ignoring checkpoint %s: it records no checksum of its state", ckpt)
            continue
        try:
            return meta, load_state(ckpt, meta)
        except ValueError as err:
            log.warning("ignoring checkpoint: %s", err)
            if refused is not None:
                refused.append(str(err))
    return None


def write_json_atomic(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


class Preempted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint; a rerun resumes from it."""

    exit_code = 143   # 128 + SIGTERM, what a process ended by SIGTERM reports


class _StopSignals:
    """Turns SIGTERM and SIGINT into a flag the loop checks at each step boundary (the safe point
    where a checkpoint is consistent); restores the previous handlers on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, enabled: bool = True):
        self.received: int | None = None
        self.previous = {}
        self.enabled = enabled   # without a checkpoint to save, the signals keep their default

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:   # a second signal: give up at once
            raise KeyboardInterrupt
        self.received = signum
        log.warning("received %s: checkpointing at the end of this step", signal.Signals(signum).name)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _rng_state(dev: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(dev)
    return state


def _set_rng_state(state: dict | None, dev: torch.device) -> None:
    if state is None:   # a checkpoint written before RNG states were saved
        return
    torch.set_rng_state(state["cpu"])
    if dev.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], dev)


# -- the loop --------------------------------------------------------------------------------------

DENORMALS = ("auto", "keep", "flush")


def execution(spec: dict, dev: torch.device, precision: str = "auto", adam: str = "foreach",
              denormals: str = "auto") -> dict:
    """How the arithmetic runs: ``precision`` "fp32" or "bf16" (autocast of the forward pass;
    "auto": bf16 for convolutional networks on a GPU, where it pays), channels-last memory
    (convolutional networks on a GPU), Adam's update kernel (``methods.base.ADAM_KERNELS``) and
    whether the CPU flushes denormal numbers to zero ("auto": flush on the CPU, see
    ``set_denormals``). Recorded with every result."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision: {precision!r} is not one of auto, fp32, bf16")
    if adam not in ADAM_KERNELS:
        raise ValueError(f"adam: {adam!r} is not one of {', '.join(ADAM_KERNELS)}")
    if denormals not in DENORMALS:
        raise ValueError(f"denormals: {denormals!r} is not one of {', '.join(DENORMALS)}")
    conv_on_gpu = dev.type == "cuda" and spec["model"].get("type") in ("cnn", "squeezenet")
    if precision == "auto":
        precision = "bf16" if conv_on_gpu else "fp32"
    if denormals == "auto":
        denormals = "flush" if dev.type == "cpu" else "keep"
    return {"precision": precision, "channels_last": conv_on_gpu, "adam": adam, "denormals": denormals}


def set_denormals(mode: str) -> None:
    """Flush denormal floats to zero on the CPU ("flush") or compute with them ("keep").

    Adam's moments of a weight whose gradient is always zero (a pixel that is zero in every image,
    as MNIST's border) decay by beta each step into the denormal range, where Intel CPUs compute
    many times slower; flushed, they become zero a few steps earlier. Both modes gave the same
    results bit for bit in the runs compared (README, *Execution settings*)."""
    if not torch.set_flush_denormal(mode == "flush") and mode == "flush":
        raise RuntimeError("denormals: flush: this CPU cannot flush denormal numbers (no SSE3); use keep")


def build_run(spec: dict, execution: dict, dev: torch.device) -> tuple[scenarios.Benchmark, torch.nn.Module,
                                                                    method_base.Method, dict]:
    """A run as it stands before its first step, on ``dev`` in the memory format of an ``execution``
    record: the benchmark, the freshly initialised network, the method around it, and the
    ``torch.autocast`` arguments of the record's precision."""
    memory = torch.channels_last if execution.get("channels_last") else torch.contiguous_format
    bench = build_benchmark(spec).to(dev, memory)
    torch.manual_seed(spec["seeds"]["init"])
    model = models.build(spec["model"], bench.input_shape, bench.n_outputs, spec["data"]["root"],
                         spec["data"].get("checksums")).to(dev, memory_format=memory)
    method = REGISTRY[spec["method_class"]](model, bench, spec["hyperparameters"], spec["seeds"]["data"],
                                            drop_last=bool(spec.get("iters_per_task")))   # epochs: every sample
    amp = {"device_type": dev.type, "dtype": torch.bfloat16, "enabled": execution.get("precision") == "bf16"}
    return bench, model, method, amp


def steps_per_task(spec: dict, n_samples: int, task: int = 0) -> int:
    """``iters_per_task`` steps of full batches, or ``epochs_per_task`` passes over the task's
    ``n_samples``, each of ceil(n / batch) steps, the last one a partial batch (as Keras' ``fit``);
    the first task takes ``epochs_first_task`` passes where that is set (an online stream that
    base-initialises on its first task, as CRUMB's and REMIND's protocols do)."""
    if spec.get("iters_per_task"):
        return spec["iters_per_task"]
    epochs = spec.get("epochs_first_task") if task == 0 else None
    return (epochs or spec["epochs_per_task"]) * math.ceil(n_samples / spec["batch_size"])


@dataclasses.dataclass
class History:
    """What a run has learnt so far: per task learnt, its row of R, mean training loss, seconds
    (wall time, and the process's CPU time: None where a checkpoint made before it was recorded),
    steps and the method's log; the untrained network's accuracies (``random_init``). The same
    record goes into every checkpoint (``meta``) and into the result (``result``)."""

    random_init: list[float]
    R: list[list[float]] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    steps: list[int] = dataclasses.field(default_factory=list)
    method_log: list[dict] = dataclasses.field(default_factory=list)
    cpu_seconds: list[float | None] = dataclasses.field(default_factory=list)

    def add(self, row: list[float], loss: float, steps: int, seconds: float, cpu_seconds: float | None,
            method_log: dict) -> None:
        self.R.append(row)
        self.train_loss.append(loss)
        self.steps.append(steps)
        self.seconds.append(seconds)
        self.cpu_seconds.append(cpu_seconds)
        self.method_log.append(method_log)

    def meta(self) -> dict:
        return {"R": self.R, "random_init": self.random_init, "train_loss": self.train_loss,
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "steps": self.steps,
                "method_log": self.method_log}

    @classmethod
    def from_meta(cls, meta: dict, spec: dict) -> History:
        rows = meta["R"]
        return cls(meta["random_init"], rows, meta["train_loss"], meta["seconds"],
                   meta.get("steps") or [spec.get("iters_per_task")] * len(rows),   # older checkpoints
                   meta.get("method_log") or [{} for _ in rows], meta.get("cpu_seconds") or [None] * len(rows))

    def result(self) -> dict:
        return {"R": self.R, "random_init": self.random_init, "metrics": metrics.summary(self.R, self.random_init),
                "train_loss": self.train_loss, "seconds_per_task": self.seconds,
                "cpu_seconds_per_task": self.cpu_seconds, "steps_per_task": self.steps,
                **({"method_log": self.method_log} if any(self.method_log) else {})}


def learn(method: method_base.Method, optimizer: torch.optim.Optimizer, step: method_base.Step,
          amp: dict, clip: float | None = None) -> torch.Tensor:
    """One optimiser step on ``step``'s batches, with the method's hooks; returns its loss."""
    with torch.autocast(**amp):
        step.outputs = method.forward(step)
        loss = method.loss(step)
    # Gradients set to None, so that backward writes each one rather than adding it to zeros; one
    # the loss no longer reaches is then zero, as zeroing in place would have left it (Adam steps it)
    had = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for p in had:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    method.after_backward(step)
    if clip:
        torch.nn.utils.clip_grad_norm_(method.model.parameters(), clip)
    optimizer.step()
    method.model.constrain()
    method.after_step(step)
    return loss.detach()


class Trainer:
    """One run's loop over tasks and steps (``fit``), with its checkpoints: the run's method,
    optimiser and ``History``, and where and when to checkpoint (``checkpoints``: a folder or
    None; every ``every`` seconds of training; ``stop_after_step``: stop as SIGTERM would).
    Every checkpoint records the run's ``identity`` and ``execution`` (precision, Adam kernel)."""

    def __init__(self, spec: dict, bench: scenarios.Benchmark, method: method_base.Method, amp: dict,
                 checkpoints: Path | None, identity: dict, execution: dict, every: float | None = None,
                 stop_after_step: int | None = None):
        self.spec, self.bench, self.method, self.model, self.amp = spec, bench, method, method.model, amp
        self.optimizer = make_optimizer(self.model, spec)
        self.ckpt_dir, self.every, self.stop_after_step = checkpoints, every, stop_after_step
        self.identity, self.execution = identity, execution
        self.dev = next(self.model.parameters()).device
        self.probe = spec.get("continual_eval") and ContinualEval(bench, spec["continual_eval"], spec["seeds"]["eval"])
        # b[j]: the untrained network on task j, scored as R[j-1][j] is (tasks up to j in view)
        with torch.autocast(**amp):
            self.history = History([evaluate(self.model, bench, upto=j, scores=method.scores)[j]
                                    for j in range(bench.n_tasks)])
        self.stop = None

    def resume(self, meta: dict, state: dict) -> tuple[int, tuple | None]:
        """Restore a checkpoint's state; returns the task to go on with and, for a checkpoint taken
        inside it, what ``task`` restores after ``begin_task`` (which may re-initialise)."""
        if meta.get("step") is None:
            self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        _set_rng_state(state.get("rng"), self.dev)
        self.history = History.from_meta(meta, self.spec)
        if self.probe:
            self.probe.points = meta["continual_eval"]
        if meta.get("step") is None:
            log.info("resuming after task %d from %s", meta["task"], self.ckpt_dir)
            return meta["task"] + 1, None
        log.info("resuming task %d at step %d from %s", meta["task"], meta["step"], self.ckpt_dir)
        return meta["task"], (meta["step"], state)

    def fit(self, start: int = 0, inside: tuple | None = None, stop_after_task: int | None = None) -> bool:
        """Tasks ``start``.. (the first from inside it, where ``inside`` says); False where
        ``stop_after_task`` ended it early."""
        with _StopSignals(enabled=self.ckpt_dir is not None) as self.stop:
            for t in range(start, self.bench.n_tasks):
                self.task(t, inside if t == start else None)
                if stop_after_task is not None and t >= stop_after_task:
                    return False
            if self.probe:
                self.probe.record(self.model, sum(self.history.steps), self.bench.n_tasks - 1, self.method.scores,
                                  self.amp)
        return True

    def task(self, t: int, inside: tuple | None = None) -> None:
        """Learn task ``t``: its steps, each one draw of batches learnt in the method's steps; then
        ``end_task``, a row of R and a checkpoint."""
        method, model, B = self.method, self.model, self.spec["batch_size"]
        clip = self.spec["optimizer"].get("clip_grad_norm")
        t0 = last_save = time.perf_counter()
        c0 = time.process_time()   # CPU time: a paused or crowded run's wall time counts the waiting too
        method.begin_task(t)
        iters = method.steps = steps_per_task(self.spec, method.sampler.size, t)
        step0, loss_sum = 0, torch.zeros((), device=self.dev)
        if inside is not None:
            step0, state = inside
            model.load_state_dict(state["model"])
            method.load_task_state(state["task_state"])
            loss_sum = state["loop"]["loss_sum"].to(self.dev)
            t0 -= state["loop"]["seconds"]
            c0 = None if state["loop"].get("cpu_seconds") is None else c0 - state["loop"]["cpu_seconds"]
        else:
            method.prepare(t)
            if (self.spec["optimizer"].get("reset_per_task") or method.fresh_optimizer) and t > 0:
                self.optimizer = make_optimizer(model, self.spec)
        model.train()
        done = sum(self.history.steps)   # iterations of the earlier tasks
        for step in range(step0, iters):
            if self.probe and (done + step) % self.probe.every == 0:
                self.probe.record(model, done + step, t, method.scores, self.amp)
            for group in method.step_groups(method.draw(B)):
                loss_sum += learn(method, self.optimizer, group, self.amp, clip)
            if self.dev.type == "cpu" or step + 1 == iters or (step + 1) % 100 == 0:   # no GPU sync per step
                _check_finite(loss_sum, self.spec, t, step)
            if step + 1 < iters and self.ckpt_dir:
                last_save = self.checkpoint_inside(t, step + 1, loss_sum, t0, c0, last_save)
        if t < self.bench.n_tasks - 1 or method.scores_need_end_task:   # else it would never be used
            method.end_task(t)
        with torch.autocast(**self.amp):
            row = evaluate(model, self.bench, upto=t, scores=method.scores)
        self.history.add(row, float(loss_sum) / iters, iters, time.perf_counter() - t0,
                         None if c0 is None else time.process_time() - c0, method.task_log(t))
        log.info("task %d: loss %.4f, accuracies %s (%.1fs)", t + 1, self.history.train_loss[-1],
                 " ".join(f"{a:.4f}" for a in row), self.history.seconds[-1])
        if self.ckpt_dir:
            self.checkpoint(t, None)
            if self.stop.received is not None:
                raise Preempted(f"stopped after task {t}; checkpoint in {self.ckpt_dir}")

    def checkpoint_inside(self, t: int, step: int, loss_sum: torch.Tensor, t0: float, c0: float | None,
                          last_save: float) -> float:
        """A checkpoint ``step`` steps into task ``t`` when a signal, ``stop_after_step`` or the
        timer asks for one (then :class:`Preempted` for the first two); returns when the last was."""
        now = time.perf_counter()
        halt = self.stop.received is not None or (self.stop_after_step is not None and step >= self.stop_after_step)
        if not halt and (self.every is None or now - last_save < self.every):
            return last_save
        self.checkpoint(t, step, {"loss_sum": loss_sum.detach().cpu(), "seconds": now - t0,
                                  "cpu_seconds": None if c0 is None else time.process_time() - c0})
        if halt:
            raise Preempted(f"stopped at step {step} of task {t}; checkpoint in {self.ckpt_dir}")
        return now

    def checkpoint(self, t: int, step: int | None, loop: dict | None = None) -> None:
        """``loop``: inside a task, the loop's own running state (loss sum, wall and CPU seconds so far)."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "method": self.method.state_dict(), "rng": _rng_state(self.dev)}
        meta = {"task": t, "step": step, **self.identity, **self.history.meta(),
                **({"continual_eval": self.probe.points} if self.probe else {}),
                "precision": self.execution["precision"], "adam": self.execution["adam"],
                "denormals": self.execution["denormals"], "run": _run_id(self.spec)}
        if step is not None:
            state["task_state"], state["loop"] = self.method.task_state(), loop
        save_checkpoint(self.ckpt_dir, t, state, meta, step)


def run(spec: dict, out: str | os.PathLike, checkpoints: str | os.PathLike | None = None,
        device: str = "auto", threads: int | None = None, stop_after_task: int | None = None,
        checkpoint_every: float | None = 600.0, stop_after_step: int | None = None,
        precision: str = "auto", adam_kernel: str = "foreach", denormals: str = "auto") -> dict:
    """Train one run and write its result JSON to ``out``.

    With a checkpoint folder, a checkpoint is written after every task, every ``checkpoint_every``
    seconds of training (0 or None: never), and on SIGTERM/SIGINT (then :class:`Preempted` is raised); a rerun resumes
    from the latest one and ends with the numbers of an uninterrupted run. For tests:
    ``stop_after_task`` returns ``{}`` after that task's checkpoint; ``stop_after_step`` stops as
    SIGTERM would, after that many steps of the current task."""
    if threads:
        torch.set_num_threads(threads)
    dev = select_device(device)
    prov = provenance.collect(dev, Path(__file__).resolve().parents[2])   # the code that runs now
    # what a checkpoint must have been made with to be resumed: this spec, data and training code
    identity = {"spec_hash": spec["spec_hash"], "training_code": provenance.training_code(),
                "data": datasets.checksums_of(config.dataset_names(spec) + config.pretrained_weights(spec["model"]),
                                              spec["data"]["checksums"])}
    prov.update(training_code=identity["training_code"], data=identity["data"])
    ckpt_dir = Path(checkpoints) if checkpoints else None
    resumed = ckpt_dir and latest_checkpoint(ckpt_dir, identity)
    prov.update(_execution_to_resume(spec, dev, resumed and resumed[0], precision, adam_kernel, denormals,
                                     ckpt_dir))
    method_base.adam_kernel = adam_kernel
    set_denormals(prov["denormals"])
    bench, model, method, amp = build_run(spec, prov, dev)
    trainer = Trainer(spec, bench, method, amp, ckpt_dir, identity, prov, checkpoint_every or None, stop_after_step)
    start, inside = trainer.resume(*resumed) if resumed else (0, None)
    if not trainer.fit(start, inside, stop_after_task):
        return {}

    result = {
        **_run_id(spec),
        "method_class": spec["method_class"],
        "hyperparameters": spec["hyperparameters"],
        "seeds": spec["seeds"],
        "protocol": {k: spec.get(k) for k in ("dataset", "benchmark", "model", "optimizer", "batch_size",
                                              "iters_per_task", "epochs_per_task", "train_subset")}
        | ({"epochs_first_task": spec["epochs_first_task"]} if spec.get("epochs_first_task") else {}),
        "spec_hash": spec["spec_hash"],
        "task_classes": bench.meta.get("task_classes"),
        **trainer.history.result(),
        **({"continual_eval": trainer.probe.result(trainer.history.steps)} if trainer.probe else {}),
        **({"memory": held} if (held := method.memory()) else {}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,   # this process's high-water mark
        "resumed": bool(resumed),
        "provenance": prov,
    }
    write_result(Path(out), result)
    return result


def _execution_to_resume(spec: dict, dev: torch.device, meta: dict | None, precision: str, adam_kernel: str,
                         denormals: str, ckpt_dir: Path | None) -> dict:
    """The ``execution`` record of a run, the precision, Adam kernel and denormal mode of the
    checkpoint it resumes (``meta``) where it has one; a mismatch with an explicit choice is refused."""
    recorded = meta.get("precision") if meta else None
    kept = meta["denormals"] if meta else None   # every checkpoint this code resumes was written by it
    chosen = execution(spec, dev, recorded if recorded and precision == "auto" else precision, adam_kernel,
                       kept if kept and denormals == "auto" else denormals)
    if recorded and recorded != chosen["precision"]:
        raise ValueError(f"precision: the checkpoint in {ckpt_dir} was trained in {recorded}; resuming it in "
                         f"{chosen['precision']} would mix the two (pass --precision {recorded} or auto)")
    if kept and kept != chosen["denormals"]:
        raise ValueError(f"denormals: the checkpoint in {ckpt_dir} was trained with denormals {kept}; resuming "
                         f"it with {chosen['denormals']} would mix the two (pass --denormals {kept} or auto)")
    kernel = meta.get("adam", "foreach") if meta else adam_kernel   # checkpoints before it: foreach
    if kernel != adam_kernel:
        raise ValueError(f"adam: the checkpoint in {ckpt_dir} was trained with Adam's {kernel} kernel; resuming "
                         f"it with {adam_kernel} would mix the two (pass --adam {kernel})")
    return chosen


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite: the run stops rather than record chance accuracy."""


def _check_finite(loss_sum: torch.Tensor, spec: dict, task: int, step: int) -> None:
    if not bool(torch.isfinite(loss_sum)):
        run = "/".join(str(v) for v in _run_id(spec).values())
        raise NonFiniteLoss(f"run {run}: the training loss became {float(loss_sum)} by step {step + 1} of task "
                            f"{task + 1}; nothing was recorded (a smaller learning rate or regularisation "
                            "strength may help)")


def write_result(out: Path, result: dict) -> None:
    """Write a run's result, unless ``out`` is a committed result (in the last git commit of its
    repository): that record is kept byte for byte. A rerun with other numbers (R or losses) is
    written beside it as ``<name>.rerun.json`` for the report to show, with a warning."""
    committed = provenance.committed_version(out)
    if committed is None:
        write_json_atomic(out, result)
        return
    try:
        before = json.loads(committed)
        same = before["R"] == result["R"] and before["train_loss"] == result["train_loss"]
    except (ValueError, KeyError, TypeError):
        same = False
    with atomic_path(out) as tmp:   # the job's output: the committed record, as it was
        tmp.write_bytes(committed)
    if same:
        log.info("%s: the rerun reproduces the committed result; kept as committed", out)
        return
    beside = out.with_name(f"{out.stem}.rerun.json")
    write_json_atomic(beside, result)
    log.warning("%s is a committed result and this rerun gives other numbers: the committed one is kept and "
                "the rerun written to %s (replace the record deliberately: git rm it, then move the rerun into "
                "place)", out, beside)


def _run_id(spec: dict) -> dict:
    return {k: spec[k] for k in ("experiment", "scenario", "method", "preset")} | {"seed": spec["seeds"]["seed"]}
