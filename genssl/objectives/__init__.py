"""Estimators of the entropy, reconstruction, kernel and redundancy terms of SSL objectives.

Pure tensor functions, usable on their own or as observation terms (``pyro.factor``) of the
models. ``published`` holds the published losses in their usual form, for reference and tests.
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
    matrix_joint_entropy,
    matrix_mutual_information,
    matrix_renyi_entropy,
    total_coding_rate,
)
from .published import (
    barlow_twins_loss,
    byol_loss,
    deepcluster_loss,
    dino_centre_update,
    dino_loss,
    mmae_coding_rate_loss,
    negative_cosine_similarity,
    nt_xent_loss,
    spectral_contrastive_loss,
    ssl_hsic_loss,
    swav_loss,
    umae_uniformity,
    vicreg_loss,
)
from .reconstruction import symmetric_cross_entropy, vmf_reconstruction
from .redundancy import batch_standardise, cross_correlation, vicreg_covariance, vicreg_invariance, vicreg_variance
from .special import log_bessel_iv, log_vmf_normaliser

__all__ = [
    "barlow_twins_loss",
    "batch_standardise",
    "byol_loss",
    "cross_correlation",
    "deepcluster_loss",
    "dino_centre_update",
    "dino_loss",
    "gaussian_logdet_entropy",
    "gram_matrix",
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
    "mmae_coding_rate_loss",
    "negative_cosine_similarity",
    "nt_xent_loss",
    "prototype_entropy",
    "random_fourier_features",
    "sinkhorn_knopp",
    "spectral_contrastive_loss",
    "spherical_kmeans",
    "ssl_hsic_loss",
    "swav_loss",
    "symmetric_cross_entropy",
    "total_coding_rate",
    "umae_uniformity",
    "vicreg_covariance",
    "vicreg_invariance",
    "vicreg_loss",
    "vicreg_variance",
    "vmf_kde_entropy",
    "vmf_kde_log_density",
    "vmf_reconstruction",
]
