"""Averaged gradient episodic memory (A-GEM; Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, Eq. 11):
after the backward pass of the current batch, a batch drawn from the memory buffer gives the
reference gradient g_ref; when the update would increase the loss on it (g . g_ref < 0) the
gradient is projected,

    g~ = g - (g . g_ref / g_ref . g_ref) g_ref,

so that g~ . g_ref = 0 >= 0; otherwise g is kept. The buffer is ER's (``replay.Buffer``)."""
from __future__ import annotations

import torch

from .base import cross_entropy, forward
from .er import ER


def project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection of the flat gradient ``g`` against ``g_ref`` (Eq. 11), computed with the
    unit vector of g_ref: a reference gradient of a well-learned memory can be so small that
    g_ref . g_ref underflows to zero in float32 while g . g_ref does not."""
    if torch.dot(g, g_ref) >= 0:
        return g
    r = g_ref / g_ref.abs().max()
    r = r / r.norm()
    return g - torch.dot(g, r) * r


class AGEM(ER):
    name = "agem"

    def train_batches(self, batch_size: int):
        self.batch_size = batch_size
        return self.sampler.batches(batch_size)

    def loss(self, outputs, batches):
        return cross_entropy(outputs, batches)

    def after_backward(self) -> None:
        replay = self.replay(self.batch_size)
        if not replay:
            return
        params = [p for p in self.model.parameters() if p.requires_grad]
        g = torch.cat([p.grad.flatten() for p in params])
        ref = torch.autograd.grad(cross_entropy(forward(self.model, replay), replay), params, allow_unused=True)
        g_ref = torch.cat([(r if r is not None else torch.zeros_like(p)).flatten() for r, p in zip(ref, params)])
        g = project(g, g_ref)
        offset = 0
        for p in params:
            p.grad.copy_(g[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
