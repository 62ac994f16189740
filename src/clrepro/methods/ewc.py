"""Elastic weight consolidation (Kirkpatrick et al. 2017, Eq. 3) and Online EWC (Schwarz et al.
2018; van de Ven & Tolias 2019, Sec. 4.2).

Penalty ``lambda/2 * sum_i F_i (theta_i - theta*_i)^2``: offline EWC keeps one term per past task,
Online EWC a single term with ``F* <- gamma F* + F_new`` anchored at the latest task.
The diagonal Fisher ``F = E_x E_{c~q(c|x)} [(d log p(c|x)/d theta)^2]`` is estimated on the task's
training data over the task's active output units, with the label distribution ``q`` named by the
``fisher`` variant:

- ``exact``: the model's predictive distribution, summed over all active classes (true Fisher);
- ``sampled``: one label sampled from the predictive distribution per sample;
- ``empirical``: the true label;
- ``predicted``: the most probable label (the estimator of the "three scenarios" reference code).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import evaluating, in_chunks
from .base import REQUIRED, Hyperparameter
from .importance import linear_only, linear_sums, per_sample_grads
from .quadratic import QuadraticPenalty

FISHER_VARIANTS = ("exact", "sampled", "empirical", "predicted")


def fisher_diagonal(model, x: torch.Tensor, y: torch.Tensor, lo: int, hi: int, variant: str = "exact",
                    generator: torch.Generator | None = None, chunk: int = 512,
                    engine: str = "auto") -> dict[str, torch.Tensor]:
    """Diagonal Fisher of ``log softmax(model(x)[:, lo:hi])``, averaged over the samples.
    ``engine``: ``linear`` (outer-product sums, MLPs), ``vmap`` (any model) or ``auto``."""
    if variant not in FISHER_VARIANTS:
        raise ValueError(f"fisher: unknown variant {variant!r}; choose one of {FISHER_VARIANTS}")
    with evaluating(model):
        with torch.no_grad():
            probs = in_chunks(lambda xs: F.softmax(model(xs)[:, lo:hi], 1), x)
        if variant == "empirical":
            labels = [y]
        elif variant == "predicted":
            labels = [probs.argmax(1)]
        elif variant == "sampled":
            labels = [torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(x.device)]
        else:
            labels = [torch.full_like(y, c) for c in range(hi - lo)]
        weights = [probs[:, c] for c in range(hi - lo)] if variant == "exact" else [torch.ones_like(probs[:, 0])]
        onehots = [F.one_hot(lab, hi - lo).to(x.dtype) for lab in labels]

        if engine == "linear" or (engine == "auto" and linear_only(model)):
            def scalars(z, rows):
                logp = F.log_softmax(z[:, lo:hi], 1)
                for oh, w in zip(onehots, weights):
                    yield (logp * oh[rows]).sum(1), w[rows]
            fisher = linear_sums(model, x, scalars, torch.square, chunk)
        else:
            fisher = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
            for oh, w in zip(onehots, weights):
                for rows, g in per_sample_grads(model, x, lambda z, o: (F.log_softmax(z[lo:hi], 0) * o).sum(),
                                                oh, chunk):
                    for n, gn in g.items():
                        fisher[n] += torch.einsum("b,b...->...", w[rows], gn.pow(2))
    return {n: f / len(x) for n, f in fisher.items()}


class EWC(QuadraticPenalty):
    name = "ewc"
    hyperparameters = {
        "lambda": Hyperparameter(REQUIRED, "number", "Strength of the penalty (Kirkpatrick et al. Eq. 3; "
                                 "Schwarz et al. Eq. 5 for online EWC).", per_scenario=True, minimum=0),
        "fisher": Hyperparameter("exact", "string", "How the Fisher information is estimated: the expectation over "
                                 "the model's predictive distribution, one label sampled from it, the true labels "
                                 "(empirical), or the predicted label.",
                                 enum=["exact", "sampled", "empirical", "predicted"]),
        "fisher_n": Hyperparameter(None, ["integer", "null"], "Training samples the Fisher is estimated on (all "
                                   "when null).", minimum=1),
        "online": Hyperparameter(False, "boolean", "Online EWC: one running Fisher and the latest anchor "
                                 "(Schwarz et al. 2018) instead of a term per task."),
        "gamma": Hyperparameter(1.0, "number", "Online EWC: decay of the running Fisher, F* <- gamma F* + F.",
                                per_scenario=True, minimum=0),
        "gamma_in_penalty": Hyperparameter(False, "boolean", "Online EWC: gamma also multiplies F* in the penalty "
                                           "(Schwarz et al. Eq. 5), not only in its update."),
    }

    def end_task(self, task: int) -> None:
        data = self.bench.train[task]
        gen = self.generator_for(task, "fisher")
        idx = None
        if self.hp["fisher_n"] is not None and self.hp["fisher_n"] < len(data):
            idx = torch.randperm(len(data), generator=gen)[: self.hp["fisher_n"]].to(data.p.device)
        x = data.inputs(idx)
        p = data.p if idx is None else data.p.index_select(0, idx)
        lo, hi = self.bench.active(task, task)
        fisher = fisher_diagonal(self.model, x, self.bench.targets(p, task), lo, hi,
                                 self.hp["fisher"], gen)
        omega = [fisher[n] for n in self.params()]
        scale = self.hp["lambda"] / 2
        if not self.hp["online"]:
            self.add_term(scale, omega)
            return
        gamma = self.hp["gamma"]
        if self.terms:   # F* <- gamma F* + F_new, re-anchored at the current parameters
            omega = [gamma * old + new for old, new in zip(self.terms[0]["omega"], omega)]
        # The "three scenarios" reference code multiplies the stored F* by gamma once more in the
        # penalty; ``gamma_in_penalty`` reproduces that choice.
        self.terms = []
        self.add_term(scale * (gamma if self.hp["gamma_in_penalty"] else 1.0), omega)
