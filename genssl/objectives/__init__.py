"""Estimators of the entropy, reconstruction, kernel and redundancy terms of SSL objectives.

Pure tensor functions, the building blocks the models' terms (``pyro.factor``) are written with:
Sinkhorn codes and k-means, entropy and reconstruction estimators, IMQ kernels and HSIC, matrix
entropies and the coding rate, VICReg/Barlow redundancy terms. The published losses in their
usual form live in :mod:`genssl.reference`, which only the tests use.
"""

from __future__ import annotations

from .assignments import sinkhorn_knopp, spherical_kmeans
from .entropy import gaussian_logdet_entropy, prototype_entropy, vmf_kde_entropy, vmf_kde_log_density
from .kernels import (
    hsic_exact,
    hsic_features,
    identity_hsic_exact,
    identity_hsic_features,
    imq_frequencies,
    imq_kernel,
    imq_scale_objective,
    random_fourier_features,
)
from .matrix import (
    gram_matrix,
    gram_mean_square,
    matrix_joint_entropy,
    matrix_mutual_information,
    matrix_renyi_entropy,
    total_coding_rate,
)
from .reconstruction import symmetric_cross_entropy, vmf_reconstruction
from .redundancy import batch_standardise, cross_correlation, vicreg_covariance, vicreg_invariance, vicreg_variance
from .special import log_bessel_iv, log_vmf_normaliser

__all__ = [
    "batch_standardise",
    "cross_correlation",
    "gaussian_logdet_entropy",
    "gram_matrix",
    "gram_mean_square",
    "hsic_exact",
    "hsic_features",
    "identity_hsic_exact",
    "identity_hsic_features",
    "imq_frequencies",
    "imq_kernel",
    "imq_scale_objective",
    "log_bessel_iv",
    "log_vmf_normaliser",
    "matrix_joint_entropy",
    "matrix_mutual_information",
    "matrix_renyi_entropy",
    "prototype_entropy",
    "random_fourier_features",
    "sinkhorn_knopp",
    "spherical_kmeans",
    "symmetric_cross_entropy",
    "total_coding_rate",
    "vicreg_covariance",
    "vicreg_invariance",
    "vicreg_variance",
    "vmf_kde_entropy",
    "vmf_kde_log_density",
    "vmf_reconstruction",
]
