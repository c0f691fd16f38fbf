"""The method registry: one place that turns a resolved config into a model/guide pair.

Below both training and evaluation (each imports it; it imports neither). ``build_method`` picks the
family builder named by ``method.family``; the builders read ``model``, ``guide`` and ``net`` and
return a :class:`~genssl.inference.pyro_ssl.PyroSSL`.
"""

from genssl.methods.components import build_terms
from genssl.methods.priors import build_prior, prepare_prior
from genssl.methods.registry import FAMILIES, build_method, check_input_shape, untrained_method

__all__ = [
    "FAMILIES",
    "build_method",
    "build_prior",
    "build_terms",
    "check_input_shape",
    "prepare_prior",
    "untrained_method",
]
