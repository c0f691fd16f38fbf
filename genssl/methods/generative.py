"""Family ``generative`` (SimVAE, VAE, β-VAE): a decoder model with a content prior and the Normal encoder guide."""

from __future__ import annotations

from omegaconf import DictConfig

from genssl.errors import ConfigError, ShapeError
from genssl.guides import NormalEncoderGuide
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods.components import check_keys
from genssl.methods.priors import build_prior, prepare_prior
from genssl.models import SimVAE
from genssl.nets import build_decoder, build_encoder
from genssl.nets.mlp import SIMVAE_HIDDEN

MODEL_KEYS = frozenset({"latent_dim", "view_var", "beta", "integrate_content", "elbo", "prior"})


def build_generative(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """``model.view_var`` null is the VAE (every view its own image); a number is SimVAE's σ²."""
    m = cfg.model
    check_keys(m, MODEL_KEYS, "model", "the generative family")
    view_var = m.get("view_var")
    views = int(cfg.data.num_views)
    if view_var is not None and views < 2:
        raise ShapeError(
            f"SimVAE needs at least two views of each image to relate them, but data.num_views={views}. "
            "Set data.num_views=2 (or more), or use method=vae for single-view training."
        )
    prior, enumerate_prior = prepare_prior(
        build_prior(m.prior, m.latent_dim), "euclidean", m.latent_dim, cfg.method.name
    )
    if enumerate_prior and m.elbo != "enum":
        raise ConfigError(
            f"model.prior has discrete latents of its own (a mixture component), which genssl enumerates exactly "
            f"with TraceEnum_ELBO: set model.elbo=enum (not {m.elbo})."
        )
    decoder = build_decoder(
        cfg.net.encoder, m.latent_dim, channels, image_size, cfg.net.get("mlp_hidden", SIMVAE_HIDDEN)
    )
    model = SimVAE(
        decoder,
        prior,
        m.latent_dim,
        view_var=view_var,
        likelihood=cfg.data.likelihood,
        beta=m.beta,
        integrate_content=m.integrate_content,
        enumerate_prior=enumerate_prior,
    )
    encoder = build_encoder(
        cfg.net.encoder, channels, image_size, cfg.net.feature_dim, cfg.net.get("mlp_hidden", SIMVAE_HIDDEN)
    )
    guide = NormalEncoderGuide(
        encoder,
        m.latent_dim,
        latent_site=model.latent_site,
        samples_content=model.samples_content,
        view_var=view_var,
        num_views=views,
        beta=m.beta,
        prior=prior,
    )
    return PyroSSL(model, guide, elbo=m.elbo)
