"""Synaptic intelligence (Zenke, Poole & Ganguli 2017).

During a task, each parameter's contribution to the change of the loss is accumulated along the
optimisation path (Eq. 3): ``omega_i -= g_i * delta_i`` with ``delta_i`` the actual update of the
step and ``g_i`` the gradient of the loss before it. At the task's end (Eq. 5):

    Omega_i <- Omega_i + clip(omega_i / ((Delta_i)^2 + xi)),

``Delta_i`` being the parameter's total change over the task, then the anchor moves to the current
parameters and ``omega`` is reset. Penalty (Eq. 4, no factor 1/2): ``c * sum_i Omega_i (theta_i -
theta~_i)^2``.

Named variants: ``gradient: unregularised`` (the task loss's gradient, as the authors' code
``pathint`` does) or ``total`` (the gradient of the regularised loss, as the "three scenarios"
reference code does); ``omega_clip: relu`` (pathint clips negative contributions) or ``none``.
"""
from __future__ import annotations

import torch

from .base import REQUIRED, Hyperparameter, Step
from .quadratic import QuadraticPenalty


class SI(QuadraticPenalty):
    name = "si"
    hyperparameters = {
        "c": Hyperparameter(REQUIRED, "number", "Strength of the surrogate loss (Zenke et al. Eq. 4).",
                            per_scenario=True, minimum=0),
        "xi": Hyperparameter(0.1, "number", "Damping of the importance (Eq. 5).", exclusiveMinimum=0),
        "gradient": Hyperparameter("unregularised", "string", "The gradient of the path integral (Eq. 3): the "
                                   "task loss's (pathint) or the regularised loss's (the three-scenarios code).",
                                   enum=["unregularised", "total"]),
        "omega_clip": Hyperparameter("relu", "string", "Negative path-integral contributions clipped at zero "
                                     "(pathint) or kept.", enum=["relu", "none"]),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.omega_total = [torch.zeros_like(p) for p in self._params()]

    def begin_task(self, task: int) -> None:
        super().begin_task(task)
        params = self._params()
        self.start = [p.detach().clone() for p in params]     # theta at the task's start
        self.prev = [p.detach().clone() for p in params]      # theta before the current step
        self.path = [torch.zeros_like(p) for p in params]     # omega (Eq. 3)

    @torch.no_grad()
    def after_backward(self, step: Step) -> None:
        params = self._params()
        if self.hp["gradient"] == "unregularised":
            step.extras["grad"] = torch._foreach_mul([p.grad for p in params], 1.0)  # copy before the penalty
            super().after_backward(step)
        else:
            super().after_backward(step)
            step.extras["grad"] = [p.grad for p in params]

    @torch.no_grad()
    def after_step(self, step: Step) -> None:
        params = self._params()
        delta = torch._foreach_sub(params, self.prev)
        torch._foreach_mul_(delta, step.extras["grad"])
        torch._foreach_sub_(self.path, delta)
        for prev, p in zip(self.prev, params):
            prev.copy_(p)

    @torch.no_grad()
    def end_task(self, task: int) -> None:
        for tot, w, p, s in zip(self.omega_total, self.path, self._params(), self.start):
            contrib = w / ((p - s) ** 2 + self.hp["xi"])
            tot += contrib.clamp_(min=0) if self.hp["omega_clip"] == "relu" else contrib
        self.terms = []
        self.add_term(self.hp["c"], [o.clone() for o in self.omega_total])

    def state_dict(self) -> dict:
        return {**super().state_dict(), "omega_total": self.omega_total}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.omega_total = self.on_device(state["omega_total"])

    def task_state(self) -> dict:
        return {**super().task_state(), "start": self.start, "path": self.path}

    @torch.no_grad()
    def load_task_state(self, state: dict) -> None:
        """(Called with the model restored: ``prev``, theta before the next step, is its parameters.)"""
        super().load_task_state(state)
        self.start, self.path = self.on_device(state["start"]), self.on_device(state["path"])
        torch._foreach_copy_(self.prev, self._params())
