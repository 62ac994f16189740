"""The memory buffer of the replay methods: a class-balanced set of stored training samples, kept
as tensors on the data's device: at most ``per_class`` of every class seen, or a ``total`` budget
shared by the classes seen (iCaRL's: when new classes arrive, every class keeps the first
total // classes of its samples, in the order they were selected).

Selection, when a task ends, among each of its classes' training samples:

- ``reservoir``: a uniform random subset, drawn as reservoir sampling over one pass of the task's
  stream would (every sample gets a random key; the ``per_class`` smallest keys are kept, which is
  Algorithm R's distribution, vectorised);
- ``herding``: iCaRL's exemplars (Rebuffi et al. 2017, Alg. 4): on L2-normalised features
  phi(x), the k-th exemplar is the sample that brings the mean of the first k closest to the class
  mean mu, p_k = argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||, each sample at most once.
  ``herding_mean``: ``plain`` takes mu = mean phi (Alg. 4); ``unit`` rescales it to unit length
  (the three-scenarios reference code, ``norm_exemplars``).
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..models import evaluating, in_chunks
from ..scenarios import Benchmark
from .base import Batch, Method

SELECTIONS = ("reservoir", "herding")


def herding(features: torch.Tensor, m: int, unit_mean: bool = False) -> torch.Tensor:
    """Indices of ``m`` exemplars of one class in the order herding picks them."""
    phi = F.normalize(features, dim=1)
    mu = F.normalize(phi.mean(0), dim=0) if unit_mean else phi.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mu)
    available = torch.ones(len(phi), dtype=torch.bool, device=phi.device)
    for k in range(1, min(m, len(phi)) + 1):
        dist = (mu - (total + phi) / k).norm(dim=1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        total += phi[i]
        available[i] = False
    return torch.tensor(chosen, dtype=torch.long, device=phi.device)


def reservoir(n: int, m: int, gen: torch.Generator, device) -> torch.Tensor:
    """``m`` of ``n`` indices uniformly at random (sorted)."""
    keys = torch.rand(n, generator=gen)
    return keys.argsort()[:m].sort().values.to(device)


class Buffer:
    """Stored samples: inputs ``x``, global labels ``p`` and their task, as tensors."""

    def __init__(self, per_class: int | None = None, selection: str = "reservoir", total: int | None = None,
                 herding_mean: str = "plain"):
        if selection not in SELECTIONS:
            raise ValueError(f"selection: unknown selection {selection!r} (one of {', '.join(SELECTIONS)})")
        if herding_mean not in ("plain", "unit"):
            raise ValueError(f"herding_mean: {herding_mean!r} is neither plain nor unit")
        if (per_class is None) == (total is None):
            raise ValueError("per_class, budget: give one of the two (samples per class, or in total)")
        size = per_class if per_class is not None else total
        if size < 1:
            raise ValueError(f"per_class, budget: the budget must be at least 1 sample, got {size}")
        self.per_class, self.selection, self.total = per_class, selection, total
        self.unit_mean = herding_mean == "unit"
        self.x = self.p = self.task = None

    def __len__(self) -> int:
        return 0 if self.p is None else len(self.p)

    @torch.no_grad()
    def add(self, bench: Benchmark, task: int, gen: torch.Generator, model=None, encode=None) -> None:
        """Store up to ``per_class`` samples of each class of ``task``'s training data (herding:
        on the features ``model.embed`` gives in evaluation mode); ``encode(x)``, when given, is
        what is stored of the inputs ``x`` (CRUMB: their memory-block indices)."""
        data = bench.train[task]
        classes = data.p.unique().tolist()
        seen = len(self.p.unique()) if len(self) else 0
        m = self.per_class or self.total // (seen + len(classes))
        if m < 1:
            raise ValueError(f"budget: {self.total} samples cannot hold one of each class seen")
        if self.total and len(self):
            self._keep_first(m)
        xs, ps = [], []
        with evaluating(model) if model is not None else nullcontext():
            for c in classes:
                rows = torch.nonzero(data.p == c).squeeze(1)
                if self.selection == "herding":
                    phi = in_chunks(lambda r: model.embed(data.inputs(r)).flatten(1), rows)
                    pick = herding(phi, m, self.unit_mean)
                else:
                    pick = reservoir(len(rows), m, gen, rows.device)[torch.randperm(min(m, len(rows)), generator=gen)]
                sel = rows[pick]
                xs.append(encode(data.inputs(sel)) if encode else data.inputs(sel))
                ps.append(data.p[sel])
        x, p = torch.cat(xs), torch.cat(ps)
        t = torch.full_like(p, task)
        self.x = x if self.x is None else torch.cat([self.x, x])
        self.p = p if self.p is None else torch.cat([self.p, p])
        self.task = t if self.task is None else torch.cat([self.task, t])

    def _keep_first(self, m: int) -> None:
        """Every class keeps its first ``m`` stored samples (iCaRL's ReduceExemplarSet)."""
        rank = torch.zeros_like(self.p)
        for c in self.p.unique():
            rows = self.p == c
            rank[rows] = torch.arange(int(rows.sum()), device=self.p.device)
        keep = rank < m
        self.x, self.p, self.task = self.x[keep], self.p[keep], self.task[keep]

    def batches(self, bench: Benchmark, n: int, upto: int, gen: torch.Generator) -> list[Batch]:
        """``n`` stored samples drawn uniformly (without replacement when the buffer allows),
        one ``Batch`` per task, each scored on its task's active units with tasks ``0..upto`` seen."""
        n = min(n, len(self))
        idx = torch.randperm(len(self), generator=gen)[:n].to(self.p.device)
        out = []
        for t in self.task[idx].unique().tolist():
            sel = idx[self.task[idx] == t]
            lo, hi = bench.active(t, upto)
            out.append(Batch(self.x[sel], bench.targets(self.p[sel], t), lo, hi, t, replayed=True))
        return out

    def footprint(self) -> dict:
        """The samples stored and their bytes: an input counted at 8 bits per value (the datasets'
        own pixels, whatever precision the buffer keeps them in), stored codes at their own width."""
        if not len(self):
            return {"stored": 0, "bytes": 0}
        width = 1 if self.x.is_floating_point() else self.x.element_size()
        return {"stored": len(self), "bytes": self.x.numel() * width}

    def state_dict(self) -> dict:
        return {"x": self.x, "p": self.p, "task": self.task}

    def load_state_dict(self, state: dict) -> None:
        self.x, self.p, self.task = state["x"], state["p"], state["task"]


class Replaying(Method):
    """A method that draws replayed samples during a task: its generator, seeded per task, is part
    of the in-task checkpoint state."""

    def begin_task(self, task: int) -> None:
        super().begin_task(task)
        self.replay_gen = self.generator_for(task, "replay")

    def memory(self) -> dict:
        return self.buffer.footprint() if hasattr(self, "buffer") else {}

    def task_state(self) -> dict:
        return super().task_state() | {"replay_gen": self.replay_gen.get_state()}

    def load_task_state(self, state: dict) -> None:
        super().load_task_state(state)
        self.replay_gen.set_state(state["replay_gen"])
