"""Pyro guides of genssl (installed as ``genssl.guides``).

``EMBEDDING_GUIDES`` is the registry of the point-embedding guides of the discriminative family,
chosen by ``guide.kind``: each class declares the sites it proposes (``sites``) and builds itself
from the ``guide`` config block (``from_config``). A new guide is a class and a line here.
"""

from genssl.guides.base import EncoderGuide
from genssl.guides.deepcluster import ClusterAssignmentGuide
from genssl.guides.delta_encoder import DeltaEncoderGuide
from genssl.guides.distillation import DistillationGuide
from genssl.guides.masked_encoder import MaskedEncoderGuide
from genssl.guides.normal_encoder import NormalEncoderGuide
from genssl.guides.prototypes import PrototypeGuide

EMBEDDING_GUIDES: dict[str, type[EncoderGuide]] = {
    "delta": DeltaEncoderGuide,
    "distillation": DistillationGuide,
    "prototypes": PrototypeGuide,
    "clusters": ClusterAssignmentGuide,
}

__all__ = [
    "EMBEDDING_GUIDES",
    "ClusterAssignmentGuide",
    "DeltaEncoderGuide",
    "DistillationGuide",
    "EncoderGuide",
    "MaskedEncoderGuide",
    "NormalEncoderGuide",
    "PrototypeGuide",
]
