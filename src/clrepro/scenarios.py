"""Task sequences (split, permuted, rotated) and the three scenarios of van de Ven & Tolias (2019).

Every sample carries a *global label* ``p`` in ``[0, k*T)`` for ``T`` tasks of ``k`` classes:
split benchmarks number classes by their position in the class order (task ``t`` owns
``p = k*t .. k*t+k-1``), permuted and rotated benchmarks use ``p = digit + k*t``.  A scenario then decides
which output units are active and what the target is (van de Ven & Tolias 2019, Sec. 2):

========  ===========  ==========================================  ==============
scenario  outputs      active units for a sample of task t          target
========  ===========  ==========================================  ==============
task      k*T          its own head ``[k*t, k*t+k)``                ``p - k*t``
domain    k            all ``[0, k)`` (shared head)                  ``p - k*t``
class     k*T          classes seen so far ``[0, k*(c+1))``          ``p``
========  ===========  ==========================================  ==============

where ``c`` is the last task trained (when evaluating task ``j`` after task ``i``: ``max(i, j)``,
so that a future task's classes are scored among the classes seen up to it). With ``all_outputs``
the class scenario keeps every unit active from the start (one k*T-way head, no masking, as the
SDM-MLP paper's class-incremental protocol).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import TensorDataset

SCENARIOS = ("task", "domain", "class")


@dataclass
class Task:
    """One task's samples: rows of ``x`` (optionally with permuted pixels) and global labels."""

    x: torch.Tensor               # (N, D) inputs; shared between tasks of a permuted benchmark
    p: torch.Tensor               # (N,) global labels
    perm: torch.Tensor | None = None
    clips: torch.Tensor | None = None   # (N,) a video dataset's clip of each sample (TensorDataset)

    def __len__(self) -> int:
        return len(self.p)

    def inputs(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        if idx is None:
            x = self.x
        else:   # index_select gathers rows several times faster; x[idx] keeps a channels-last layout
            x = self.x.index_select(0, idx) if self.x.dim() == 2 else self.x[idx]
        return x if self.perm is None else x.index_select(1, self.perm)

    def to(self, device, memory_format=torch.contiguous_format, moved: dict | None = None) -> "Task":
        """On ``device``; ``moved`` maps tensors already moved (shared inputs move once)."""
        moved = {} if moved is None else moved
        if id(self.x) not in moved:
            x = self.x.to(device)
            moved[id(self.x)] = x.contiguous(memory_format=memory_format) if x.dim() == 4 else x
        perm = None if self.perm is None else self.perm.to(device)
        clips = None if self.clips is None else self.clips.to(device)
        return Task(moved[id(self.x)], self.p.to(device), perm, clips)


@dataclass
class Benchmark:
    """A task sequence in one scenario, with per-task train and test data."""

    name: str
    scenario: str
    classes_per_task: int
    train: list[Task]
    test: list[Task]
    input_shape: tuple[int, ...]
    meta: dict = field(default_factory=dict)
    all_outputs: bool = False

    @property
    def input_dim(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n_tasks(self) -> int:
        return len(self.train)

    @property
    def n_outputs(self) -> int:
        k = self.classes_per_task
        return k if self.scenario == "domain" else k * self.n_tasks

    def classes_before(self, task: int) -> int:
        """How many classes the tasks before ``task`` hold (the first label of ``task``)."""
        return self.classes_per_task * task

    def active(self, task: int, upto: int) -> tuple[int, int]:
        """Output slice ``[lo, hi)`` for samples of ``task`` when tasks ``0..upto`` have been seen."""
        k = self.classes_per_task
        if self.scenario == "task":
            return k * task, k * task + k
        if self.scenario == "domain":
            return 0, k
        return 0, k * (self.n_tasks if self.all_outputs else max(task, upto) + 1)

    def targets(self, p: torch.Tensor, task: int) -> torch.Tensor:
        """Target index within the active slice (see module docstring)."""
        return p if self.scenario == "class" else p - self.classes_before(task)

    def to(self, device, memory_format=torch.contiguous_format) -> "Benchmark":
        """On ``device``; image inputs in ``memory_format`` (e.g. channels-last)."""
        moved: dict = {}
        return Benchmark(self.name, self.scenario, self.classes_per_task,
                         [t.to(device, memory_format, moved) for t in self.train],
                         [t.to(device, memory_format, moved) for t in self.test],
                         self.input_shape, self.meta, self.all_outputs)


def _check_scenario(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {SCENARIOS}")


def class_order(tasks: list[list[int]], seed: int | None, reference: bool = False) -> list[int]:
    """The class order: the configured one, or (``seed`` given) a random permutation of it.

    ``reference``: the permutation the three-scenarios reference code draws (GMvandeVen/
    continual-learning, data.py): after ``np.random.seed(seed)``, class ``c`` becomes label
    ``np.random.permutation(n)[c]``, so position ``i`` holds the class sent to ``i``; seed 0
    keeps the order (the code's exception). Each seed then has the reference's class pairs."""
    flat = [c for group in tasks for c in group]
    if seed is None or (reference and seed == 0):
        return flat
    if reference:
        return [flat[i] for i in np.argsort(np.random.RandomState(seed).permutation(len(flat)))]
    return [flat[i] for i in np.random.default_rng(seed).permutation(len(flat))]


ORDERINGS = ("class_iid", "class_instance")


def split(train: TensorDataset, test: TensorDataset, scenario: str, tasks: list[list[int]],
          order_seed: int | None = None, name: str = "split", all_outputs: bool = False,
          ordering: str = "class_iid", reference_order: bool = False) -> Benchmark:
    """Split benchmark: task ``t`` holds the classes ``order[k*t : k*t+k]`` (e.g. 0/1, 2/3, ...).

    ``ordering`` (the stream orders of Stojanov et al. 2019 that CRUMB runs): ``class_iid``, a
    task's samples shuffled; ``class_instance``, a task's video clips shuffled, each clip's frames
    in temporal order (a dataset with ``clips``; ``methods.base.Sampler`` draws them so)."""
    _check_scenario(scenario)
    if ordering not in ORDERINGS:
        raise ValueError(f"benchmark.ordering: unknown {ordering!r} (one of {', '.join(ORDERINGS)})")
    if ordering == "class_instance" and train.clips is None:
        raise ValueError("benchmark.ordering: class_instance needs a dataset of video clips (core50)")
    sizes = {len(g) for g in tasks}
    if len(sizes) != 1:
        raise ValueError(f"all tasks need the same number of classes, got {tasks}")
    k = sizes.pop()
    order = class_order(tasks, order_seed, reference_order)
    n_classes = int(max(train.y.max(), test.y.max())) + 1
    position = torch.full((n_classes,), -1, dtype=torch.long)
    position[torch.tensor(order)] = torch.arange(len(order))

    def make(ds: TensorDataset) -> list[Task]:
        p_all = position[ds.y]
        out = []
        for t in range(len(tasks)):
            rows = torch.nonzero((p_all >= k * t) & (p_all < k * t + k)).squeeze(1)
            out.append(Task(ds.x[rows].contiguous(), p_all[rows].contiguous(),
                            clips=None if ds.clips is None else ds.clips[rows]))
        return out

    groups = [order[k * t:k * t + k] for t in range(len(tasks))]
    if all_outputs and scenario != "class":
        raise ValueError(f"benchmark.outputs: 'all' applies to the class scenario, not {scenario!r}")
    meta = {"class_order": order, "task_classes": groups} | ({"ordering": ordering} if ordering != "class_iid" else {})
    return Benchmark(name, scenario, k, make(train), make(test), tuple(train.x.shape[1:]), meta, all_outputs)


def permutations(n_tasks: int, dim: int, seed: int, first_identity: bool = True) -> list[torch.Tensor]:
    """Pixel permutations, one per task, from their own seed; task 1 unpermuted by default."""
    rng = np.random.default_rng(seed)
    perms = [torch.from_numpy(rng.permutation(dim)) for _ in range(n_tasks)]
    if first_identity:
        perms[0] = torch.arange(dim)
    return perms


def pad_images(ds: TensorDataset, pad: int) -> TensorDataset:
    """Flat square images (N, s*s) framed by ``pad`` pixels of zeros on each side, flat again
    (N, (s+2 pad)^2): MNIST at 32x32, as the reference code's ``transforms.Pad(2)``."""
    side = math.isqrt(ds.x.shape[1])
    if side * side != ds.x.shape[1]:
        raise ValueError(f"benchmark.pad: the inputs are not square images (dimension {ds.x.shape[1]})")
    x = torch.nn.functional.pad(ds.x.reshape(-1, side, side), (pad, pad, pad, pad))
    return TensorDataset(x.reshape(len(x), -1), ds.y)


def permuted(train: TensorDataset, test: TensorDataset, scenario: str, n_tasks: int, perm_seed: int,
             first_identity: bool = True, name: str = "permuted", pad: int = 0) -> Benchmark:
    """Permuted benchmark: every task is the whole dataset under its own pixel permutation, of the
    images framed by ``pad`` pixels of zeros (``pad_images``); task 1 unpermuted if ``first_identity``."""
    _check_scenario(scenario)
    if train.x.dim() != 2:
        raise ValueError(f"a permuted benchmark needs flat inputs (N, D), got shape {tuple(train.x.shape)}")
    if pad:
        train, test = pad_images(train, pad), pad_images(test, pad)
    k = int(train.y.max()) + 1
    perms = permutations(n_tasks, train.x.shape[1], perm_seed, first_identity)

    def make(ds: TensorDataset) -> list[Task]:
        return [Task(ds.x, ds.y + k * t, None if (first_identity and t == 0) else perms[t])
                for t in range(n_tasks)]

    return Benchmark(name, scenario, k, make(train), make(test), tuple(train.x.shape[1:]),
                     {"perm_seed": perm_seed})


def rotate_images(ds: TensorDataset, degrees: float) -> TensorDataset:
    """Flat square images (N, s*s) rotated by ``degrees`` counter-clockwise about their centre
    (nearest neighbour, corners filled with 0), flat again: torchvision's ``rotate``, which the
    reference code's ``RandomRotation(degrees=(d, d))`` applies to each image."""
    from torchvision.transforms.functional import rotate

    side = math.isqrt(ds.x.shape[1])
    if side * side != ds.x.shape[1]:
        raise ValueError(f"benchmark.angles: the inputs are not square images (dimension {ds.x.shape[1]})")
    if degrees == 0:
        return ds
    x = rotate(ds.x.reshape(-1, 1, side, side), float(degrees))
    return TensorDataset(x.reshape(len(x), -1).contiguous(), ds.y)


def rotated(train: TensorDataset, test: TensorDataset, scenario: str, angles: list[float],
            name: str = "rotated") -> Benchmark:
    """Rotated benchmark: task ``t`` is the whole dataset rotated by ``angles[t]`` degrees
    (De Lange, van de Ven & Tuytelaars 2023: 0, 80 and 160 degrees), each task's images stored
    rotated once."""
    _check_scenario(scenario)
    if train.x.dim() != 2:
        raise ValueError(f"a rotated benchmark needs flat inputs (N, D), got shape {tuple(train.x.shape)}")
    k = int(train.y.max()) + 1

    def make(ds: TensorDataset) -> list[Task]:
        return [Task(rotate_images(ds, a).x, ds.y + k * t) for t, a in enumerate(angles)]

    return Benchmark(name, scenario, k, make(train), make(test), tuple(train.x.shape[1:]), {"angles": list(angles)})
