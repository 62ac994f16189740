"""Sums over samples of functions of per-sample gradients (Fisher information, MAS importance).

Two exact ways: ``per_sample_grads`` materialises each sample's gradient with ``torch.func.vmap``
(any model); ``linear_sums`` uses that for a linear layer ``z = W a + b`` a sample's gradient is
the outer product ``delta a^T`` of its output gradient and its input, so for ``phi`` = square or
abs, ``sum_n w_n phi(delta_n a_n^T) = (w * phi(Delta))^T phi(A)``: one matmul per layer, no
per-sample tensors (valid when every sample's scalar depends on that sample only: no batch norm).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def per_sample_grads(model, x: torch.Tensor, fn, aux: torch.Tensor | None = None, chunk: int = 256):
    """Yield ``(rows, {name: grads (B, *shape)})``: per-sample gradients of ``fn(logits, aux_n)``,
    a scalar of one sample's logits and its row of ``aux`` (e.g. a one-hot label)."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if aux is None:
        aux = torch.zeros(len(x), 1, device=x.device)

    def scalar(params, xi, ai):
        return fn(functional_call(model, params, (xi.unsqueeze(0),))[0], ai)

    g = vmap(grad(scalar), in_dims=(None, 0, 0))
    for start in range(0, len(x), chunk):
        rows = slice(start, min(start + chunk, len(x)))
        yield rows, g(params, x[rows], aux[rows])


def linear_only(model: nn.Module) -> bool:
    """Whether every trainable parameter belongs to an ``nn.Linear`` layer."""
    linear = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    return all(id(p) in linear for p in model.parameters() if p.requires_grad)


def linear_sums(model: nn.Module, x: torch.Tensor, scalars, phi, chunk: int = 2048
                ) -> dict[str, torch.Tensor]:
    """``{param name: sum_n w_n phi(g_n)}`` where ``g_n`` is sample n's gradient of ``s_n`` and
    ``scalars(z)`` yields pairs ``(s, w)``: per-sample scalars ``s`` (N,) of the logits ``z`` and
    per-sample weights ``w`` (N,); the sums run over all pairs."""
    layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    sums = {f"{n}.{k}": torch.zeros_like(p) for n, m in layers.items() for k, p in m.named_parameters()}
    inputs, outputs = {}, {}

    def hook(name):
        def save(module, args, out):
            inputs[name], outputs[name] = args[0].detach(), out
        return save

    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    try:
        for start in range(0, len(x), chunk):
            z = model(x[start:start + chunk])
            for s, w in scalars(z, slice(start, start + chunk)):
                deltas = torch.autograd.grad(s.sum(), [outputs[n] for n in layers], retain_graph=True)
                for (name, m), d in zip(layers.items(), deltas):
                    wd = phi(d) * w[:, None]
                    sums[f"{name}.weight"] += wd.T @ phi(inputs[name])
                    if m.bias is not None:
                        sums[f"{name}.bias"] += wd.sum(0)
    finally:
        for h in handles:
            h.remove()
    return sums
