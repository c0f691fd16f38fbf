"""Argument checks and small tensor helpers shared by the estimator modules."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from genssl.errors import ConfigError, ShapeError, choices

REDUCTIONS = ("mean", "sum", "none")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number > 0 (or >= 0)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    ok = math.isfinite(number) and (number >= 0 if allow_zero else number > 0)
    if not ok:
        bound = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ConfigError(f"{name}={value!r} is not valid: {name} must be {bound}.")


def check_int(name: str, value: int, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not valid: {name} must be an integer >= {minimum}.")


def check_choice(name: str, value: str, options: Iterable[str]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``options``."""
    options = tuple(options)
    if value not in options:
        raise ConfigError(f"{name}={value!r} is not valid: choose {choices(options)}.")


def check_matrix(name: str, x: torch.Tensor, *, min_rows: int = 1) -> None:
    """Raise :class:`ShapeError` unless ``x`` is a 2-D tensor with at least ``min_rows`` rows."""
    if x.dim() != 2 or x.shape[0] < min_rows:
        raise ShapeError(
            f"{name} has shape {tuple(x.shape)}: expected a 2-D tensor [batch, features] with batch >= {min_rows}."
        )


def check_same_shape(name1: str, x1: torch.Tensor, name2: str, x2: torch.Tensor) -> None:
    """Raise :class:`ShapeError` unless the two tensors have the same shape."""
    if x1.shape != x2.shape:
        raise ShapeError(
            f"{name1} has shape {tuple(x1.shape)} but {name2} has shape {tuple(x2.shape)}: they must match."
        )


def check_square(name: str, k: torch.Tensor) -> None:
    """Raise :class:`ShapeError` unless ``k`` is a square 2-D matrix."""
    if k.dim() != 2 or k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise ShapeError(f"{name} has shape {tuple(k.shape)}: expected a square [n, n] kernel matrix.")


def l2_normalise(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows divided by ``max(‖z‖, eps)``: unit vectors, and a zero row stays zero with finite gradient."""
    return F.normalize(z, dim=-1, eps=eps)


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` ('mean', 'sum' or 'none') to a per-sample tensor."""
    check_choice("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
