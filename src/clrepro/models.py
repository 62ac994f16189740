"""Network families, each a feature extractor and one linear output layer whose units the scenario
activates (multi-head by masking, shared head, or growing class set).

- ``mlp``: ReLU hidden layers (van de Ven & Tolias 2019; Zenke et al. 2017 split/permuted MNIST).
- ``cnn``: the split CIFAR-10/100 network of Zenke et al. 2017 (pathint ``fig_transfer_cifar``):
  per block conv3x3 (same) - ReLU - conv3x3 (valid) - ReLU - max-pool 2 - dropout, then dense -
  ReLU - dropout and the output layer.

Initialisation (``init``): ``torch`` (PyTorch's default, uniform in +-1/sqrt(fan_in), as the
three-scenarios reference code) or ``glorot`` (Keras' default: Glorot-uniform kernels, zero biases,
as the SI reference code); ``head_init: zero`` zero-initialises the output layer (SI split MNIST and
CIFAR). ``reset_parameters`` re-applies the configured initialisation.

- ``squeezenet``: torchvision's SqueezeNet 1.0 under CRUMB's classifier (``SqueezeNet``), from
  ImageNet weights (``weights: imagenet``, fetched into the data root) or from scratch.

- ``sdm``: the SDM-MLP of Bricken, Davies, Singh, Krotov & Kreiman (ICLR 2023), sparse distributed
  memory as a one-hidden-layer network (``SDMLP``); its components can be removed one at a time.

After every optimiser step the loop calls ``constrain()``: a no-op except for the SDM-MLP, which
keeps its weights non-negative and its neuron addresses on the unit sphere.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F


#: samples a network takes at once where a method runs it over a whole dataset (memory, not numbers)
INFERENCE_CHUNK = 4096


@contextmanager
def evaluating(model: nn.Module):
    """``model`` in evaluation mode inside the block, then in the mode it was in."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def in_chunks(fn, x: torch.Tensor, size: int = INFERENCE_CHUNK) -> torch.Tensor:
    """``fn`` of ``x`` (along its first dimension), ``size`` rows at a time, concatenated."""
    return torch.cat([fn(x[i:i + size]) for i in range(0, len(x), size)])


class Net(nn.Module):
    def __init__(self, features: nn.Module, width: int, n_outputs: int, init: str = "torch",
                 head_init: str = "default"):
        super().__init__()
        if init not in ("torch", "glorot"):
            raise ValueError(f"model.init: unknown initialisation {init!r} (torch or glorot)")
        if head_init not in ("default", "zero"):
            raise ValueError(f"model.head_init: unknown {head_init!r} (default or zero)")
        self.features, self.head = features, nn.Linear(width, n_outputs)
        self.init, self.head_init = init, head_init
        if (init, head_init) != ("torch", "default"):   # the layers were built with torch's default
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                if self.init == "glorot":
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
                else:
                    m.reset_parameters()
        if self.head_init == "zero":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features the output layer reads."""
        return self.features(self.stem(x))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The inputs as ``features`` takes them (an MLP's flattened; SqueezeNet's resized)."""
        return x

    def constrain(self) -> None:
        """Re-impose constraints on the parameters after an optimiser step (none here)."""


class MLP(Net):
    def __init__(self, input_dim: int, hidden: list[int], n_outputs: int, **init):
        dims = [input_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        super().__init__(nn.Sequential(*layers), dims[-1], n_outputs, **init)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class GrowingMLP(MLP):
    """An MLP with room to grow (neurogenesis): hidden layer l has ``capacity[l]`` units, of which
    the first ``alive[l]`` (a buffer, so checkpoints carry it) are born. Unborn units are inert:
    their activations are masked to zero, so no gradient reaches their incoming weights, and their
    outgoing weights are zero, so a birth leaves the network's function unchanged until training
    gives them weight. Every layer is initialised as PyTorch initialises a layer of its born
    width (bounds 1/sqrt(fan-in) over the born inputs)."""

    def __init__(self, input_dim: int, hidden: list[int], capacity: list[int], n_outputs: int):
        if len(capacity) != len(hidden) or any(h > c for h, c in zip(hidden, capacity)):
            raise ValueError(f"model.capacity: {capacity} must give each hidden layer at least its {hidden} units")
        super().__init__(input_dim, capacity, n_outputs)
        self.register_buffer("alive", torch.tensor(hidden))
        self.reset_parameters()

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.features if isinstance(m, nn.Linear)] + [self.head]

    def widths(self) -> list[int]:
        return self.alive.tolist()

    @torch.no_grad()
    def init_units(self, layer: int, rows: slice, gen: torch.Generator | None = None) -> None:
        """Fresh incoming weights for units ``rows`` of ``layer``; zero outgoing weights."""
        lin = self.linears()[layer]
        fan_in = lin.in_features if layer == 0 else int(self.alive[layer - 1])
        bound = 1 / math.sqrt(fan_in)
        w = torch.rand(lin.weight[rows].shape, generator=gen) * 2 * bound - bound
        b = torch.rand(lin.bias[rows].shape, generator=gen) * 2 * bound - bound
        lin.weight[rows] = 0.0
        lin.weight[rows, :fan_in] = w[:, :fan_in].to(lin.weight.device)
        lin.bias[rows] = b.to(lin.bias.device)
        self.linears()[layer + 1].weight[:, rows] = 0.0

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if not hasattr(self, "alive"):   # during MLP.__init__
            return
        layers = self.linears()
        for i, lin in enumerate(layers[:-1]):
            self.init_units(i, slice(0, lin.out_features))
        self.head.reset_parameters()   # its inputs: the top layer's born units
        fan_in = int(self.alive[-1])
        nn.init.uniform_(self.head.weight[:, :fan_in], -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        nn.init.uniform_(self.head.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        self.head.weight[:, fan_in:] = 0.0

    def grow(self, units: list[int]) -> list[slice]:
        """Bear ``units[l]`` more units in each hidden layer; returns their rows per layer. The
        incoming weights of the new units keep their initialisation; the caller may renew them."""
        new = [slice(int(a), int(a) + n) for a, n in zip(self.alive, units)]
        if any(s.stop > c for s, c in zip(new, [m.out_features for m in self.linears()[:-1]])):
            raise ValueError(f"model.capacity: growing {self.widths()} by {units} exceeds the capacity")
        self.alive += torch.tensor(units, device=self.alive.device)
        return new

    def born(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """Activations ``h`` of hidden layer ``layer`` with its unborn units zeroed."""
        return h * (torch.arange(h.shape[1], device=h.device) < self.alive[layer])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer, lin in enumerate(self.linears()[:-1]):
            h = self.born(torch.relu(lin(h)), layer)
        return h


class CNN(Net):
    def __init__(self, input_shape: tuple[int, int, int], channels: list[int], dense: int, n_outputs: int,
                 dropout_conv: float = 0.25, dropout_dense: float = 0.5, **init):
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.Conv2d(out, out, 3), nn.ReLU(),
                       nn.MaxPool2d(2), nn.Dropout(dropout_conv)]
            c, h, w = out, (h - 2) // 2, (w - 2) // 2
        if h < 1 or w < 1:
            raise ValueError(f"model.channels: {len(channels)} blocks shrink a {input_shape} input to nothing")
        layers += [nn.Flatten(), nn.Linear(c * h * w, dense), nn.ReLU(), nn.Dropout(dropout_dense)]
        super().__init__(nn.Sequential(*layers), dense, n_outputs, **init)


class TopK(nn.Module):
    """Top-K activation of the SDM-MLP on non-negative inputs h (ReLU'd similarities), per sample.

    - ``subtract``: out = ReLU(h - h_(k+1)), h_(k+1) the (k+1)-th largest value (a detached
      threshold, as an inhibitory interneuron's): exactly the k largest stay active (fewer on ties).
    - ``gaba``: the GABA switch. Neuron i subtracts g_i h_(k+1) with g_i = clip(-1 + 2 c_i / T, -1, 1),
      c_i its count of activations (out > 0) over training samples so far: every neuron starts
      excitatory-to-all (g = -1, all active), and each turns inhibitory as it is used, until
      g = 1 everywhere (``subtract``). T = ``switch_after``; the counts are a buffer (checkpointed).
    - ``mask``: keep the k largest values as they are, zero the rest.
    - ``none``: h unchanged (the ablation without Top-K).
    """

    MODES = ("gaba", "subtract", "mask", "none")

    def __init__(self, neurons: int, k: int, mode: str = "gaba", switch_after: float = 5e6):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"model.activation: unknown Top-K mode {mode!r} (one of {', '.join(self.MODES)})")
        if not 1 <= k < neurons:
            raise ValueError(f"model.k: {k} must be at least 1 and below the {neurons} neurons")
        self.k, self.mode, self.switch_after = k, mode, float(switch_after)
        self.register_buffer("count", torch.zeros(neurons))

    def gate(self) -> torch.Tensor:
        """g per neuron: -1 (all active) .. 1 (pure Top-K)."""
        if self.mode == "gaba":
            return (-1 + 2 * self.count / self.switch_after).clamp(-1, 1)
        return torch.ones_like(self.count)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return h
        if self.mode == "mask":
            idx = h.topk(self.k, dim=1).indices
            return h * torch.zeros_like(h).scatter_(1, idx, 1.0)
        inhibition = h.topk(self.k + 1, dim=1).values[:, -1:].detach()
        out = torch.relu(h - self.gate() * inhibition)
        if self.mode == "gaba" and self.training:
            with torch.no_grad():
                self.count += (out > 0).sum(0)
        return out


class SDMLP(nn.Module):
    """Sparse distributed memory as an MLP (Bricken et al. 2023): inputs and neuron addresses
    L2-normalised (so h = ReLU(W x) are cosine similarities), Top-K activation, no biases, all
    weights non-negative, a linear output layer read out from the k active neurons' values.
    ``normalize``, ``positive``, ``bias`` and ``activation`` remove one component each."""

    def __init__(self, input_dim: int, neurons: int, n_outputs: int, k: int, activation: str = "gaba",
                 switch_after: float = 5e6, normalize: bool = True, positive: bool = True, bias: bool = False):
        super().__init__()
        self.normalize, self.positive = normalize, positive
        self.hidden = nn.Linear(input_dim, neurons, bias=bias)
        self.topk = TopK(neurons, k, activation, switch_after)
        self.head = nn.Linear(neurons, n_outputs, bias=bias)
        self.constrain()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.positive:
            x = torch.relu(x)
        if self.normalize:
            x = nn.functional.normalize(x, dim=1)
        return self.topk(torch.relu(self.hidden(x)))

    @torch.no_grad()
    def constrain(self) -> None:
        """Weights (and biases) clamped at zero, then addresses (rows of the hidden weights)
        rescaled to unit norm."""
        if self.positive:
            for p in self.parameters():
                p.clamp_(min=0)
        if self.normalize:
            self.hidden.weight.copy_(nn.functional.normalize(self.hidden.weight, dim=1))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.hidden.reset_parameters()
        self.head.reset_parameters()
        self.topk.count.zero_()
        self.constrain()


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SqueezeNet(Net):
    """torchvision's ``squeezenet1_0`` features under CRUMB's classifier: dropout 0.5, a 3x3 conv
    (padding 1) to the outputs, ReLU, global average pooling (MorganBDT/crumb agents/crumb_net.py;
    torchvision's own is a 1x1 conv). Inputs (N, 3, H, W) in [0, 1] are resized to ``input_size``
    (bilinear; the reference resizes every image to 224 x 224) and normalised with ImageNet's mean
    and std. ``weights``: a ``squeezenet1_0`` state dict (torchvision's ImageNet weights) whose
    ``features`` are loaded; the classifier always starts afresh, as the reference's for a stream."""

    def __init__(self, n_outputs: int, input_size: int = 224, weights: str | os.PathLike | None = None):
        from torchvision.models import squeezenet1_0

        super().__init__(squeezenet1_0(weights=None).features, 512, n_outputs)
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, n_outputs, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.input_size, self.pretrained = input_size, None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self.pretrained = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
            try:
                self.features.load_state_dict(self.pretrained)
            except RuntimeError as err:
                raise ValueError(f"{weights} does not hold squeezenet1_0's features: {err}") from None

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The classifier afresh; the features their pretrained weights again, or else afresh too
        (torchvision's initialisation: Kaiming-uniform kernels, zero biases)."""
        self.head[1].reset_parameters()
        if self.pretrained is not None:
            self.features.load_state_dict(self.pretrained)
        else:
            for m in self.features.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


def build(spec: dict, input_shape: tuple[int, ...], n_outputs: int,
          data_root: str | os.PathLike | None = None, checksums: dict[str, str] | None = None) -> nn.Module:
    """The network ``spec`` describes; pretrained weights are read from ``data_root`` and verified
    (against ``checksums`` where it names their file)."""
    kind = spec.get("type", "mlp")
    init = {"init": spec.get("init", "torch"), "head_init": spec.get("head_init", "default")}
    if kind == "mlp" and spec.get("capacity"):
        if init != {"init": "torch", "head_init": "default"}:
            raise ValueError("model.capacity: a growing mlp takes PyTorch's default initialisation only")
        return GrowingMLP(math.prod(input_shape), list(spec["hidden"]), list(spec["capacity"]), n_outputs)
    if kind == "mlp":
        return MLP(math.prod(input_shape), list(spec["hidden"]), n_outputs, **init)
    if kind == "sdm":
        return SDMLP(math.prod(input_shape), spec["neurons"], n_outputs, spec["k"], spec.get("activation", "gaba"),
                     spec.get("switch_after", 5e6), spec.get("normalize", True), spec.get("positive", True),
                     spec.get("bias", False))
    if kind == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"model.type: a cnn needs image inputs (C, H, W), got shape {tuple(input_shape)}")
        return CNN(tuple(input_shape), list(spec["channels"]), spec["dense"], n_outputs,
                   spec.get("dropout_conv", 0.25), spec.get("dropout_dense", 0.5), **init)
    if kind == "squeezenet":
        if len(input_shape) != 3 or input_shape[0] != 3:
            raise ValueError(f"model.type: squeezenet needs colour images (3, H, W), got shape {tuple(input_shape)}")
        weights = None
        if spec.get("weights", "none") == "imagenet":
            from .data import pretrained
            if data_root is None:
                raise ValueError("model.weights: imagenet needs the data root the weights are fetched into")
            weights = pretrained(data_root, "squeezenet1_0", checksums)
        return SqueezeNet(n_outputs, spec.get("input_size", 224), weights)
    raise ValueError(f"model.type: unknown model {kind!r}")


def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...], training: bool = False) -> int:
    """Multiply-adds x 2 of one forward pass through the linear and convolutional layers; with
    ``training``, of a training step: forward, weight gradient, and input gradient wherever the
    layer's input needs one (autograd skips it for the data, so the first layer has none)."""
    total = 0

    def count(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Linear):
            forward = 2 * m.in_features * m.out_features
        else:
            forward = 2 * out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        total += forward * (1 + training * (1 + inp[0].requires_grad))

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.set_grad_enabled(training):
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return total
