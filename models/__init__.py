"""Pyro models of genssl (installed as ``genssl.models``)."""

from genssl.models.generative import GenerativeModel
from genssl.models.masked import MaskedPatchModel
from genssl.models.priors import BUILTIN_PRIORS, FlatPrior, MixturePrior, NormalPrior
from genssl.models.simvae import SimVAE
from genssl.models.view_marginal import FlatViewMarginal
from genssl.models.view_model import ViewModel

__all__ = [
    "GenerativeModel",
    "SimVAE",
    "NormalPrior",
    "FlatPrior",
    "MixturePrior",
    "FlatViewMarginal",
    "BUILTIN_PRIORS",
    "ViewModel",
    "MaskedPatchModel",
]
