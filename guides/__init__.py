"""Pyro guides of genssl (installed as ``genssl.guides``)."""
from genssl.guides.delta_encoder import DeltaEncoderGuide
from genssl.guides.distillation import DistillationGuide
from genssl.guides.normal_encoder import NormalEncoderGuide
from genssl.guides.prototypes import PrototypeGuide

__all__ = ["DeltaEncoderGuide", "DistillationGuide", "NormalEncoderGuide", "PrototypeGuide"]
