"""Projection heads placed after the encoder by discriminative methods (SimCLR-style MLPs)."""

from __future__ import annotations

from torch import nn


def projection_head(
    in_dim: int, hidden_dim: int = 512, out_dim: int = 128, layers: int = 2, batch_norm: bool = True
) -> nn.Sequential:
    """``layers`` linear maps in_dim → hidden … → out_dim with BatchNorm + ReLU between them."""
    dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        modules.append(nn.Linear(a, b, bias=not (batch_norm and not last)))
        if not last:
            if batch_norm:
                modules.append(nn.BatchNorm1d(b))
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)
