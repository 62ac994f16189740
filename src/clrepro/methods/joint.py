"""Joint training, the upper bound: while training task t the batches are drawn uniformly from the
union of tasks 1..t (the "offline" baseline of van de Ven & Tolias 2019, trained sequentially
with the same number of iterations per task). Each sample is scored on its own active units; in
Task-IL the reference code instead draws ceil(B/t) samples per task and averages the per-task
losses, which weights tasks equally rather than samples (the split-MNIST tasks are within 15%
of each other in size)."""
from __future__ import annotations

from .base import Method, Sampler, Step


class Joint(Method):
    name = "joint"

    def begin_task(self, task: int) -> None:
        self.task = task
        self.sampler = Sampler(self.bench, list(range(task + 1)), task, self.seed_for(task, "data"),
                               self.drop_last)


class IncrementalJoint(Joint):
    """Incremental joint training as in the stability-gap example of De Lange, van de Ven &
    Tuytelaars (2023; the reference repository's ``StabilityGap/stability_gap_example.py``): the
    batches of task t are drawn from the union of tasks 1..t and are t times as large, so that
    each task keeps the batch share it had alone."""
    name = "joint_incremental"

    def draw(self, batch_size: int) -> Step:
        return Step(self.sampler.batches(batch_size * (self.task + 1)), batch_size)
