"""Pyro guides of genssl (installed as ``genssl.guides``)."""

from genssl.guides.deepcluster import ClusterAssignmentGuide
from genssl.guides.delta_encoder import DeltaEncoderGuide
from genssl.guides.distillation import DistillationGuide
from genssl.guides.masked_encoder import MaskedEncoderGuide
from genssl.guides.normal_encoder import NormalEncoderGuide
from genssl.guides.prototypes import PrototypeGuide

__all__ = [
    "ClusterAssignmentGuide",
    "DeltaEncoderGuide",
    "DistillationGuide",
    "NormalEncoderGuide",
    "PrototypeGuide",
    "MaskedEncoderGuide",
]
