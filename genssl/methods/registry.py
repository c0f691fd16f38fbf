"""Turn a resolved config into a trainable :class:`~genssl.inference.pyro_ssl.PyroSSL` method.

``method.family`` picks the builder; each family is a short module of this package. A new family is
a builder function and a line in :data:`FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig

from genssl.data import ImageDataset
from genssl.errors import ConfigError, ShapeError, choices
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods.discriminative import build_discriminative
from genssl.methods.generative import build_generative
from genssl.methods.masked import build_masked
from genssl.runtime import seed_everything

FAMILIES: dict[str, Callable[[DictConfig, int, int], PyroSSL]] = {
    "generative": build_generative,
    "discriminative": build_discriminative,
    "masked": build_masked,
}


def build_method(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """Build the model/guide pair of ``cfg.method`` for images of the given shape."""
    family = cfg.method.family
    if family not in FAMILIES:
        raise ConfigError(
            f"Unknown method family '{family}' in method '{cfg.method.name}': "
            f"method.family must be {choices(FAMILIES)}."
        )
    return FAMILIES[family](cfg, channels, image_size)


def untrained_method(cfg: DictConfig, dataset: ImageDataset, device: torch.device) -> PyroSSL:
    """The run's method as initialised: seeded with ``cfg.seed`` and built exactly as training builds it."""
    seed_everything(cfg.seed)
    return build_method(cfg, dataset.channels, dataset.image_size).to(device)


def check_input_shape(method: PyroSSL, views: torch.Tensor) -> None:
    """Run one loss evaluation so shape mismatches surface as a clear error before training starts."""
    try:
        method(views)
    except RuntimeError as err:
        if "shape" not in str(err) and "size" not in str(err):
            raise
        raise ShapeError(
            f"Images of shape {tuple(views.shape[2:])} do not fit the chosen networks: {err}. "
            "Check data.image_size, data.channels and net.encoder."
        ) from None
