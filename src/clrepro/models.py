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
"""
from __future__ import annotations

import math

import torch
from torch import nn


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
        return self.head(self.features(x))


class MLP(Net):
    def __init__(self, input_dim: int, hidden: list[int], n_outputs: int, **init):
        dims = [input_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        super().__init__(nn.Sequential(*layers), dims[-1], n_outputs, **init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)))


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


def build(spec: dict, input_shape: tuple[int, ...], n_outputs: int) -> Net:
    kind = spec.get("type", "mlp")
    init = {"init": spec.get("init", "torch"), "head_init": spec.get("head_init", "default")}
    if kind == "mlp":
        return MLP(math.prod(input_shape), list(spec["hidden"]), n_outputs, **init)
    if kind == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"model.type: a cnn needs image inputs (C, H, W), got shape {tuple(input_shape)}")
        return CNN(tuple(input_shape), list(spec["channels"]), spec["dense"], n_outputs,
                   spec.get("dropout_conv", 0.25), spec.get("dropout_dense", 0.5), **init)
    raise ValueError(f"model.type: unknown model {kind!r}")


def flops_per_sample(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of one forward pass through the linear and convolutional layers."""
    total = 0

    def count(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
        else:
            total += 2 * out[0].numel() * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return total
