"""The published SSL losses in their usual form, kept to test the methods' ELBO terms against.

Production code never imports this package (``tests/test_layers.py`` enforces it): the terms in
``genssl.models`` are written from the papers' formulas on the estimators of
:mod:`genssl.objectives`, and the tests check −ELBO against these losses (and against lightly's).
"""

from __future__ import annotations

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

__all__ = [
    "barlow_twins_loss",
    "byol_loss",
    "deepcluster_loss",
    "dino_centre_update",
    "dino_loss",
    "mmae_coding_rate_loss",
    "negative_cosine_similarity",
    "nt_xent_loss",
    "spectral_contrastive_loss",
    "ssl_hsic_loss",
    "swav_loss",
    "umae_uniformity",
    "vicreg_loss",
]
