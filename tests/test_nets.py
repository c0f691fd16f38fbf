"""Encoders and decoders: shapes for every supported size, clear errors for the rest."""

from __future__ import annotations

import pytest
import torch

from genssl.errors import ConfigError, ShapeError
from genssl.nets import build_decoder, build_encoder

CASES = [
    ("mlp", 28, 1),
    ("mlp", 8, 1),
    ("conv", 28, 1),
    ("conv", 32, 3),
    ("conv", 64, 3),
    ("resnet18", 32, 3),
    ("resnet18", 64, 3),
]


@pytest.mark.parametrize("name,size,channels", CASES)
def test_encoder_decoder_round_trip_shapes(name, size, channels):
    encoder = build_encoder(name, channels, size)
    decoder = build_decoder(name, 6, channels, size)
    features = encoder(torch.rand(3, channels, size, size))
    assert features.shape == (3, encoder.out_features)
    assert decoder(torch.randn(2, 3, 6)).shape == (2, 3, channels, size, size)


def test_mlp_has_official_simvae_sizes():
    encoder = build_encoder("mlp", 1, 28)
    widths = [m.out_features for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [2000, 500, 500]
    decoder = build_decoder("mlp", 10, 1, 28)
    assert [m.out_features for m in decoder.modules() if isinstance(m, torch.nn.Linear)] == [500, 500, 2000, 784]


def test_resnet_encoder_keeps_cifar_stem():
    encoder = build_encoder("resnet18", 3, 32)
    assert encoder.net.conv1.stride == (1, 1) and isinstance(encoder.net.maxpool, torch.nn.Identity)


def test_unsupported_size_is_a_clear_shape_error():
    with pytest.raises(ShapeError, match=r"40×40.*28, 32, 64"):
        build_encoder("conv", 1, 40)


def test_unknown_network_lists_choices():
    with pytest.raises(ConfigError, match="'conv', 'mlp' or 'resnet18'"):
        build_decoder("vit", 4, 1, 28)
