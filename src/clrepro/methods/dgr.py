"""Deep generative replay (DGR; Shin, Lee, Kim & Kim 2017) with a variational autoencoder, and
DGR+distill, as in van de Ven & Tolias (2019):

- a VAE (``VAE``: fully connected encoder and decoder, the classifier's hidden widths, Gaussian
  latent) is trained alongside the classifier, on the same batches, with its own Adam optimiser;
- from the second task on, every step adds a batch of B samples decoded from z ~ N(0, I) by the
  generator saved at the end of the previous task (one batched pass on the device), labelled by
  the classifier saved with it: its most likely class (DGR) or its tempered soft outputs
  (DGR+distill, ``distill: true``, temperature T, the loss scaled by T^2 and reduced over the
  units as LwF's ``kd_reduction``);
- both networks weight the current and the replayed losses by the tasks seen:
  L = 1/t * L_current + (1 - 1/t) * L_replay.

Task-IL: the replayed batch is scored on every previous task's head and those losses averaged;
Domain-IL: the shared head; Class-IL: the units of every class seen so far, the current task's
included, with the teacher's probabilities zero-padded for the new classes (as LwF; the reference
code's replay uses the same active classes as the current batch). Scoring replay on the old
classes' units only would leave the new classes' outputs free to win on every input.
The VAE's loss is the negative ELBO per input dimension: binary cross-entropy of the
reconstruction (inputs in [0, 1]) plus the Gaussian KL divergence, both divided by the input size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Hyperparameter, Step, adam, cross_entropy, frozen
from .lwf import KD_REDUCTION, heads, replay_loss
from .replay import Replaying


class VAE(nn.Module):
    def __init__(self, input_dim: int, hidden: list[int], latent: int):
        super().__init__()
        dims = [input_dim, *hidden]
        enc: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            enc += [nn.Linear(a, b), nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self.mu, self.logvar = nn.Linear(dims[-1], latent), nn.Linear(dims[-1], latent)
        rev = [latent, *reversed(hidden)]
        dec: list[nn.Module] = []
        for a, b in zip(rev[:-1], rev[1:]):
            dec += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*dec, nn.Linear(rev[-1], input_dim))
        self.latent = latent

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance."""
        h = self.encoder(x.flatten(1))
        return self.mu(h), self.logvar(h)

    def reparameterise(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """-ELBO / input size, averaged over the batch."""
        x = x.flatten(1)
        mu, logvar = self.encode(x)
        z = self.reparameterise(mu, logvar)
        recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(1)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
        return ((recon + kl) / x.shape[1]).mean()

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
        device = self.mu.weight.device
        z = torch.randn(n, self.latent, generator=gen, device="cpu").to(device)
        return torch.sigmoid(self.decoder(z)).view(n, *shape)


class DGR(Replaying):
    name = "dgr"
    hyperparameters = {
        "distill": Hyperparameter(False, "boolean", "Replayed samples labelled with the previous model's soft "
                                  "outputs (DGR+distill) instead of its most likely class."),
        "temperature": Hyperparameter(2.0, "number", "DGR+distill: distillation temperature T.", exclusiveMinimum=0),
        "latent": Hyperparameter(100, "integer", "Latent dimensions of the VAE.", minimum=1),
        "lr": Hyperparameter(0.001, "number", "The generator's Adam learning rate.", exclusiveMinimum=0),
    }
    optional_hyperparameters = {"kd_reduction": KD_REDUCTION}   # DGR+distill

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hidden = [m.out_features for m in self.model.modules() if isinstance(m, nn.Linear)][:-1]
        device = next(self.model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):   # the run's RNG untouched
            torch.manual_seed(self.seed_for(0, "generator"))
            self.vae = VAE(math.prod(self.bench.input_shape), hidden, self.hp["latent"]).to(device)
        self.vae_opt = adam(self.vae.parameters(), self.hp["lr"])
        self.old_vae = self.teacher = None

    def draw(self, batch_size: int) -> Step:
        """The current task's batch; from the second task on, ``extras["replayed"]``: as many
        inputs decoded by the previous generator and the previous classifier's outputs for them."""
        step = Step(self.sampler.batches(batch_size), batch_size)
        if self.old_vae is not None:
            x = self.old_vae.sample(batch_size, self.replay_gen, self.bench.input_shape)
            with torch.no_grad():
                step.extras["replayed"] = (x, self.teacher(x))
        return step

    def loss(self, step: Step) -> torch.Tensor:
        current = cross_entropy(step.outputs, step.batches)
        if "replayed" not in step.extras:
            return current
        x, old = step.extras["replayed"]
        z = self.model(x)
        losses = [replay_loss(z[:, lo:hi], old[:, lo:hi_old], self.hp["distill"], self.hp["temperature"],
                              self.hp["kd_reduction"]) for lo, hi, hi_old in heads(self.bench, self.task)]
        return self.mix(current, sum(losses) / len(losses))

    def after_step(self, step: Step) -> None:
        """One step of the generator on the same inputs (current and replayed)."""
        x = torch.cat([b.x for b in step.batches])
        loss = self.vae.loss(x)
        if "replayed" in step.extras:
            loss = self.mix(loss, self.vae.loss(step.extras["replayed"][0]))
        self.vae_opt.zero_grad()
        loss.backward()
        self.vae_opt.step()

    def end_task(self, task: int) -> None:
        self.old_vae, self.teacher = frozen(self.vae), frozen(self.model)

    def state_dict(self) -> dict:
        return {"vae": self.vae.state_dict(), "vae_opt": self.vae_opt.state_dict(),
                "old_vae": None if self.old_vae is None else self.old_vae.state_dict(),
                "teacher": None if self.teacher is None else self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state["old_vae"] is not None:
            self.old_vae, self.teacher = frozen(self.vae, state["old_vae"]), frozen(self.model, state["teacher"])
        self.vae.load_state_dict(state["vae"])
        self.vae_opt.load_state_dict(state["vae_opt"])
