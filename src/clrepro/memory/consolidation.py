"""Stochastic consolidation of lifelong memory (Shaham, Chandra, Kreiman & Sompolinsky 2022).

A Hopfield network of N binary (+-1) neurons stores a stream of random patterns, one per unit of
time, by Hebbian learning; memory l enters the couplings with its efficacy A_l, which decays:

    J_ij = (1/N) sum_l A_l xi_i^l xi_j^l  (J_ii = 0),        dA_l/dt = -A_l / tau.

Memories are rehearsed at random, each as a Poisson process of rate r_l = lambda F(A_l / A_c); a
rehearsal adds ``boost`` to A_l (self-amplifying: stronger memories have larger basins, are
rehearsed more, and grow). Mean-field retrieval criterion: memory l is retrievable iff A_l > A_c,

    A_c = sqrt(sum_k A_k^2 / (alpha_c N)),

the crosstalk of all stored memories against Hopfield's capacity alpha_c = 0.138 (a static set of
P equal efficacies is retrievable iff P < alpha_c N). Retrieval is also tested by the network
dynamics from a corrupted cue (``retrieve``). F is not given in our sources; ours is
F(x) = (1 - 1/x)_+, zero for memories below A_c, growing with the margin above it, saturating.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

ALPHA_C = 0.138


def critical_efficacy(efficacy: torch.Tensor, n: int, alpha_c: float = ALPHA_C) -> float:
    """A_c = sqrt(sum_k A_k^2 / (alpha_c N))."""
    return math.sqrt(float((efficacy ** 2).sum()) / (alpha_c * n))


def rehearsal_rate(efficacy: torch.Tensor, a_c: float, lam: float) -> torch.Tensor:
    """r_l = lambda F(A_l / A_c), F(x) = (1 - 1/x)_+."""
    return lam * (1 - a_c / efficacy.clamp(min=1e-30)).clamp(min=0)


def couplings(patterns: torch.Tensor, efficacy: torch.Tensor) -> torch.Tensor:
    """J = Xi^T diag(A) Xi / N with a zero diagonal; ``patterns`` (P, N) of +-1."""
    n = patterns.shape[1]
    j = patterns.T @ (efficacy[:, None] * patterns) / n
    j.fill_diagonal_(0)
    return j


def corrupt(patterns: torch.Tensor, flip: float, gen: torch.Generator) -> torch.Tensor:
    """Each pattern with a random fraction ``flip`` of its bits flipped (exactly round(flip N))."""
    p, n = patterns.shape
    k = round(flip * n)
    idx = torch.rand(p, n, generator=gen, device=patterns.device).argsort(1)[:, :k]
    signs = torch.ones_like(patterns).scatter_(1, idx, -1.0)
    return patterns * signs


def retrieve(j: torch.Tensor, cues: torch.Tensor, steps: int = 30) -> torch.Tensor:
    """Zero-temperature synchronous dynamics s <- sign(J s) from each cue (rows), a unit keeping its
    state when its field is exactly zero; stops early at a fixed point."""
    s = cues.clone()
    for _ in range(steps):
        h = s @ j.T
        new = torch.where(h == 0, s, torch.sign(h))
        if torch.equal(new, s):
            break
        s = new
    return s


def overlaps(states: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    """m = s . xi / N of each state with its own pattern (rows matched)."""
    return (states * patterns).mean(1)


@dataclass
class Memories:
    """The stored memories: patterns (P, N), efficacies, and birth times."""

    patterns: torch.Tensor
    efficacy: torch.Tensor
    born: torch.Tensor
    rehearsals: int = 0
    history: list = field(default_factory=list)

    def ages(self, now: int) -> torch.Tensor:
        return now - self.born


def simulate(n: int, steps: int, tau: float, a0: float = 1.0, lam: float = 0.0, boost: float = 0.0,
             seed: int = 0, device: str | torch.device = "cpu", prune: float = 1e-4,
             record_every: int = 0) -> Memories:
    """Run the stream for ``steps`` units of time: each step decays every efficacy by exp(-1/tau),
    stores a new pattern with efficacy ``a0``, and rehearses memory l with probability
    1 - exp(-r_l) (Poisson rate r_l over one unit), adding ``boost``. Memories whose efficacy falls
    below ``prune`` x a0 are dropped (their share of A_c is negligible). ``record_every`` > 0
    appends (time, A_c, ages, efficacies) to ``history``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    mem = Memories(torch.empty(0, n, device=device), torch.empty(0, device=device),
                   torch.empty(0, dtype=torch.long, device=device))
    decay = math.exp(-1 / tau)
    for t in range(steps):
        new = torch.randint(0, 2, (1, n), generator=gen, device=device).float() * 2 - 1
        keep = mem.efficacy * decay >= prune * a0
        mem.patterns = torch.cat([mem.patterns[keep], new])
        mem.efficacy = torch.cat([mem.efficacy[keep] * decay, torch.tensor([a0], device=device)])
        mem.born = torch.cat([mem.born[keep], torch.tensor([t], device=device)])
        if lam > 0:
            rate = rehearsal_rate(mem.efficacy, critical_efficacy(mem.efficacy, n), lam)
            hit = torch.rand(len(rate), generator=gen, device=device) < -torch.expm1(-rate)
            mem.efficacy = mem.efficacy + boost * hit
            mem.rehearsals += int(hit.sum())
        if record_every and (t + 1) % record_every == 0:
            mem.history.append((t, critical_efficacy(mem.efficacy, n), mem.ages(t).cpu(), mem.efficacy.cpu()))
    return mem
