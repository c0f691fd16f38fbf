"""Family ``discriminative``: a point-embedding guide chosen by ``guide.kind`` and a latent-variable model
of its sites with a content prior (``model.prior``).

The guide (:data:`~genssl.guides.EMBEDDING_GUIDES`) declares the sites it proposes and their widths.
The terms (``model.terms``, a ``_target_`` returning :class:`~genssl.models.ObjectiveTerms`) give the
method's factors and its content latent: the view conditional p(s | y) that stands in for the
two-view reconstruction, and how the guide proposes y. The model is then
:class:`~genssl.models.ContentViewModel` (prior × conditional × factors) and the guide
:class:`~genssl.guides.content.ContentGuide`; with the default prior −ELBO is the published loss.
Terms without a content latent (SSL-HSIC, whose y is the image identity inside HSIC) keep the
energy form and refuse a prior.
"""

from __future__ import annotations

from omegaconf import DictConfig

from genssl.errors import ConfigError, choices
from genssl.guides import EMBEDDING_GUIDES
from genssl.guides.content import ContentGuide, build_proposal, class_marginal
from genssl.inference.pyro_ssl import PyroSSL
from genssl.methods.components import build_terms, check_keys
from genssl.methods.priors import build_prior, prepare_prior
from genssl.models import ContentViewModel, ViewModel
from genssl.nets import build_encoder
from genssl.nets.heads import projection_head
from genssl.nets.mlp import SIMVAE_HIDDEN

MODEL_KEYS = frozenset({"elbo", "terms", "prior", "latent_dim"})


def build_discriminative(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """Encoder + ``guide.projector`` head, the ``guide.kind`` guide over them, ``model.terms`` and ``model.prior``."""
    encoder = build_encoder(
        cfg.net.encoder, channels, image_size, cfg.net.feature_dim, cfg.net.get("mlp_hidden", SIMVAE_HIDDEN)
    )
    g = cfg.guide
    p = g.projector
    projector = projection_head(encoder.out_features, p.hidden_dim, p.out_dim, p.layers, p.batch_norm)
    terms = build_terms(cfg.model.terms)
    kind = g.get("kind", "delta")
    if kind not in EMBEDDING_GUIDES:
        raise ConfigError(f"Unknown guide kind '{kind}': guide.kind must be {choices(EMBEDDING_GUIDES)}.")
    guide_class = EMBEDDING_GUIDES[kind]
    check_keys(g, {"kind", "projector", *guide_class.config_keys}, "guide", f"guide.kind={kind}")
    check_keys(cfg.model, MODEL_KEYS, "model", f"the {cfg.method.family} family")
    base = guide_class.from_config(g, encoder, projector)
    content = getattr(terms, "content", None)
    prior_cfg = cfg.model.get("prior")
    name = cfg.method.name
    if content is None:
        if prior_cfg is not None:
            raise ConfigError(
                f"{name} has no content latent to put model.prior on: its objective's terms "
                f"({cfg.model.terms._target_}) define no view conditional p(views | y). Drop model.prior."
            )
        model = ViewModel(terms, base.sites, content_classes=base.content_classes)
        return PyroSSL(model, base, elbo=cfg.model.elbo)
    if prior_cfg is None:
        raise ConfigError(f"{name} needs model.prior for its content latent y, e.g. model.prior=uniform.")
    conditional = content.conditional
    if conditional.site not in base.sites:
        raise ConfigError(
            f"{name}'s view conditional scores the site '{conditional.site}', which guide.kind={kind} does not "
            f"propose (it proposes {choices(base.sites)})."
        )
    content_dim = base.sites[conditional.site]
    declared = cfg.model.get("latent_dim")
    if declared is not None and int(declared) != content_dim:
        raise ConfigError(
            f"model.latent_dim={declared} does not match {name}'s content latent, which has the width of the "
            f"'{conditional.site}' site ({content_dim}): set its size through the guide (e.g. "
            "guide.projector.out_dim or guide.prototypes.num), which model.latent_dim follows."
        )
    prior, enumerate_prior = prepare_prior(build_prior(prior_cfg, content_dim), conditional.space, content_dim, name)
    proposal = build_proposal(content.proposal.kind, content.proposal.params, class_marginal(prior, content_dim))
    factors = {k: v for k, v in terms.items() if k not in content.replaces} | dict(content.extra_terms)
    model = ContentViewModel(
        prior, conditional, content_dim, base.sites, factors, proposal.anchored, enumerate_prior=enumerate_prior
    )
    guide = ContentGuide(base, proposal, conditional.site, prior, content_dim, conditional.samplable)
    needs_enum = enumerate_prior or (proposal.discrete and proposal.anchored)
    elbo = cfg.model.elbo
    if needs_enum and elbo != "enum":
        what = "its guide of y sums over the K classes" if not enumerate_prior else "model.prior has discrete latents"
        raise ConfigError(
            f"{name} with this prior needs model.elbo=enum ({what}, which genssl enumerates exactly with "
            f"TraceEnum_ELBO rather than sampling), not model.elbo={elbo}."
        )
    return PyroSSL(model, guide, elbo=elbo)
