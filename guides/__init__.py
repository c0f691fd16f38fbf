"""Pyro guides of genssl (installed as ``genssl.guides``)."""
from genssl.guides.delta_encoder import DeltaEncoderGuide
from genssl.guides.distillation import DistillationGuide
from genssl.guides.normal_encoder import NormalEncoderGuide

__all__ = ["DeltaEncoderGuide", "DistillationGuide", "NormalEncoderGuide"]
