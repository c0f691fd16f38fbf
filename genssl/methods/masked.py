"""Family ``masked`` (MAE, U-MAE, M-MAE): a ViT encoder of the visible patches and a patch decoder likelihood."""

from __future__ import annotations

from omegaconf import DictConfig

from genssl.errors import ConfigError
from genssl.guides import MaskedEncoderGuide
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods.components import build_terms, check_keys
from genssl.models import MaskedPatchModel
from genssl.nets.vit import MaskedPatchDecoder, ViTEncoder, default_patch_size

MODEL_KEYS = frozenset({"elbo", "pixel_var", "norm_pix_loss", "terms", "decoder"})


def build_vit(vit_cfg: DictConfig, channels: int, image_size: int) -> ViTEncoder:
    """The ViT encoder described by ``net.vit`` for [N, channels, image_size, image_size] images.

    ``net.vit.patch_size: null`` picks :func:`~genssl.nets.vit.default_patch_size` (a 4×4 grid).
    """
    patch_size = vit_cfg.patch_size if vit_cfg.patch_size is not None else default_patch_size(image_size)
    return ViTEncoder(
        channels,
        image_size,
        patch_size=patch_size,
        width=vit_cfg.width,
        depth=vit_cfg.depth,
        heads=vit_cfg.heads,
        mlp_ratio=vit_cfg.mlp_ratio,
        pos_embed=vit_cfg.pos_embed,
    )


def build_masked(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """ViT encoder of the visible patches (guide) and MAE decoder likelihood + regulariser terms (model)."""
    m = cfg.model
    if m.get("prior") is not None:
        raise ConfigError(
            f"{cfg.method.name} has no content latent to put model.prior on: each view's hidden patches are "
            "reconstructed from its own visible ones, with no latent shared by the views of an image. Drop model.prior."
        )
    check_keys(m, MODEL_KEYS, "model", "the masked family")
    check_keys(cfg.guide, {"mask_ratio"}, "guide", "the masked family")
    encoder = build_vit(cfg.net.vit, channels, image_size)
    d = m.decoder
    decoder = MaskedPatchDecoder(
        encoder.grid,
        encoder.patch_size,
        channels,
        encoder.width,
        width=d.width,
        depth=d.depth,
        heads=d.heads,
        mlp_ratio=d.mlp_ratio,
        pos_embed=cfg.net.vit.pos_embed,
    )
    guide = MaskedEncoderGuide(encoder, mask_ratio=cfg.guide.mask_ratio)
    terms = build_terms(m.terms)
    model = MaskedPatchModel(
        decoder, encoder.width, guide.num_visible, terms, norm_pix_loss=m.norm_pix_loss, pixel_var=m.pixel_var
    )
    return PyroSSL(model, guide, elbo=m.elbo)
