"""Speed options of the training step that leave what it computes unchanged.

- ``trainer.compile=true``: each network (encoders, decoders, ViTs; their EMA copies too) is compiled
  with ``torch.compile``; the Pyro programs around them stay eager Python, which is cheap once the
  estimator is the lean one.
- ``trainer.channels_last=true``: convolutional networks keep their weights and take their inputs in
  channels-last memory order, which GPU convolution kernels (tensor cores, bf16) run faster on.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from genssl.nets.conv import ConvDecoder, ConvEncoder
from genssl.nets.mlp import MLPDecoder, MLPEncoder
from genssl.nets.resnet import ResNet18Decoder, ResNet18Encoder
from genssl.nets.vit import MaskedPatchDecoder, ViTEncoder

NETWORKS = (ConvEncoder, ConvDecoder, MLPEncoder, MLPDecoder, ResNet18Encoder, ResNet18Decoder, ViTEncoder,
            MaskedPatchDecoder)  # fmt: skip
CONVOLUTIONAL = (ConvEncoder, ResNet18Encoder, ResNet18Decoder, ConvDecoder)


def networks(method: nn.Module, kinds: tuple[type, ...] = NETWORKS) -> list[tuple[str, nn.Module]]:
    """The outermost modules of ``kinds`` in ``method`` (a network inside a network is not listed twice)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in method.named_modules():
        if isinstance(module, kinds) and not any(name.startswith(outer + ".") for outer, _ in found):
            found.append((name, module))
    return found


def _to_channels_last(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    return (x.contiguous(memory_format=torch.channels_last), *args[1:]) if x.dim() == 4 else args


def accelerate(method: nn.Module, tcfg: DictConfig) -> list[str]:
    """Apply ``trainer.compile`` and ``trainer.channels_last`` to ``method`` in place; names what changed."""
    changed = []
    if tcfg.get("channels_last", False):
        for name, module in networks(method, CONVOLUTIONAL):
            module.to(memory_format=torch.channels_last)
            module.register_forward_pre_hook(_to_channels_last)
            changed.append(f"{name or 'method'}: channels-last")
    if tcfg.get("compile", False):
        for name, module in networks(method):
            module.compile()
            changed.append(f"{name or 'method'}: compiled")
    return changed
