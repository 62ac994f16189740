"""iCaRL (Rebuffi, Kolesnikov, Sperl & Lampert 2017), class-incremental, as in van de Ven & Tolias
(2019):

- training set: the current task's data and the stored exemplars; every batch holds both in
  proportion to their numbers (as one shuffled set would on average);
- loss (Alg. 3): binary cross-entropy with logits summed over the classes seen, averaged over the
  batch; the targets of the new classes are the labels (one-hot), those of the old classes the
  previous network's sigmoid outputs sigma(z_old / T) (distillation; T = 1 in Rebuffi et al., the
  reference code of van de Ven & Tolias divides by its distillation temperature), for new and
  stored samples alike;
- exemplars (Alg. 4, 5): chosen by herding on L2-normalised features after each task, from a total
  ``budget`` shared by the classes seen (earlier sets cut to their first budget // classes);
  ``herding_mean`` as in ``replay.herding``. ``exemplars: random`` stores a uniform random subset of
  each class in random order instead: what the three-scenarios reference code stores (its herding
  ranks features computed through a shuffling data loader, then stores the samples at those
  positions of the unshuffled class; exemplars.py, utils.get_data_loader);
- classification (Alg. 1): nearest mean of exemplars, y* = argmin_y || phi(x) - mu_y || with
  normalised features and class means. Before the first exemplars the network's outputs are used.
  The features are what the output layer reads (``model.embed``), flattened: a convolutional
  head's feature map (SqueezeNet's) is one vector per sample.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import evaluating
from .base import Hyperparameter, Step, forward, frozen
from .replay import Buffer, Replaying


class ICaRL(Replaying):
    name = "icarl"
    scenarios = ("class",)
    scores_need_end_task = True   # the last task's exemplars and means classify its classes
    hyperparameters = {
        "budget": Hyperparameter(2000, "integer", "Exemplars in all, K (Rebuffi et al. Alg. 2).", minimum=1),
        "temperature": Hyperparameter(1.0, "number", "Temperature of the old network's sigmoid targets (Alg. 3).",
                                      exclusiveMinimum=0),
        "herding_mean": Hyperparameter("plain", "string", "Herding approaches the mean of the features as they are "
                                       "or of the unit-normalised features (Alg. 4).", enum=["plain", "unit"]),
    }
    optional_hyperparameters = {
        "exemplars": Hyperparameter("herding", "string", "Each class's exemplars: herding's picks (Alg. 4), or a "
                                    "uniform random subset in random order (what the three-scenarios reference "
                                    "code stores).", enum=["herding", "random"]),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffer = Buffer(selection="herding" if self.hp["exemplars"] == "herding" else "reservoir",
                             total=self.hp["budget"], herding_mean=self.hp["herding_mean"])
        self.teacher = None
        self.means = None   # (n_outputs, D): normalised class means of the exemplars; NaN rows unseen

    def draw(self, batch_size: int) -> Step:
        stored, current = len(self.buffer), self.sampler.size
        n_stored = round(batch_size * stored / (stored + current)) if stored else 0
        return Step(self.sampler.batches(batch_size - n_stored) + (
            self.buffer.batches(self.bench, n_stored, self.task, self.replay_gen) if n_stored else []), batch_size)

    def loss(self, step: Step) -> torch.Tensor:
        outputs, batches = step.outputs, step.batches
        z = torch.cat([o[:, b.lo:b.hi] for o, b in zip(outputs, batches)])
        y = torch.cat([b.y for b in batches])
        target = F.one_hot(y, z.shape[1]).to(z.dtype)
        if self.teacher is not None:
            old = self.bench.classes_before(self.task)
            with torch.no_grad():
                teacher = torch.cat(forward(self.teacher, batches))[:, :old]
            target[:, :old] = torch.sigmoid(teacher / self.hp["temperature"])
        return F.binary_cross_entropy_with_logits(z, target, reduction="none").sum(1).mean()

    @torch.no_grad()
    def end_task(self, task: int) -> None:
        self.buffer.add(self.bench, task, self.generator_for(task, "select"), self.model)
        self.update_means()
        self.teacher = frozen(self.model)

    @torch.no_grad()
    def update_means(self) -> None:
        with evaluating(self.model):
            phi = F.normalize(self.model.embed(self.buffer.x).flatten(1), dim=1)
        self.means = torch.full((self.bench.n_outputs, phi.shape[1]), float("nan"), device=phi.device)
        for c in self.buffer.p.unique():
            self.means[c] = F.normalize(phi[self.buffer.p == c].mean(0), dim=0)

    def scores(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Minus the distance to each class mean (-inf for classes without exemplars)."""
        if self.means is None:
            return self.model(x)
        phi = F.normalize(self.model.embed(x).flatten(1), dim=1)
        return -torch.cdist(phi, self.means.nan_to_num(0.0)).masked_fill(self.means.isnan().any(1), float("inf"))

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "means": self.means,
                "teacher": None if self.teacher is None else self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(self.on_device(state["buffer"]))
        self.means = self.on_device(state["means"])
        if state["teacher"] is not None:
            self.teacher = frozen(self.model, state["teacher"])
