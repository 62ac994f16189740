"""Averaged gradient episodic memory (A-GEM; Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, Eq. 11):
after the backward pass of the current batch, a batch drawn from the memory buffer gives the
reference gradient g_ref; when the update would increase the loss on it (g . g_ref < 0) the
gradient is projected,

    g~ = g - (g . g_ref / g_ref . g_ref) g_ref,

so that g~ . g_ref = 0 >= 0; otherwise g is kept. The buffer is ER's (``replay.Buffer``).

The constraint holds for a gradient step, -lr g~. The optimiser takes its own step dtheta (Adam
rescales every coordinate), so each task's log records how far the steps went against it: the
first-order rise of the memory batch's loss, sum over steps of max(0, dtheta . g_ref) ("uphill";
rounding error only for plain SGD), beside the fraction of steps projected and the memory batch's
loss (its maximum over the task and at the task's last step)."""
from __future__ import annotations

import torch

from .base import Step, cross_entropy, forward
from .er import ER

TALLY = ("steps", "projected", "uphill", "replay_loss_max", "replay_loss_last")


def project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection of the flat gradient ``g`` against ``g_ref`` (Eq. 11), computed with the
    unit vector of g_ref: a reference gradient of a well-learned memory can be so small that
    g_ref . g_ref underflows to zero in float32 while g . g_ref does not. Returns ``g`` itself
    when it is kept."""
    if torch.dot(g, g_ref) >= 0:
        return g
    r = g_ref / g_ref.abs().max()
    r = r / r.norm()
    return g - torch.dot(g, r) * r


class AGEM(ER):
    name = "agem"

    def begin_task(self, task: int) -> None:
        super().begin_task(task)
        self.tally = torch.zeros(len(TALLY), device=next(self.model.parameters()).device)

    def draw(self, batch_size: int) -> Step:
        """The current task's batch only: the memory's batch is drawn after the backward pass."""
        return Step(self.sampler.batches(batch_size), batch_size)

    def loss(self, step: Step) -> torch.Tensor:
        return cross_entropy(step.outputs, step.batches)

    def after_backward(self, step: Step) -> None:
        replay = self.replay(step.size)
        if not replay:
            return
        params = [p for p in self.model.parameters() if p.requires_grad]
        g = torch.cat([p.grad.flatten() for p in params])
        memory_loss = cross_entropy(forward(self.model, replay), replay)
        ref = torch.autograd.grad(memory_loss, params, allow_unused=True)
        g_ref = torch.cat([(r if r is not None else torch.zeros_like(p)).flatten() for r, p in zip(ref, params)])
        g_step = project(g, g_ref)
        offset = 0
        for p in params:
            p.grad.copy_(g_step[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        step.extras["reference"] = (torch.cat([p.detach().flatten() for p in params]), g_ref, g_step is not g,
                                    memory_loss.detach())

    def after_step(self, step: Step) -> None:
        if "reference" not in step.extras:
            return
        theta, g_ref, projected, memory_loss = step.extras["reference"]
        step = torch.cat([p.detach().flatten() for p in self.model.parameters() if p.requires_grad]) - theta
        t = self.tally
        t[0] += 1
        t[1] += projected
        t[2] += torch.dot(step, g_ref).clamp(min=0)
        t[3] = torch.maximum(t[3], memory_loss)
        t[4] = memory_loss

    def task_log(self, task: int) -> dict:
        steps, projected, uphill, loss_max, loss_last = self.tally.tolist()
        if not steps:
            return dict.fromkeys(TALLY[1:])
        return {"projected": projected / steps, "uphill": uphill, "replay_loss_max": loss_max,
                "replay_loss_last": loss_last}

    def task_state(self) -> dict:
        return super().task_state() | {"tally": self.tally.clone()}

    def load_task_state(self, state: dict) -> None:
        super().load_task_state(state)
        self.tally = self.on_device(state["tally"]).clone()
