"""Quadratic parameter penalties shared by EWC, SI, MAS and L2:

    R(theta) = sum_k s_k * sum_i Omega_k,i (theta_i - theta*_k,i)^2,

one term ``k`` per anchor (offline EWC keeps one per task, the others one in all). The loop never
builds an autograd graph for R: ``after_backward`` adds its analytic gradient
``2 s_k Omega_k (theta - theta*_k)`` to ``p.grad`` with fused foreach ops; ``penalty()`` gives the
differentiable value (for logging and tests)."""
from __future__ import annotations

import torch

from .base import Method, Step


class QuadraticPenalty(Method):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.terms: list[dict] = []   # {"scale": float, "omega": [tensors], "anchor": [tensors]}

    def _params(self) -> list[torch.Tensor]:
        return list(self.params().values())

    def add_term(self, scale: float, omega: list[torch.Tensor]) -> None:
        self.terms.append({"scale": float(scale), "omega": omega,
                           "anchor": [p.detach().clone() for p in self._params()]})

    def penalty(self) -> torch.Tensor:
        params = self._params()
        total = torch.zeros((), device=params[0].device)
        for term in self.terms:
            for p, om, a in zip(params, term["omega"], term["anchor"]):
                total = total + term["scale"] * (om * (p - a) ** 2).sum()
        return total

    @torch.no_grad()
    def add_penalty_grad(self) -> None:
        params = self._params()
        grads = [p.grad for p in params]
        for term in self.terms:
            diff = torch._foreach_sub(params, term["anchor"])
            torch._foreach_mul_(diff, term["omega"])
            torch._foreach_add_(grads, diff, alpha=2.0 * term["scale"])

    def after_backward(self, step: Step) -> None:
        if self.terms:
            self.add_penalty_grad()

    def state_dict(self) -> dict:
        return {"terms": self.terms}

    def load_state_dict(self, state: dict) -> None:
        self.terms = self.on_device(state["terms"])
