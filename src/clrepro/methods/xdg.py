"""Context-dependent gating (XdG; Masse, Grant & Freedman 2018, PNAS 115:E10467), as van de Ven &
Tolias (2019) run it in Task-IL: for every task a fixed random subset of each fully connected hidden
layer's units is gated, the same subset whenever that task is trained or tested. Only the task's
identity chooses the gates, so XdG runs in Task-IL alone.

- ``gating``: the fraction of each hidden layer's units gated per task; int(gating x width) units,
  drawn without replacement, as the reference code does (``main.py``: ``np.random.choice(n_units,
  size=int(gating_prop * n_units), replace=False)``). Each task's draw has its own seed (the run's
  data seed and the task), so the gates are fixed per task and seed and need no checkpoint.
- ``gate``: what a gate switches off.
  - ``input`` (reference code, ``excitability_modules.linearExcitability``): the gate multiplies
    the unit's weighted input, y = m * (x W^T) + b, so a gated unit still passes relu(b) and its
    bias keeps learning;
  - ``activity`` (Masse et al.): the unit's activity is zero, y = m * (x W^T + b).

Convolutional layers are never gated (the reference code gates its ``fcE`` layers only); the
output layer is the scenario's multi-head layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import CNN, MLP
from .base import Hyperparameter, Method, Step


class XdG(Method):
    name = "xdg"
    scenarios = ("task",)
    hyperparameters = {
        "gating": Hyperparameter(0.0, "number", "Fraction of each hidden layer's units gated off per task (Masse "
                                 "et al.; the reference's param_values.py).", per_scenario=True, minimum=0,
                                 exclusiveMaximum=1),
        "gate": Hyperparameter("input", "string", "Gate the weighted input (the reference code) or the activity.",
                               enum=["input", "activity"]),
    }

    def __init__(self, model, bench, hp, seed, drop_last=True):
        super().__init__(model, bench, hp, seed, drop_last)
        if type(model) not in (MLP, CNN):
            raise ValueError(f"xdg: gates the fully connected hidden layers of an mlp or cnn model, "
                             f"not a {type(model).__name__}")
        if not 0 <= hp["gating"] < 1:
            raise ValueError(f"gating: the fraction of hidden units gated per task must be in [0, 1), "
                             f"got {hp['gating']}")
        self.linears = [m for m in model.features if isinstance(m, nn.Linear)]
        self.masks = [self.gates(t) for t in range(bench.n_tasks)]

    def gates(self, task: int) -> list[torch.Tensor]:
        """Task ``task``'s gates: per hidden layer a 0/1 vector, 0 for the gated units."""
        gen = self.generator_for(task, "xdg")
        masks = []
        for lin in self.linears:
            width = lin.out_features
            mask = torch.ones(width)
            mask[torch.randperm(width, generator=gen)[:int(self.hp["gating"] * width)]] = 0.0
            masks.append(mask.to(lin.weight.device))
        return masks

    def embed(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """The features the output layer reads, with task ``task``'s gates on."""
        gates = iter(self.masks[task])
        h = self.model.stem(x)
        for layer in self.model.features:
            if not isinstance(layer, nn.Linear):
                h = layer(h)
            elif self.hp["gate"] == "input":
                h = F.linear(h, layer.weight) * next(gates) + layer.bias
            else:
                h = layer(h) * next(gates)
        return h

    def forward(self, step: Step) -> list[torch.Tensor]:
        return [self.model.head(self.embed(b.x, b.task)) for b in step.batches]

    def scores(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.model.head(self.embed(x, task))
