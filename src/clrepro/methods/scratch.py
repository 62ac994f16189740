"""From scratch (Zenke et al. 2017, split CIFAR-10/100 "from scratch" bars): before every task
after the first the network is re-initialised (and the training loop makes a fresh optimiser), so
each task is learned by a network that has seen no other. Its meaningful accuracy on task j is the
one right after training it, R[j][j] (the ``learned_*`` metrics)."""
from __future__ import annotations

import torch

from .base import Method


class Scratch(Method):
    name = "scratch"
    fresh_optimizer = True
    scored_when_learned = True

    def begin_task(self, task: int) -> None:
        super().begin_task(task)
        if task == 0:   # the network the run started with
            return
        dev = next(self.model.parameters()).device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(self.seed_for(task, "init"))
            self.model.reset_parameters()
