"""Brain-inspired replay (BI-R; van de Ven, Siegelmann & Tolias 2020, Nat Commun 11:4069), the
components of its ``set_defaults`` (protocols.md 3.2), for the ``mlp`` family:

- replay through feedback: the classifier is also the VAE's encoder. The latent heads read the
  classifier's last hidden layer; a decoder (the feedback connections) mirrors the layers above
  the replay level and is trained with them;
- conditional replay: the prior is a Gaussian mixture with one learned mode per class,
  p(z | c) = N(mu_c, diag sigma_c^2), and the KL term of a sample is taken against its class's
  mode (closed form). Replay draws classes uniformly among those seen before the task, then
  z ~ p(z | c), and decodes;
- gating based on internal context: every hidden unit of the decoder is switched off for a
  fixed random fraction ``gating`` of the classes (the reference code's ``dg_prop``), and the
  decoder always runs with the gates of the class it reconstructs or replays;
- internal replay (``internal: k``): the decoder reconstructs, and replay feeds, the activations
  of the classifier's k-th hidden layer; the layers below are frozen after the first task (in the
  paper they are a pre-trained convolutional front-end). 0 replays the inputs (the reference code
  on MNIST, which has no convolutional layers);
- distillation: the replayed samples are scored by the network saved at the end of the previous
  task, and the network is distilled on its soft outputs at temperature T (``distill: false``:
  its most likely class, as DGR).

The loss of a step (Eq. 1 of the paper's Methods; L_gen = reconstruction + KL, each per input
unit of the replay level, as the reference code):

    L = 1/t * (CE(current) + L_gen(current)) + (1 - 1/t) * (KD(replayed) + L_gen(replayed)).

The classifier and the generator share one loss; the generator's own parameters (latent heads,
decoder, prior) have their own Adam with the experiment's rate (``lr``), which is what one Adam
over all parameters does. Reconstruction is binary cross-entropy for inputs in [0, 1] and squared
error for hidden activations.

Where this differs from the reference code (brain-inspired-replay): there, a replayed sample,
once generated from its class, is reconstructed with the decoder gated by a mixture of the class
masks weighted by the previous network's tempered softmax, and its KL term is taken against the
mixture prior with the same weights; here both use the class it was generated from. The KL
there is a one-sample estimate (here the closed form); the prior's log-variances start at
N(0, 1) draws (here at 0); and every decoder unit is gated for a class with probability
``dg_prop`` (here exactly round(gating x width) units per class).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models import MLP
from .base import Batch, Hyperparameter, Step, adam, frozen
from .lwf import heads, replay_loss
from .replay import Replaying


class FeedbackGenerator(nn.Module):
    """Latent heads on the classifier's top hidden layer, a class-gated decoder to the replay
    level, and a per-class Gaussian prior."""

    def __init__(self, top: int, latent: int, widths: list[int], out: int, classes: int, gating: float,
                 gen: torch.Generator):
        super().__init__()
        self.mu, self.logvar = nn.Linear(top, latent), nn.Linear(top, latent)
        dims = [latent, *widths]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], out)
        self.prior_mu = nn.Parameter(torch.randn(classes, latent, generator=gen))
        self.prior_logvar = nn.Parameter(torch.zeros(classes, latent))
        for i, w in enumerate(widths):   # gate[c, j] = 0 for a random round(gating * w) units j per class
            keys = torch.rand(classes, w, generator=gen)
            off = keys.argsort(1)[:, :round(gating * w)]
            self.register_buffer(f"gate{i}", torch.ones(classes, w).scatter_(1, off, 0.0))

    def gates(self, c: torch.Tensor) -> list[torch.Tensor]:
        return [getattr(self, f"gate{i}")[c] for i in range(len(self.hidden))]

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Logits (inputs) or activations (hidden level) of the replay level."""
        h = z
        for layer, g in zip(self.hidden, self.gates(c)):
            h = torch.relu(layer(h)) * g
        return self.out(h)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, e^logvar) || N(prior_mu[c], e^prior_logvar[c])), summed over the latent."""
        pm, plv = self.prior_mu[c], self.prior_logvar[c]
        return 0.5 * (plv - logvar + (logvar.exp() + (mu - pm) ** 2) / plv.exp() - 1).sum(1)

    def loss(self, top: torch.Tensor, target: torch.Tensor, c: torch.Tensor, binary: bool) -> torch.Tensor:
        """(Reconstruction + KL) / units of the replay level, averaged over the batch."""
        mu, logvar = self.mu(top), self.logvar(top)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        out = self.decode(z, c)
        if binary:
            recon = F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(1)
        else:
            recon = ((out - target) ** 2).sum(1)
        return ((recon + self.kl(mu, logvar, c)) / target.shape[1]).mean()

    @torch.no_grad()
    def sample(self, c: torch.Tensor, gen: torch.Generator, binary: bool) -> torch.Tensor:
        eps = torch.randn(len(c), self.mu.out_features, generator=gen).to(c.device)
        z = self.prior_mu[c] + eps * (0.5 * self.prior_logvar[c]).exp()
        out = self.decode(z, c)
        return torch.sigmoid(out) if binary else out


class BIR(Replaying):
    name = "bir"
    hyperparameters = {
        "latent": Hyperparameter(100, "integer", "Latent dimensions (one mode per class, conditional replay).",
                                 minimum=1),
        "gating": Hyperparameter(0.0, "number", "Fraction of the decoder's hidden units switched off per class "
                                 "(the reference's dg_prop).", per_scenario=True, minimum=0, maximum=1),
        "internal": Hyperparameter(0, "integer", "Replay level: 0 the inputs, k the k-th hidden layer (the layers "
                                   "below are frozen after the first task).", minimum=0),
        "distill": Hyperparameter(True, "boolean", "Replayed samples distilled on the previous network's soft "
                                  "outputs, or labelled with its most likely class."),
        "temperature": Hyperparameter(2.0, "number", "Distillation temperature T.", exclusiveMinimum=0),
        "lr": Hyperparameter(0.001, "number", "The generator's Adam learning rate.", exclusiveMinimum=0),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if type(self.model) is not MLP:
            raise ValueError("model.type: BI-R is implemented for the mlp family (without capacity)")
        if not 0 <= self.hp["gating"] < 1:
            raise ValueError(f"gating: the fraction of decoder units gated per class must be in [0, 1), "
                             f"got {self.hp['gating']}")
        feats = self.model.features
        linears = [m for m in feats if isinstance(m, nn.Linear)]
        k = self.hp["internal"]
        if not 0 <= k < len(linears):
            raise ValueError(f"internal: replay level {k} must be 0 (inputs) or a hidden layer below the top "
                             f"one (1..{len(linears) - 1})")
        self.front, self.rest = feats[:2 * k], feats[2 * k:]   # views: the network's own layers
        self.binary = k == 0
        level = math.prod(self.bench.input_shape) if k == 0 else linears[k - 1].out_features
        widths = [m.out_features for m in reversed(linears[k:])]
        device = next(self.model.parameters()).device
        gen = self.generator_for(0, "generator")
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):   # the run's RNG untouched
            torch.manual_seed(self.seed_for(0, "generator"))
            self.gen = FeedbackGenerator(widths[0], self.hp["latent"], widths, level,
                                         self.bench.classes_per_task * self.bench.n_tasks,
                                         self.hp["gating"], gen).to(device)
        self.gen_opt = adam(self.gen.parameters(), self.hp["lr"])
        self.previous = None   # (network, generator) at the end of the previous task

    def begin_task(self, task: int) -> None:
        super().begin_task(task)
        for p in self.front.parameters():   # the layers below the replay level learn in the first task only
            p.requires_grad_(task == 0)
            if task:
                p.grad = None

    def forward(self, step: Step):
        """The network's outputs, keeping the replay level's and the top hidden layer's activations
        (``extras["level"]``, ``extras["top"]``)."""
        (b,) = step.batches
        level = step.extras["level"] = self.front(b.x.flatten(1))
        top = step.extras["top"] = self.rest(level)
        return [self.model.head(top)]

    def _global(self, b: Batch) -> torch.Tensor:
        """Each sample's class among all the benchmark's (what the generator is conditioned on)."""
        return b.y if self.bench.scenario == "class" else b.y + self.bench.classes_before(b.task)

    def loss(self, step: Step):
        (b,), (z,), level = step.batches, step.outputs, step.extras["level"]
        current = (F.cross_entropy(z[:, b.lo:b.hi], b.y)
                   + self.gen.loss(step.extras["top"], level.detach(), self._global(b), self.binary))
        if self.previous is None:
            return current
        t, k = self.task, self.bench.classes_per_task
        old_net, old_gen = self.previous
        c = torch.randint(k * t, (len(b.y),), generator=self.replay_gen).to(b.y.device)
        x = old_gen.sample(c, self.replay_gen, self.binary)
        with torch.no_grad():
            teacher = old_net.head(old_net.features[len(self.front):](x))
        top = self.rest(x)
        z = self.model.head(top)
        where, soft, T = heads(self.bench, t), self.hp["distill"], self.hp["temperature"]
        if self.bench.scenario == "task":   # each replayed sample on its own task's head
            kd = 0.0
            for s in (c // k).unique().tolist():
                sel, (lo, hi, hi_old) = c // k == s, where[s]
                kd = kd + sel.float().mean() * replay_loss(z[sel, lo:hi], teacher[sel, lo:hi_old], soft, T)
        else:
            (lo, hi, hi_old), = where
            kd = replay_loss(z[:, lo:hi], teacher[:, lo:hi_old], soft, T)
        return self.mix(current, kd + self.gen.loss(top, x, c, self.binary))

    def after_step(self, step: Step) -> None:
        self.gen_opt.step()
        self.gen_opt.zero_grad(set_to_none=True)

    def end_task(self, task: int) -> None:
        self.previous = (frozen(self.model), frozen(self.gen))

    def state_dict(self) -> dict:
        prev = None if self.previous is None else [m.state_dict() for m in self.previous]
        return {"gen": self.gen.state_dict(), "gen_opt": self.gen_opt.state_dict(), "previous": prev}

    def load_state_dict(self, state: dict) -> None:
        if state["previous"] is not None:
            self.previous = tuple(frozen(m, s) for m, s in zip((self.model, self.gen), state["previous"]))
        self.gen.load_state_dict(state["gen"])
        self.gen_opt.load_state_dict(state["gen_opt"])
