"""Family ``discriminative``: a point-embedding guide chosen by ``guide.kind`` and a ViewModel of its sites.

The guide (:data:`~genssl.guides.EMBEDDING_GUIDES`) declares the sites it proposes and their widths;
the model puts a flat base measure on exactly those and enters ``model.terms`` (a ``_target_``
returning ``{name: term}``) with ``pyro.factor``, so −ELBO is the method's loss.
"""

from __future__ import annotations

from omegaconf import DictConfig

from genssl.errors import ConfigError, choices
from genssl.guides import EMBEDDING_GUIDES
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods.components import build_terms
from genssl.models import ViewModel
from genssl.nets import build_encoder
from genssl.nets.heads import projection_head


def build_discriminative(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """Encoder + ``guide.projector`` head, the ``guide.kind`` guide over them, and ``model.terms``."""
    encoder = build_encoder(cfg.net.encoder, channels, image_size, cfg.net.feature_dim)
    g = cfg.guide
    p = g.projector
    projector = projection_head(encoder.out_features, p.hidden_dim, p.out_dim, p.layers, p.batch_norm)
    terms = build_terms(cfg.model.terms)
    kind = g.get("kind", "delta")
    if kind not in EMBEDDING_GUIDES:
        raise ConfigError(f"Unknown guide kind '{kind}': guide.kind must be {choices(EMBEDDING_GUIDES)}.")
    guide = EMBEDDING_GUIDES[kind].from_config(g, encoder, projector)
    model = ViewModel(terms, guide.sites, content_classes=guide.content_classes)
    return PyroSSL(model, guide, elbo=cfg.model.elbo)
