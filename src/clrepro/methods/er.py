"""Experience replay (ER; e.g. Chaudhry et al. 2019, "On tiny episodic memories"), as in van de
Ven, Tuytelaars & Tolias (2022): every step adds to the current batch an equally large batch drawn
from the memory buffer (``replay.Buffer``), each replayed sample scored on its own task's active
units, and weights the two losses by the number of tasks seen,

    L = 1/t * L_current + (1 - 1/t) * L_replay,

t counting tasks from 1. The buffer (its samples and the generator that draws from it) is part of
every checkpoint. ``budget`` (total samples, shared by the classes seen) replaces ``per_class``
when given."""
from __future__ import annotations

from .base import Batch, Hyperparameter, Step, cross_entropy, n_current
from .replay import Buffer, Replaying


class ER(Replaying):
    name = "er"
    hyperparameters = {
        "per_class": Hyperparameter(100, "integer", "Stored samples per class (without a budget).", minimum=1),
        "budget": Hyperparameter(None, ["integer", "null"], "Stored samples in all, shared by the classes seen "
                                 "(replaces per_class).", minimum=1),
        "selection": Hyperparameter("reservoir", "string", "How the samples of a task are chosen: at random or by "
                                    "herding (Rebuffi et al. Alg. 4).", enum=["reservoir", "herding"]),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        budget = self.hp["budget"]
        self.buffer = Buffer(None if budget else self.hp["per_class"], self.hp["selection"], budget)

    def replay(self, n: int) -> list[Batch]:
        return self.buffer.batches(self.bench, n, self.task, self.replay_gen) if len(self.buffer) else []

    def draw(self, batch_size: int) -> Step:
        return Step(self.sampler.batches(batch_size) + self.replay(batch_size), batch_size)

    def loss(self, step: Step):
        outputs, batches = step.outputs, step.batches
        n = n_current(batches)
        current = cross_entropy(outputs[:n], batches[:n])
        if len(batches) == n:
            return current
        return self.mix(current, cross_entropy(outputs[n:], batches[n:]))

    def end_task(self, task: int) -> None:
        self.buffer.add(self.bench, task, self.generator_for(task, "select"), self.model)

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(self.on_device(state["buffer"]))
