"""CRUMB: compositional replay using memory blocks (Talbot, Zawar, Badkundri, Zhang & Kreiman,
arXiv:2104.02206; reference code MorganBDT/crumb @502efc3: agents/crumbr.py, crumb_net.py, crumb.py).

The network is cut in two: an early feature extractor f and the top g with the output layer. A
feature map z = f(x) (C x H x W; an MLP's hidden vector is C = width, H = W = 1) is cut, at each
spatial position, into C/L contiguous chunks of L channels, and each chunk c is replaced by the
row of the codebook M (``blocks`` x L, the memory blocks) most similar to it,

    k(c) = argmax_r <c, M_r / ||M_r||>     (crumbr.py: a dot product with the L2-normalised rows)
    recon(z) = the blocks M_k(c), put back in the chunks' places (a gather: the gradient reaches
               the chosen rows, never f).

An image is stored as its indices k (one byte each for 256 blocks) and replayed by decoding them
with the current codebook: g trains on the reconstruction. The codebook learns only through the
classification loss of g on reconstructed features; there is no reconstruction loss.

From ImageNet weights (a ``squeezenet`` network, ``weights: imagenet``) f is frozen from the start
and every batch, the first task's too, trains g and M with CE(g(recon(z))): the reference's stream
with a stock SqueezeNet and a codebook learnt in the stream (its "vanilla pretrain" ablation, since
the codebook pretrained on ImageNet is not published). Without them the backbone is
*base-initialised* (REMIND's and CRUMB's own idea): on the first task the whole network learns the
task's classes with CE(g(z)) + CE(g(recon(z))) (the reference's pretraining loss, direct plus
reconstructed, as intended before its commit 627add9 swapped the flag), then f is frozen. On every
later task the current batch trains g and M with CE(g(recon(z))) (the reference's stream loss) and
a replayed batch of stored indices, as large as the current one, adds ``coef`` x its cross-entropy
over the classes seen. The buffer is written at the end of each task but the last: a ``budget`` of
stored feature maps shared by the classes seen, floor(budget / classes) each, old classes cut at
random (``replay.Buffer``).

Named choices (hyperparameters):
- ``cut``: how many modules of the network's ``features`` form f (MLP 784-400-400: 2, the first
  layer and its ReLU; the reference cuts SqueezeNet before fire9).
- ``blocks`` x ``block_length``: the codebook (reference scripts: 256 x 16; its ablations 256 x 8).
- ``init``: ``sample_first_batch``, every entry of M drawn from the values of f's features of
  ``init_samples`` training samples of the first task (crumb_net.py, the option that suits a
  backbone other than SqueezeNet, whose ``random_distmatch`` constants are measured on it).
- ``scores``: ``direct``, g(z), the accuracy the paper reports (README), or ``reconstructed``.
- ``clamp``: every gradient clamped element-wise to [-clamp, clamp] before the step (crumb.py).
- ``replay_step``: ``summed``, replay summed into the step's loss (equal to first order), or
  ``separate``, the reference's: a second optimiser step on coef x CE(replay), its forward pass
  through the parameters the current batch's step left (crumb.py, ``criterion_replay``, with
  ``replay_times`` 1). Its replayed batch is one
  random stored sample per old class, round after round; here the batch is drawn uniformly from
  the class-balanced buffer. New classes' samples are stored uniformly at random (the reference:
  every img_skip-th sample of the task's stream, then evicted at random).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models import CNN, MLP, SqueezeNet, evaluating
from .base import REQUIRED, Hyperparameter, Step, cross_entropy, n_current
from .replay import Buffer, Replaying


class CRUMB(Replaying):
    name = "crumb"
    hyperparameters = {
        "budget": Hyperparameter(REQUIRED, "integer", "Stored feature maps in all, shared by the classes seen.",
                                 minimum=1),
        "cut": Hyperparameter(2, "integer", "Modules of the network's features that form f (frozen after the "
                              "first task).", minimum=1),
        "blocks": Hyperparameter(256, "integer", "Rows of the codebook M (memory blocks).", minimum=2),
        "block_length": Hyperparameter(8, "integer", "Channels per memory block, L.", minimum=1),
        "coef": Hyperparameter(5.0, "number", "Weight of the replayed batch's cross-entropy.", minimum=0),
        "init": Hyperparameter("sample_first_batch", "string", "How the codebook starts: its entries drawn from the "
                               "values of f's features on the first task.", enum=["sample_first_batch"]),
        "init_samples": Hyperparameter(128, "integer", "Training samples of the first task the codebook is drawn "
                                       "from.", minimum=1),
        "scores": Hyperparameter("direct", "string", "Evaluation on g(z) (the paper's accuracy) or on the "
                                 "reconstruction.", enum=["direct", "reconstructed"]),
        "clamp": Hyperparameter(10.0, "number", "Every gradient clamped element-wise to [-clamp, clamp].",
                                exclusiveMinimum=0),
    }
    optional_hyperparameters = {
        "replay_step": Hyperparameter("summed", "string", "Replay summed into the step's loss, or a second step "
                                      "through the parameters the first left (the reference's).",
                                      enum=["summed", "separate"]),
    }

    def __init__(self, model, bench, hp, seed, drop_last=True):
        super().__init__(model, bench, hp, seed, drop_last)
        if type(model) not in (MLP, CNN, SqueezeNet):
            raise ValueError(f"crumb: cuts the features of an mlp, cnn or squeezenet model, not a "
                             f"{type(model).__name__}")
        if not 1 <= hp["cut"] < len(model.features):
            raise ValueError(f"cut: {hp['cut']} must leave modules on both sides of the cut "
                             f"(the network's features have {len(model.features)})")
        if not 2 <= hp["blocks"] <= 2 ** 15:
            raise ValueError(f"blocks: {hp['blocks']} memory blocks; give 2 to 32768")
        device = next(model.parameters()).device
        with torch.no_grad():
            self.shape = tuple(self.extract(torch.zeros(1, *bench.input_shape, device=device)).shape[1:])
        L = hp["block_length"]
        if self.shape[0] % L:
            raise ValueError(f"block_length: {L} does not divide the {self.shape[0]} channels of the features at "
                             f"the cut")
        self.positions = math.prod(self.shape) // L   # stored indices per sample
        self.code_dtype = torch.uint8 if hp["blocks"] <= 256 else torch.int16
        model.register_parameter("codebook", nn.Parameter(torch.zeros(hp["blocks"], L, device=device)))
        self.buffer = Buffer(None, "reservoir", hp["budget"])
        self.frozen = False

    # -- the cut network -------------------------------------------------------------------------
    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """f(x): the feature map at the cut."""
        h = self.model.stem(x)
        for layer in self.model.features[:self.hp["cut"]]:
            h = layer(h)
        return h

    def top(self, z: torch.Tensor) -> torch.Tensor:
        """g(z): the network above the cut, output layer included."""
        for layer in self.model.features[self.hp["cut"]:]:
            z = layer(z)
        return self.model.head(z)

    def chunks(self, z: torch.Tensor) -> torch.Tensor:
        """(N, positions, L): each position's channels cut into contiguous chunks of L."""
        if z.dim() == 4:
            z = z.permute(0, 2, 3, 1)
        return z.reshape(len(z), -1, self.hp["block_length"])

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """The index of the most similar memory block for every chunk of ``z``: (N, positions)."""
        return (self.chunks(z) @ F.normalize(self.model.codebook, dim=1).T).argmax(-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """The feature maps that the indices ``codes`` name, with the current codebook."""
        blocks = self.model.codebook[codes.long()]
        if len(self.shape) == 3:
            c, h, w = self.shape
            return blocks.reshape(len(codes), h, w, c).permute(0, 3, 1, 2)
        return blocks.reshape(len(codes), *self.shape)

    # -- hooks -----------------------------------------------------------------------------------
    def prepare(self, task: int) -> None:
        if task == 0 and isinstance(self.model, SqueezeNet) and self.model.pretrained is not None and not self.frozen:
            self.freeze()   # the reference's --freeze_feature_extract: f keeps its ImageNet weights
        if task == 0:   # sample_first_batch: the codebook's entries from the values of f's features
            gen = self.generator_for(0, "codebook")
            data = self.bench.train[0]
            rows = torch.randperm(len(data), generator=gen)[:self.hp["init_samples"]].to(data.p.device)
            with torch.no_grad():
                values = self.extract(data.inputs(rows)).flatten()
                pick = torch.randint(len(values), tuple(self.model.codebook.shape), generator=gen)
                self.model.codebook.copy_(values[pick.to(values.device)])

    def draw(self, batch_size: int) -> Step:
        current = self.sampler.batches(batch_size)
        replay = self.buffer.batches(self.bench, batch_size, self.task, self.replay_gen) if len(self.buffer) else []
        return Step(current + replay, batch_size)

    def step_groups(self, step: Step) -> list[Step]:
        if self.hp["replay_step"] == "summed" or not step.replayed:
            return [step]
        return [Step(step.current, step.size), Step(step.replayed, step.size)]

    def forward(self, step: Step) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per batch: g on the reconstructed features, and (first task) g on the features themselves."""
        outputs = []
        for b in step.batches:
            if b.replayed:                                # stored indices
                outputs.append((self.top(self.decode(b.x)), None))
                continue
            z = self.extract(b.x)
            outputs.append((self.top(self.decode(self.encode(z))), None if self.frozen else self.top(z)))
        return outputs

    def loss(self, step: Step) -> torch.Tensor:
        """CE of the current batches (+ CE of g(z) before the freeze) + coef x CE of the replayed;
        the current batches come first."""
        outputs, batches = step.outputs, step.batches
        n = n_current(batches)
        loss = None
        if n:
            loss = cross_entropy([o[0] for o in outputs[:n]], batches[:n])
            if not self.frozen:
                loss = loss + cross_entropy([o[1] for o in outputs[:n]], batches[:n])
        if len(batches) > n:
            replay = self.hp["coef"] * cross_entropy([o[0] for o in outputs[n:]], batches[n:])
            loss = replay if loss is None else loss + replay
        return loss

    def after_backward(self, step: Step) -> None:
        for p in self.model.parameters():
            if p.grad is not None:
                p.grad.clamp_(-self.hp["clamp"], self.hp["clamp"])

    def end_task(self, task: int) -> None:
        if task == 0 and not self.frozen:
            self.freeze()

        def store(x):
            return self.encode(self.extract(x)).to(self.code_dtype)
        with evaluating(self.model):
            self.buffer.add(self.bench, task, self.generator_for(task, "select"), encode=store)

    def freeze(self) -> None:
        """f is base-initialised: no gradient reaches it again (its stale gradients are dropped, so
        that no optimiser moves it on their momentum)."""
        for p in self.model.features[:self.hp["cut"]].parameters():
            p.requires_grad_(False)
            p.grad = None
        self.frozen = True

    def scores(self, x: torch.Tensor, task: int) -> torch.Tensor:
        z = self.extract(x)
        return self.top(z if self.hp["scores"] == "direct" else self.decode(self.encode(z)))

    def memory(self) -> dict:
        """The stored indices and the codebook, in bytes."""
        held = self.buffer.footprint()
        codebook = self.model.codebook.numel() * self.model.codebook.element_size()
        return {**held, "bytes": held["bytes"] + codebook, "index_bytes": held["bytes"], "codebook_bytes": codebook}

    def task_log(self, task: int) -> dict:
        return self.memory()

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "frozen": self.frozen}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(self.on_device(state["buffer"]))
        if state["frozen"]:
            self.freeze()
