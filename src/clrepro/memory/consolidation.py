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

A memory's pattern is drawn from (seed, birth time), so the stream keeps only efficacies and birth
times and regenerates the patterns it needs (``Memories.patterns``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..methods.base import derive_seed

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
    j = patterns.T @ (efficacy[:, None].to(patterns.dtype) * patterns) / n
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


def pattern_of(seed: int, born: torch.Tensor, n: int, device="cpu") -> torch.Tensor:
    """The +-1 patterns (P, N) of the memories born at ``born`` in the stream of ``seed``."""
    rows = [torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(derive_seed(seed, "pattern", int(t))))
            for t in born.tolist()]
    return (torch.stack(rows) * 2 - 1).float().to(device) if rows else torch.empty(0, n, device=device)


@dataclass
class Memories:
    """The stored memories of a stream: efficacies and birth times (one memory per unit time), the
    network size and the seed their patterns are drawn from."""

    n: int
    seed: int
    efficacy: torch.Tensor
    born: torch.Tensor
    rehearsals: int = 0
    history: list = field(default_factory=list)

    def ages(self, now: int) -> torch.Tensor:
        return now - self.born

    @property
    def patterns(self) -> torch.Tensor:
        return pattern_of(self.seed, self.born, self.n, self.efficacy.device)

    def critical(self, alpha_c: float = ALPHA_C) -> float:
        return critical_efficacy(self.efficacy, self.n, alpha_c)

    def retrieved(self, flip: float, steps: int, threshold: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Retrieval by the network dynamics: from each memory's pattern with a fraction ``flip``
        of its bits flipped, run ``retrieve``; (overlap with the pattern, overlap > threshold)."""
        xi = self.patterns
        gen = torch.Generator(device=xi.device).manual_seed(derive_seed(seed, "cue"))
        m = overlaps(retrieve(couplings(xi, self.efficacy), corrupt(xi, flip, gen), steps), xi)
        return m, m > threshold


class Stream:
    """The network through time: each ``step`` decays every efficacy by exp(-1/tau), stores a new
    memory with efficacy ``a0`` and rehearses memory l with probability 1 - exp(-r_l) (a Poisson
    process of rate r_l over one unit), adding ``boost``. Memories below ``prune`` x a0 are dropped
    (their share of A_c is negligible). ``branch`` copies the stream to run it differently (a
    lesion) beside the original, with random draws of its own."""

    def __init__(self, n: int, tau: float, a0: float = 1.0, lam: float = 0.0, boost: float = 0.0,
                 seed: int = 0, alpha_c: float = ALPHA_C, prune: float = 1e-4, device="cpu"):
        self.tau, self.a0, self.lam, self.boost, self.alpha_c, self.prune = tau, a0, lam, boost, alpha_c, prune
        self.mem = Memories(n, seed, torch.empty(0, dtype=torch.float64, device=device),
                            torch.empty(0, dtype=torch.long, device=device))
        self.gen = torch.Generator(device=device).manual_seed(derive_seed(seed, "rehearsal"))
        self.t = 0   # the next memory's birth time

    def step(self, tau: float | None = None) -> None:
        """One unit of time; ``tau`` overrides the decay time for this step."""
        mem, dev = self.mem, self.mem.efficacy.device
        a = mem.efficacy * math.exp(-1 / (tau or self.tau))
        keep = a >= self.prune * self.a0
        mem.efficacy = torch.cat([a[keep], torch.full((1,), self.a0, dtype=a.dtype, device=dev)])
        mem.born = torch.cat([mem.born[keep], torch.full((1,), self.t, device=dev)])
        if self.lam > 0:
            rate = rehearsal_rate(mem.efficacy, mem.critical(self.alpha_c), self.lam)
            hit = torch.rand(len(rate), generator=self.gen, dtype=rate.dtype, device=dev) < -torch.expm1(-rate)
            mem.efficacy = mem.efficacy + self.boost * hit
            mem.rehearsals += int(hit.sum())
        self.t += 1

    def run(self, steps: int, tau: float | None = None) -> "Stream":
        for _ in range(steps):
            self.step(tau)
        return self

    def branch(self, name: str) -> "Stream":
        other = Stream.__new__(Stream)
        other.__dict__.update(self.__dict__)
        other.mem = Memories(self.mem.n, self.mem.seed, self.mem.efficacy.clone(), self.mem.born.clone(),
                             self.mem.rehearsals)
        other.gen = torch.Generator(device=self.mem.efficacy.device).manual_seed(
            derive_seed(self.mem.seed, "branch", name, self.t))
        return other


def simulate(n: int, steps: int, tau: float, a0: float = 1.0, lam: float = 0.0, boost: float = 0.0,
             seed: int = 0, device: str | torch.device = "cpu", prune: float = 1e-4,
             record_every: int = 0) -> Memories:
    """Run a ``Stream`` for ``steps`` units of time. ``record_every`` > 0 appends
    (time, A_c, ages, efficacies) to ``history``."""
    stream = Stream(n, tau, a0, lam, boost, seed, prune=prune, device=device)
    mem = stream.mem
    for t in range(steps):
        stream.step()
        mem = stream.mem
        if record_every and (t + 1) % record_every == 0:
            mem.history.append((t, mem.critical(), mem.ages(t).cpu(), mem.efficacy.cpu()))
    return mem
