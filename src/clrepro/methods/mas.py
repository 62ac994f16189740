"""Memory aware synapses (Aljundi et al. 2018). Importance (Eq. 4) is the mean absolute gradient of
the squared L2 norm of the network's (active) output, per sample:
``Omega_i = 1/N sum_n |d ||f(x_n)||_2^2 / d theta_i|``, accumulated over tasks; penalty (Eq. 3)
``lambda * sum_i Omega_i (theta_i - theta*_i)^2`` anchored at the latest task."""
from __future__ import annotations

import torch

from ..models import evaluating
from .base import REQUIRED, Hyperparameter
from .importance import linear_only, linear_sums, per_sample_grads
from .quadratic import QuadraticPenalty


def mas_importance(model, x: torch.Tensor, lo: int, hi: int, chunk: int = 512, engine: str = "auto"
                   ) -> dict[str, torch.Tensor]:
    with evaluating(model):
        if engine == "linear" or (engine == "auto" and linear_only(model)):
            omega = linear_sums(model, x, lambda z, rows: [(z[:, lo:hi].pow(2).sum(1), torch.ones_like(z[:, 0]))],
                                torch.abs, chunk)
        else:
            omega = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
            for _, g in per_sample_grads(model, x, lambda z, _: z[lo:hi].pow(2).sum(), chunk=chunk):
                for n, gn in g.items():
                    omega[n] += gn.abs().sum(0)
    return {n: o / len(x) for n, o in omega.items()}


class MAS(QuadraticPenalty):
    name = "mas"
    hyperparameters = {"lambda": Hyperparameter(REQUIRED, "number", "Strength of the penalty (Aljundi et al. Eq. 3).",
                                                 per_scenario=True, minimum=0)}

    def end_task(self, task: int) -> None:
        lo, hi = self.bench.active(task, task)
        new = mas_importance(self.model, self.bench.train[task].inputs(), lo, hi)
        omega = [new[n] for n in self.params()]
        if self.terms:
            omega = [o + old for o, old in zip(omega, self.terms[0]["omega"])]
        self.terms = []
        self.add_term(self.hp["lambda"], omega)
