"""Network families. The MLP follows the reference code of van de Ven & Tolias (2019): ReLU hidden
layers, PyTorch's default initialisation (uniform in +-1/sqrt(fan_in)), one linear output layer
whose units the scenario activates (multi-head by masking, shared head, or growing class set)."""
from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, input_dim: int, hidden: list[int], n_outputs: int):
        super().__init__()
        dims = [input_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build(spec: dict, input_dim: int, n_outputs: int) -> nn.Module:
    kind = spec.get("type", "mlp")
    if kind == "mlp":
        return MLP(input_dim, list(spec["hidden"]), n_outputs)
    raise ValueError(f"model.type: unknown model {kind!r}")


def flops_per_sample(model: nn.Module) -> int:
    """Multiply-adds x 2 of one forward pass through the linear layers."""
    return sum(2 * m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
