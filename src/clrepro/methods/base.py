"""The hook interface every method implements. The training loop (``clrepro.train``) owns
everything generic -- sampling, forward/backward, the optimiser step, evaluation and checkpoints --
and calls these hooks; a method only says what is special about it."""
from __future__ import annotations

import hashlib
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..scenarios import Benchmark


def derive_seed(*parts) -> int:
    """A 63-bit seed determined by ``parts`` (stable across processes and platforms)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


#: how every Adam of a run updates its parameters (``train.run`` sets it from ``--adam``):
#: "foreach", PyTorch's multi-tensor update, bit for bit the numbers of its per-parameter loop (the
#: default, which made the committed results); "fused", one kernel per parameter, faster on the CPU
#: but not bit-identical (the same arithmetic, rounded in another order)
ADAM_KERNELS = ("foreach", "fused")
adam_kernel = "foreach"


def adam(params, lr: float, betas=(0.9, 0.999)) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1) with the run's update kernel (``adam_kernel``)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), **{adam_kernel: True})


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: where every random draw of a method comes from."""
    return torch.Generator().manual_seed(seed)


REQUIRED = type("Required", (), {"__repr__": lambda self: "<required>"})()
"""Default of a hyperparameter that the configuration must set."""

SCENARIOS = ("task", "domain", "class")


class Hyperparameter:
    """A method's hyperparameter, declared once, on the method: its ``default`` (``REQUIRED``: the
    configuration must set it), its JSON-schema ``type`` and further constraints (``enum``,
    ``minimum``, ...), what it is (``help``, with the paper's equation), and whether a
    configuration may give it per scenario (``{task: .., domain: .., class: ..}``). The method
    part of the experiment schema is generated from these (``methods.schema``)."""

    def __init__(self, default, type: str | list[str], help: str, per_scenario: bool = False, **constraints):
        self.default, self.type, self.help, self.per_scenario = default, type, help, per_scenario
        self.constraints = constraints

    def schema(self) -> dict:
        one = {"type": self.type, **self.constraints}
        if not self.per_scenario:
            return {**one, "description": self.help}
        per = {"type": "object", "additionalProperties": False, "properties": dict.fromkeys(SCENARIOS, one)}
        return {"oneOf": [one, per], "description": self.help}

    def __repr__(self) -> str:
        return f"Hyperparameter({self.default!r}, {self.type!r})"


def defaults(hyperparameters: dict[str, Hyperparameter]) -> dict:
    """Each hyperparameter's default."""
    return {name: h.default for name, h in hyperparameters.items()}


@dataclass
class Batch:
    """Inputs and targets of one task, scored on output units ``[lo, hi)``; ``replayed``: stored or
    generated samples of earlier tasks, not the current task's data (a step's replayed batches come
    after its current ones)."""

    x: torch.Tensor
    y: torch.Tensor
    lo: int
    hi: int
    task: int
    replayed: bool = False


def n_current(batches: list[Batch]) -> int:
    """How many of ``batches`` are the current task's (they come first; the rest are replayed)."""
    return sum(not b.replayed for b in batches)


@dataclass
class Step:
    """One optimiser step, what every hook from ``forward`` to ``after_step`` receives: its
    ``batches`` (the current task's, then any replayed), the run's batch size ``size``, the
    network's ``outputs`` for the batches (set by the loop after ``forward``), and ``extras``:
    what a method's hooks hand each other within the step (DGR's generated inputs and their
    labels, BI-R's hidden activations, SI's gradient, A-GEM's reference gradient)."""

    batches: list[Batch]
    size: int
    outputs: list | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> list[Batch]:
        return self.batches[:n_current(self.batches)]

    @property
    def replayed(self) -> list[Batch]:
        return self.batches[n_current(self.batches):]


class Sampler:
    """Shuffled mini-batches of one or more tasks' training data, epoch after epoch (like a
    ``DataLoader(shuffle=True, drop_last=drop_last)`` rebuilt when exhausted), as index tensors on
    the data's device. Its generator is seeded per task, so a resumed run draws the same batches.
    With ``drop_last`` off, an epoch ends with the partial batch of the remaining samples (as
    Keras' ``fit`` does). A ``class_instance`` benchmark shuffles whole video clips instead,
    each clip's frames in temporal order."""

    def __init__(self, bench: Benchmark, tasks: list[int], upto: int, seed: int, drop_last: bool = True):
        self.bench, self.tasks, self.upto, self.drop_last = bench, tasks, upto, drop_last
        self.gen = generator(seed)
        self.sizes = [len(bench.train[t]) for t in tasks]
        self.size = sum(self.sizes)   # training samples of the tasks drawn from
        self.offsets = torch.tensor([0] + self.sizes).cumsum(0)
        self.order = torch.empty(0, dtype=torch.long)
        self.pos = 0
        self.clips = None   # class_instance: each sample's clip, as an index 0..clips-1
        if bench.meta.get("ordering") == "class_instance":
            self.clips = torch.unique(torch.cat([bench.train[t].clips.cpu() for t in tasks]), return_inverse=True)[1]

    def epoch(self) -> torch.Tensor:
        """The order of one pass: a permutation of the samples, or of the clips (a stable sort by
        each clip's drawn rank keeps its frames in order)."""
        if self.clips is None:
            return torch.randperm(self.size, generator=self.gen)
        rank = torch.randperm(int(self.clips.max()) + 1, generator=self.gen)
        return torch.sort(rank[self.clips], stable=True).indices

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "order": self.order, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.order, self.pos = state["order"], state["pos"]

    def indices(self, n: int) -> torch.Tensor:
        if n > self.size:
            raise ValueError(f"batch size {n} exceeds the {self.size} training samples available")
        if self.pos >= len(self.order) or (self.drop_last and self.pos + n > len(self.order)):
            self.order, self.pos = self.epoch(), 0
        idx = self.order[self.pos:self.pos + n]
        self.pos += len(idx)
        return idx

    def batches(self, n: int) -> list[Batch]:
        """``n`` samples drawn from the union of the tasks, grouped by task."""
        idx = self.indices(n)
        device = self.bench.train[self.tasks[0]].p.device
        out = []
        for i, t in enumerate(self.tasks):
            if len(self.tasks) == 1:
                sel = idx
            else:
                sel = idx[(idx >= self.offsets[i]) & (idx < self.offsets[i + 1])] - self.offsets[i]
            if len(sel) == 0:
                continue
            sel = sel.to(device)
            task = self.bench.train[t]
            lo, hi = self.bench.active(t, self.upto)
            out.append(Batch(task.inputs(sel), self.bench.targets(task.p.index_select(0, sel), t),
                             lo, hi, t))
        return out


def frozen(model: nn.Module, state: dict | None = None) -> nn.Module:
    """A copy of ``model`` in evaluation mode without gradients (a teacher, a snapshot); with
    ``state``, the snapshot a checkpoint saved (``model`` gives its structure)."""
    copy = deepcopy(model).eval()
    for p in copy.parameters():
        p.requires_grad_(False)
    if state is not None:
        copy.load_state_dict(state)
    return copy


def forward(model: nn.Module, batches: list[Batch]) -> list[torch.Tensor]:
    """One forward pass for all batches; returns each batch's outputs (all units)."""
    if len(batches) == 1:
        return [model(batches[0].x)]
    return list(model(torch.cat([b.x for b in batches])).split([len(b.y) for b in batches]))


def cross_entropy(outputs: list[torch.Tensor], batches: list[Batch]) -> torch.Tensor:
    """Mean cross-entropy over all samples of all batches, each on its active units."""
    if len(batches) == 1:
        b = batches[0]
        return F.cross_entropy(outputs[0][:, b.lo:b.hi], b.y)
    n = sum(len(b.y) for b in batches)
    return sum(F.cross_entropy(z[:, b.lo:b.hi], b.y, reduction="sum")
               for z, b in zip(outputs, batches)) / n


class Method:
    """Fine-tuning ("None"): plain sequential training; the base every method builds on.

    Subclasses set ``name``, ``scenarios`` (those they support; the config validator refuses the
    rest before any training) and ``hyperparameters`` (name -> ``Hyperparameter``).
    """

    name: ClassVar[str] = "none"
    fresh_optimizer: ClassVar[bool] = False   # the loop makes a new optimiser before every task
    scored_when_learned: ClassVar[bool] = False   # figures score task j by R[j][j], not R[T-1][j]
    scores_need_end_task: ClassVar[bool] = False  # end_task also after the last task (before scoring)
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS
    hyperparameters: ClassVar[dict[str, Hyperparameter]] = {}
    #: hyperparameters a method gained after results were committed: in a run's spec (and hash) only
    #: where its configuration sets them, so the runs that keep the default keep their spec
    optional_hyperparameters: ClassVar[dict[str, Hyperparameter]] = {}

    @classmethod
    def declared(cls) -> dict[str, Hyperparameter]:
        """Every hyperparameter the method declares, optional ones included."""
        return {**cls.hyperparameters, **cls.optional_hyperparameters}

    def __init__(self, model: nn.Module, bench: Benchmark, hp: dict, seed: int, drop_last: bool = True):
        """``drop_last``: the samplers' (off when a task is counted in epochs)."""
        self.model, self.bench, self.seed, self.drop_last = model, bench, seed, drop_last
        self.hp = {**defaults(self.optional_hyperparameters), **hp}
        for key, h in self.declared().items():
            allowed = h.constraints.get("enum")
            if allowed is not None and key in self.hp and self.hp[key] not in allowed:
                raise ValueError(f"{self.name}.{key}: {self.hp[key]!r} is not one of {allowed}")
        self.task = 0
        self.steps = 0   # the current task's training steps (set by the loop before ``prepare``)

    # -- hooks, in the order the loop calls them ----------------------------------------------
    def begin_task(self, task: int) -> None:
        """Before training ``task``: set up the task's sampler."""
        self.task = task
        self.sampler = Sampler(self.bench, [task], task, self.seed_for(task, "data"), self.drop_last)

    def prepare(self, task: int) -> None:
        """After ``begin_task``, before the task's first step: work whose outcome the network or
        the method's state holds (CLN grows the network here). Not repeated when a checkpoint
        taken inside the task is resumed."""

    def draw(self, batch_size: int) -> Step:
        """The batches of one step: ``batch_size`` samples of the current task (then any replayed)."""
        return Step(self.sampler.batches(batch_size), batch_size)

    def step_groups(self, step: Step) -> list[Step]:
        """The optimiser steps one draw is learnt in, in order: each one's forward, loss, backward
        and update see the parameters the one before left. One step by default."""
        return [step]

    def forward(self, step: Step) -> list[torch.Tensor]:
        """The network's outputs (all units) for each batch, in one pass (under autocast)."""
        return forward(self.model, step.batches)

    def loss(self, step: Step) -> torch.Tensor:
        """The loss of one step from ``step.outputs`` (all units) for each batch (under autocast)."""
        return cross_entropy(step.outputs, step.batches)

    def after_backward(self, step: Step) -> None:
        """Gradients are in ``p.grad``; a penalty may add its analytic gradient here."""

    def after_step(self, step: Step) -> None:
        """The optimiser has updated the parameters."""

    def end_task(self, task: int) -> None:
        """After training ``task`` (consolidation, teacher snapshot, ...)."""

    def task_log(self, task: int) -> dict:
        """What the result records of the method after ``task`` (e.g. the units CLN has grown)."""
        return {}

    def memory(self) -> dict:
        """What the method holds besides the network, for the result: ``stored`` samples and their
        ``bytes`` (replay: the buffer; CRUMB: its indices and codebook); nothing here."""
        return {}

    def mix(self, current: torch.Tensor, replayed: torch.Tensor) -> torch.Tensor:
        """1/t * current + (1 - 1/t) * replayed, t the tasks seen (van de Ven & Tolias 2019):
        how every method here weighs the new task against what it replays or distils."""
        w = 1.0 / (self.task + 1)
        return w * current + (1 - w) * replayed

    def scores(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """What evaluation takes the argmax of over the active units, for inputs ``x`` of task
        ``task``: the network's outputs (iCaRL: the nearest mean of exemplars). Only a Task-IL
        method may read ``task`` (XdG: its gates)."""
        return self.model(x)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """What carries over between tasks (saved with every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def task_state(self) -> dict:
        """What a checkpoint taken in the middle of a task adds: the state ``begin_task`` set up
        and the steps since have changed (restored after ``begin_task`` on resumption)."""
        return {"sampler": self.sampler.state_dict()}

    def load_task_state(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])

    # -- helpers ---------------------------------------------------------------------------------
    def seed_for(self, task: int, purpose: str) -> int:
        """A seed derived from the run's data seed, the task and a purpose string."""
        return derive_seed(self.seed, task, purpose)

    def generator_for(self, task: int, purpose: str) -> torch.Generator:
        """A generator seeded with ``seed_for(task, purpose)``."""
        return generator(self.seed_for(task, purpose))

    def on_device(self, obj):
        """``obj`` (tensors in lists, tuples, dicts) on the model's device: checkpoints are
        loaded on the CPU, and a method's state must follow the model it regularises."""
        device = next(self.model.parameters()).device
        if isinstance(obj, torch.Tensor):
            return obj.to(device)
        if isinstance(obj, dict):
            return {k: self.on_device(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.on_device(v) for v in obj)
        return obj

    def params(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}
