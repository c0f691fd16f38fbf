"""Encoders and decoders shared by every method, chosen per dataset by ``net.encoder``.

``build_encoder`` returns a module mapping images [N, C, H, W] to features [N, out_features];
``build_decoder`` maps latents [..., latent_dim] to image-shaped logits or means [..., C, H, W].
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from genssl.errors import ConfigError, ShapeError, choices
from genssl.nets.conv import CONV_STAGES, ConvDecoder, ConvEncoder
from genssl.nets.mlp import SIMVAE_HIDDEN, MLPDecoder, MLPEncoder
from genssl.nets.resnet import ResNet18Decoder, ResNet18Encoder

NETWORKS = ("mlp", "conv", "resnet18")
# Sizes each architecture is built for; the MLP takes any size.
SUPPORTED_SIZES = {"conv": tuple(CONV_STAGES), "resnet18": (32, 64)}


def _check(name: str, image_size: int) -> None:
    if name not in NETWORKS:
        raise ConfigError(f"Unknown network '{name}': net.encoder must be {choices(NETWORKS)}.")
    sizes = SUPPORTED_SIZES.get(name)
    if sizes is not None and image_size not in sizes:
        raise ShapeError(
            f"The '{name}' network does not fit {image_size}×{image_size} images: it is built for "
            f"{', '.join(map(str, sizes))} pixel images. Set data.image_size to one of those sizes or "
            f"choose net.encoder=mlp, which takes any size."
        )


def build_encoder(
    name: str, channels: int, image_size: int, feature_dim: int = 256, mlp_hidden: Sequence[int] = SIMVAE_HIDDEN
) -> nn.Module:
    """Feature extractor ``name`` for [N, channels, image_size, image_size] images; has ``out_features``.

    ``mlp_hidden``: the MLP's hidden widths (the official SimVAE 2000-500-500 by default).
    """
    _check(name, image_size)
    if name == "mlp":
        return MLPEncoder(channels, image_size, tuple(mlp_hidden))
    if name == "conv":
        return ConvEncoder(channels, image_size, CONV_STAGES[image_size], out_features=feature_dim)
    return ResNet18Encoder(channels, image_size)


def build_decoder(
    name: str, latent_dim: int, channels: int, image_size: int, mlp_hidden: Sequence[int] = SIMVAE_HIDDEN
) -> nn.Module:
    """Decoder mirroring encoder ``name``: [..., latent_dim] → [..., channels, image_size, image_size]."""
    _check(name, image_size)
    if name == "mlp":
        return MLPDecoder(latent_dim, channels, image_size, tuple(mlp_hidden))
    if name == "conv":
        return ConvDecoder(latent_dim, channels, image_size, CONV_STAGES[image_size])
    return ResNet18Decoder(latent_dim, channels, image_size)


__all__ = ["NETWORKS", "SUPPORTED_SIZES", "build_encoder", "build_decoder"]
