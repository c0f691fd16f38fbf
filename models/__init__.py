"""Pyro models of genssl (installed as ``genssl.models``)."""

import pyro

from genssl.models.class_priors import ClassMarginalPrior, PowerLawPrior
from genssl.models.conditionals import ContentSpec, ProposalSpec, ViewConditional
from genssl.models.content_model import ContentViewModel
from genssl.models.distributions import ClassUniform, SphereUniform, UniformRelativeCategorical, VonMisesFisher
from genssl.models.generative import GenerativeModel
from genssl.models.masked import MaskedPatchModel
from genssl.models.priors import FlatPrior, MixturePrior, NormalPrior, UniformPrior
from genssl.models.simvae import SimVAE
from genssl.models.sphere_priors import VMFMixturePrior
from genssl.models.view_marginal import FlatViewMarginal
from genssl.models.view_model import ObjectiveTerms, ViewModel

# PyroModule priors keep their parameters to themselves: with Pyro's global param store two priors built
# in one process (a run and its untrained baseline, the jobs of a sweep) would share parameters by name.
pyro.settings.set(module_local_params=True)

# The priors model.prior=<name> selects; each fits the content latents of its space (see genssl.methods.priors).
BUILTIN_PRIORS = {
    "normal": NormalPrior,
    "flat": FlatPrior,
    "mog": MixturePrior,
    "uniform": UniformPrior,
    "vmf_mixture": VMFMixturePrior,
    "power_law": PowerLawPrior,
    "class_marginal": ClassMarginalPrior,
}

__all__ = [
    "BUILTIN_PRIORS",
    "ClassMarginalPrior",
    "ClassUniform",
    "ContentSpec",
    "ContentViewModel",
    "FlatPrior",
    "FlatViewMarginal",
    "GenerativeModel",
    "MaskedPatchModel",
    "MixturePrior",
    "NormalPrior",
    "ObjectiveTerms",
    "PowerLawPrior",
    "ProposalSpec",
    "SimVAE",
    "SphereUniform",
    "UniformPrior",
    "UniformRelativeCategorical",
    "VMFMixturePrior",
    "ViewConditional",
    "ViewModel",
    "VonMisesFisher",
]
