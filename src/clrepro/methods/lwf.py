"""Learning without forgetting (Li & Hoiem 2017), as in van de Ven & Tolias (2019): the current
batch is also scored by the model saved at the end of the previous task, and the network is
distilled on those soft targets (Hinton et al. 2015) with temperature T, scaled by T^2:

    L = 1/t * CE(current) + (1 - 1/t) * T^2 * KD(softmax(z_old / T), log_softmax(z / T)),

t counting tasks from 1. Task-IL: one KD term per previous task's head, averaged. Domain-IL: the
shared head. Class-IL: the units of all classes seen so far; the teacher, which has not seen the
new classes, gives them probability zero (its tempered softmax over the old classes, zero-padded,
as the reference code's ``loss_fn_kd`` does). ``kd_reduction``: ``batchmean`` sums over classes
and averages over samples (Hinton et al.; the reference code); ``mean`` also averages over
classes. ``t_squared``: the T^2 factor, which brings the soft targets' gradients (which scale as
1/T^2) back to the size of the hard targets' (Hinton et al. 2015; the reference code of 2019;
its later versions leave it out by default, ``loss_fn_kd(..., norm=False)``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Hyperparameter, Method, Step, cross_entropy, frozen


def heads(bench, task: int) -> list[tuple[int, int, int]]:
    """Where a network is distilled during ``task`` (from 0), as (first unit, end of the student's
    units, end of the teacher's): Task-IL each previous task's head; Domain-IL the shared head;
    Class-IL every class so far, the teacher's those before the task (zero-padded by
    ``distillation``)."""
    if bench.scenario == "task":
        return [(*bench.active(s, task), bench.active(s, task)[1]) for s in range(task)]
    return [(0, bench.active(task, task)[1], bench.active(task - 1, task - 1)[1])]


def replay_loss(student: torch.Tensor, teacher: torch.Tensor, distill: bool, temperature: float,
                reduction: str = "batchmean") -> torch.Tensor:
    """On the teacher's tempered soft outputs (``distillation``, with its ``reduction``), or
    cross-entropy with its most likely class (the hard labels of DGR)."""
    if distill:
        return distillation(student, teacher, temperature, reduction)
    return F.cross_entropy(student, teacher.argmax(1))


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                 reduction: str = "batchmean", t_squared: bool = True) -> torch.Tensor:
    """T^2 (``t_squared``) * cross-entropy of the student's tempered softmax against the
    teacher's; classes the teacher lacks (the last columns of ``student``) get target probability
    zero."""
    targets = F.softmax(teacher / temperature, 1)
    if targets.shape[1] < student.shape[1]:
        targets = F.pad(targets, (0, student.shape[1] - targets.shape[1]))
    ce = -(targets * F.log_softmax(student / temperature, 1))
    ce = ce.sum(1).mean() if reduction == "batchmean" else ce.mean()
    return ce * temperature ** 2 if t_squared else ce


#: the reduction of ``distillation``, a hyperparameter of LwF and of DGR+distill
KD_REDUCTION = Hyperparameter("batchmean", "string", "The distillation term summed over the output units and "
                              "averaged over the batch, or averaged over both (the three-scenarios code before "
                              "26f00db).", enum=["batchmean", "mean"])


class LwF(Method):
    name = "lwf"
    hyperparameters = {
        "temperature": Hyperparameter(2.0, "number", "Distillation temperature T (Li & Hoiem Eq. 2).",
                                      exclusiveMinimum=0),
        "kd_reduction": KD_REDUCTION,
        "t_squared": Hyperparameter(True, "boolean", "The distillation term scaled by T^2 (Hinton et al. 2015)."),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = None

    def loss(self, step: Step) -> torch.Tensor:
        current = cross_entropy(step.outputs, step.batches)
        if self.teacher is None:
            return current
        (b,), (z,) = step.batches, step.outputs
        with torch.no_grad():
            old = self.teacher(b.x)
        T, red, t2 = self.hp["temperature"], self.hp["kd_reduction"], self.hp["t_squared"]
        where = heads(self.bench, self.task)
        kd = sum(distillation(z[:, lo:hi], old[:, lo:hi_old], T, red, t2) for lo, hi, hi_old in where) / len(where)
        return self.mix(current, kd)

    def end_task(self, task: int) -> None:
        self.teacher = frozen(self.model)

    def state_dict(self) -> dict:
        return {"teacher": None if self.teacher is None else self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state["teacher"] is not None:
            self.teacher = frozen(self.model, state["teacher"])
