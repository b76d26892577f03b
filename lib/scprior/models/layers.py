"""Building blocks shared by the models: MLP blocks, gradient reversal, one-hot species codes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def full_block(in_dim: int, out_dim: int, *, dropout: float = 0.1, activation: str = "relu",
               norm: str = "layer") -> nn.Sequential:
    """``Linear -> norm -> activation -> Dropout`` (norm: ``"layer"``, ``"batch"`` or ``"none"``)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    if norm == "layer":
        layers.append(nn.LayerNorm(out_dim))
    elif norm == "batch":
        layers.append(nn.BatchNorm1d(out_dim))
    elif norm != "none":
        raise ValueError(f"norm must be 'layer', 'batch' or 'none', got {norm!r}")
    layers.append(_activation(activation))
    layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def mlp(dims: Sequence[int], *, dropout: float = 0.1, activation: str = "relu", norm: str = "layer") -> nn.Sequential:
    """A stack of :func:`full_block` through ``dims`` (``[in, h1, ..., out]``; every layer is a block)."""
    if len(dims) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {list(dims)}")
    return nn.Sequential(*[full_block(a, b, dropout=dropout, activation=activation, norm=norm)
                           for a, b in zip(dims[:-1], dims[1:])])


def _activation(name: str) -> nn.Module:
    acts = {"relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU, "identity": nn.Identity}
    if name not in acts:
        raise ValueError(f"Unknown activation {name!r}; use one of {sorted(acts)}")
    return acts[name]()


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D102
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return -ctx.scale * grad, None


class GradientReversal(nn.Module):
    """Identity forward; multiplies the gradient by ``-scale`` backward (domain-adversarial training)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReverseGrad.apply(x, self.scale)


def one_hot(codes: torch.Tensor, n: int) -> torch.Tensor:
    """Float one-hot rows (len(codes), n) for integer ``codes`` in [0, n)."""
    return nn.functional.one_hot(codes.long(), num_classes=n).float()
