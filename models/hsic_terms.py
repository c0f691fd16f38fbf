"""SSL-HSIC (Li et al., NeurIPS 2021) as ViewModel terms, with its learned kernel scale.

    −ELBO = −HSIC(Z, Y) + γ √HSIC(Z, Z)          (IMQ kernel, Y = image identity)

over the views' embeddings: the "z" site (no target network), or — with the distillation guide —
the online predictions and stop-gradient target projections of both views (four "views" per image,
the official setting). The kernel scale c is a parameter of this term; as in the official code the
HSIC terms see it detached, and a separate factor log |mean ∂k/∂c| (its gradient reaches only c,
the embeddings are detached there) learns it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, ItemsView

import torch
import torch.nn.functional as F
from torch import nn

from genssl.errors import ConfigError, ShapeError
from genssl.models.view_model import Sites
from genssl.objectives import (
    hsic_exact,
    hsic_features,
    identity_hsic_exact,
    identity_hsic_features,
    imq_frequencies,
    imq_kernel,
    imq_scale_objective,
    random_fourier_features,
)

# √HSIC(Z, Z) is taken of max(HSIC(Z, Z), this): finite, with a finite gradient, at collapse.
HSIC_FLOOR = 1e-12


class SSLHSICTerms(nn.Module):
    """The two factors of SSL-HSIC: ``hsic`` (the loss) and ``kernel_scale`` (learns c)."""

    def __init__(self, gamma: float = 3.0, init_scale: float = 1.0, num_features: int | None = 512) -> None:
        super().__init__()
        if not float(gamma) >= 0.0:
            raise ConfigError(f"model.terms.gamma={gamma} must be a non-negative weight (SSL-HSIC uses 3).")
        if num_features is not None and (
            isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1
        ):
            raise ConfigError(
                f"model.terms.num_features={num_features} must be a positive integer (random Fourier "
                "features) or null (the exact kernel)."
            )
        self.gamma = gamma
        self.num_features = num_features
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    @staticmethod
    def embeddings(sites: Sites) -> torch.Tensor:
        """[B, M, D]: the target-network views when the guide has them, else the plain embeddings."""
        if "prediction" in sites and "target" in sites:
            return torch.cat([sites["prediction"], sites["target"]], dim=1)
        return sites["z"]

    def items(self) -> ItemsView[str, Callable[[Sites], torch.Tensor]]:
        return {"hsic": self.hsic, "kernel_scale": self.kernel_scale}.items()

    def hsic(self, sites: Sites) -> torch.Tensor:
        """HSIC(Z, Y) − γ √max(HSIC(Z, Z), 1e-12) of the ℓ2-normalised views, with c detached.

        Z holds the N·M views ([N images, M views, d], image-major). ``num_features=None``: the exact
        IMQ Gram matrix K, HSIC(Z, Y) = :func:`~genssl.objectives.identity_hsic_exact`(K) and
        HSIC(Z, Z) = :func:`~genssl.objectives.hsic_exact`(K, K), quadratic in N·M. Otherwise D
        random Fourier features from two independent draws of IMQ frequencies (from torch's global
        generator, two draws per call): HSIC(Z, Y) from the first draw, HSIC(Z, Z) from both
        (:func:`~genssl.objectives.hsic_features`, so the estimate of k² is unbiased), linear in N·M.
        """
        z = self.embeddings(sites)
        if z.dim() != 3 or z.shape[1] < 2:
            raise ShapeError(f"SSL-HSIC's embeddings have shape {tuple(z.shape)}: expected [images, views >= 2, d].")
        n_img, views, dim = z.shape
        flat = F.normalize(z.reshape(n_img * views, dim), dim=-1)
        c = self.log_scale.exp().detach()
        if self.num_features is None:
            k = imq_kernel(flat, flat, c)
            hsic_zy, hsic_zz = identity_hsic_exact(k, views), hsic_exact(k, k)
        else:
            draws = [imq_frequencies(dim, self.num_features, dtype=z.dtype, device=z.device) for _ in range(2)]
            phi1, phi2 = (random_fourier_features(flat, omega, c) for omega in draws)
            hsic_zy = identity_hsic_features(phi1.reshape(n_img, views, -1))
            hsic_zz = hsic_features(phi1, phi2)
        return hsic_zy - self.gamma * torch.sqrt(hsic_zz.clamp_min(HSIC_FLOOR))

    def kernel_scale(self, sites: Sites) -> torch.Tensor:
        z = F.normalize(self.embeddings(sites).flatten(0, 1).detach(), dim=1)
        return imq_scale_objective(z, z, self.log_scale.exp())


def ssl_hsic_terms(gamma: float = 3.0, init_scale: float = 1.0, num_features: int | None = 512) -> SSLHSICTerms:
    return SSLHSICTerms(gamma, init_scale, num_features)
