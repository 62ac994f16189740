"""L2 to the previous task's parameters: EWC with the identity for the Fisher (Kirkpatrick et al.
2017, Fig. 2A), penalty ``lambda/2 * sum_i (theta_i - theta*_i)^2`` anchored at the latest task."""
from __future__ import annotations

import torch

from .base import REQUIRED, Hyperparameter
from .quadratic import QuadraticPenalty


class L2(QuadraticPenalty):
    name = "l2"
    hyperparameters = {"lambda": Hyperparameter(REQUIRED, "number", "Strength of the penalty, lambda/2 "
                                                 "sum_i (theta_i - theta*_i)^2.", per_scenario=True, minimum=0)}

    def end_task(self, task: int) -> None:
        self.terms = []
        self.add_term(self.hp["lambda"] / 2, [torch.ones_like(p) for p in self._params()])
