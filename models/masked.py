"""The model side of masked image modelling: MAE, U-MAE and M-MAE as Pyro models.

The guide (``genssl.guides.masked_encoder``) proposes, per view, a random patch mask m, the [CLS]
embedding c and the visible-patch tokens t as point masses. The model puts flat (improper) base
measures on m, c and t and scores

    log p(x_hid | c, t, m) = Σ_{hidden patches, values} log N(x_k; g(c, t, m)_k, σ²)    (σ² fixed)

where g is the light transformer decoder and x the (optionally per-patch normalised) pixel
targets. The likelihood is averaged over the N = B·J·K·P hidden values (``poutine.scale(1/N)``,
K hidden patches of P values per view), like the batch means of the other methods. Each method's
regulariser of the ℓ2-normalised [CLS] features Ẑ ([B·J, D]) enters with ``pyro.factor``:

| method | factor                                 | −ELBO =                                        |
|--------|----------------------------------------|------------------------------------------------|
| mae    | none                                   | MSE/(2σ²) + ½log(2πσ²)                         |
| umae   | −λ · mean_ij (ẑ_iᵀẑ_j)²                | MSE/(2σ²) + λ·mean_ij(ẑ_iᵀẑ_j)² + ½log(2πσ²)   |
| mmae   | +λ · log det(I + (μ/d) ẐᵀẐ)            | MSE/(2σ²) − λ·log det(I + (μ/d)ẐᵀẐ) + ½log(2πσ²) |

with MSE MAE's masked-patch mean squared error (:func:`genssl.nets.masking.masked_patch_mse`).
At the default σ² = ½ the scale is 1: −ELBO = published loss + ½ log π. Another σ² gives
(1/(2σ²))·(MSE + 2σ²λ·R) + ½log(2πσ²): the published loss with λ' = 2σ²λ, up to that scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from torch import nn

from genssl.errors import ConfigError
from genssl.models.view_model import Sites, Term, enter_terms, global_batch
from genssl.nets.masking import patch_targets
from genssl.nets.vit import MaskedPatchDecoder
from genssl.objectives import gram_mean_square, total_coding_rate


def cls_features(sites: Sites) -> torch.Tensor:
    """The [CLS] embeddings of every view, [B, J, D] → [B·J, D] (the regularisers' batch)."""
    return sites["cls"].flatten(0, 1)


def _check_weight(lambda_: float) -> None:
    if not float(lambda_) >= 0.0:
        raise ConfigError(f"model.terms.lambda_={lambda_} must be a non-negative weight (U-MAE / M-MAE use 0.01).")


def mae_terms() -> dict[str, Term]:
    """MAE: the masked-patch likelihood alone, no regulariser."""
    return {}


def umae_terms(lambda_: float = 1e-2) -> dict[str, Term]:
    """U-MAE (Zhang, Wang and Wang, NeurIPS 2022): factor −λ · mean_ij (ẑ_iᵀẑ_j)² on the [CLS] features.

    Ẑ the ℓ2-normalised [CLS] embeddings of all B·J views; the mean runs over all (B·J)² pairs,
    diagonal included (:func:`genssl.objectives.gram_mean_square`). λ = 0.01 in the paper.
    """
    _check_weight(lambda_)

    def uniformity(sites: Sites) -> torch.Tensor:
        return -lambda_ * gram_mean_square(cls_features(sites))

    return {"uniformity": uniformity}


def mmae_terms(lambda_: float = 1e-2, mu: float = 1.0) -> dict[str, Term]:
    """M-MAE (Zhang, Tan, Huang and Yuan, ICML 2024): factor +λ · log det(I_d + (μ/d) ẐᵀẐ).

    The total coding rate (:func:`genssl.objectives.total_coding_rate`) of Ẑ, the ℓ2-normalised
    [CLS] embeddings of all B·J views, d their width. λ = 0.01; μ = 1 for ViT-B, 3 for ViT-L. Its
    second-order expansion is (μ/d)·B·J − (μ²(B·J)²/2d²)·mean_ij (ẑ_iᵀẑ_j)²: U-MAE's term, up to a constant.
    """
    _check_weight(lambda_)
    if not float(mu) > 0.0:
        raise ConfigError(f"model.terms.mu={mu} must be positive (M-MAE uses 1 for ViT-B, 3 for ViT-L).")

    def coding_rate(sites: Sites) -> torch.Tensor:
        return lambda_ * total_coding_rate(cls_features(sites), mu)

    return {"coding_rate": coding_rate}


class MaskedPatchModel(nn.Module):
    """log p(x_hidden | cls, tokens, mask) with a fixed-variance Gaussian, plus regulariser factors.

    Args:
        decoder: predicts every patch [N, L, P] from encoder tokens [N, 1 + L_vis, D] and masks [N, L].
        width: D, the encoder's token width. num_visible: L_vis, visible patches per view.
        terms: ``{name: term(sites)}`` log-density terms entered with ``pyro.factor``.
        norm_pix_loss: targets normalised per patch (MAE's ``norm_pix_loss``).
        pixel_var: σ² of the Gaussian likelihood; ½ makes −ELBO = published loss + ½ log π.
    """

    def __init__(
        self,
        decoder: MaskedPatchDecoder,
        width: int,
        num_visible: int,
        terms: Mapping[str, Term] | None = None,
        norm_pix_loss: bool = False,
        pixel_var: float = 0.5,
    ) -> None:
        super().__init__()
        if not float(pixel_var) > 0.0:
            raise ConfigError(
                f"model.pixel_var={pixel_var} must be positive (the fixed variance of the pixel "
                "likelihood; 0.5 makes the loss exactly the published one)."
            )
        self.decoder = decoder
        self.width, self.num_visible = int(width), int(num_visible)
        self.terms = dict(terms or {})
        self.norm_pix_loss = bool(norm_pix_loss)
        self.pixel_var = float(pixel_var)

    @property
    def constant(self) -> float:
        """The additive constant of −ELBO: ½ log(2πσ²)."""
        return 0.5 * math.log(2.0 * math.pi * self.pixel_var)

    def forward(self, views: torch.Tensor) -> None:
        batch, num_views = views.shape[:2]
        length, width, visible = self.decoder.num_patches, self.width, self.num_visible
        real = constraints.real
        with pyro.plate("images", batch):
            mask = pyro.sample("mask", dist.ImproperUniform(real, (batch,), (num_views, length)))
            cls = pyro.sample("cls", dist.ImproperUniform(real, (batch,), (num_views, width)))
            tokens = pyro.sample("tokens", dist.ImproperUniform(real, (batch,), (num_views, visible, width)))
            encoded = torch.cat([cls.flatten(0, 1).unsqueeze(1), tokens.flatten(0, 1)], dim=1)
            prediction = self.decoder(encoded, mask.flatten(0, 1), visible).float().unflatten(0, (batch, num_views))
            target = patch_targets(views.flatten(0, 1).float(), self.decoder.patch_size, self.norm_pix_loss)
            target = target.unflatten(0, (batch, num_views))
            hidden_values = batch * num_views * (length - visible) * self.decoder.patch_dim
            likelihood = dist.Normal(prediction, math.sqrt(self.pixel_var)).mask(mask.unsqueeze(-1) > 0.5)
            # Averaging over the hidden values makes the likelihood MAE's mean, not a batch-size-dependent sum.
            with poutine.scale(scale=1.0 / hidden_values):
                pyro.sample("patches", likelihood.to_event(3), obs=target)
        sites = {"mask": mask, "cls": cls, "tokens": tokens}
        enter_terms(self.terms, global_batch(sites))
