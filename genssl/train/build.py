"""Turn a resolved config into a trainable :class:`~genssl.inference.pyro_ssl.PyroSSL` method."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from genssl.data import ImageDataset, load_dataset
from genssl.errors import ConfigError, ShapeError, choices
from genssl.guides import (
    ClusterAssignmentGuide,
    DeltaEncoderGuide,
    DistillationGuide,
    NormalEncoderGuide,
    PrototypeGuide,
)
from genssl.inference.directpred import DirectPredictor
from genssl.inference.pyro_ssl import PyroSSL
from genssl.models import BUILTIN_PRIORS, SimVAE, ViewModel
from genssl.nets import build_decoder, build_encoder
from genssl.nets.heads import projection_head
from genssl.train.build_masked import build_masked


def dataset_from_config(cfg: DictConfig) -> ImageDataset:
    """Load ``cfg.data`` (the split subsets are drawn with the run's seed)."""
    d = cfg.data
    return load_dataset(
        d.name,
        root=d.root,
        train_subset=d.train_subset,
        test_subset=d.test_subset,
        seed=cfg.seed,
        download=d.download,
        image_size=d.image_size,
        styled=d.get("styled", False),
        **d.options,
    )


def instantiation_error(err: Exception) -> str:
    """Hydra's instantiate error (or its cause) as one line: its messages span several."""
    return " ".join(str(err.__cause__ or err).split()).rstrip(".")


def build_prior(prior_cfg: Mapping[str, Any] | str) -> Callable:
    """Instantiate ``model.prior``: a built-in name or a ``_target_`` dotted path with its kwargs."""
    if isinstance(prior_cfg, str):
        if prior_cfg not in BUILTIN_PRIORS:
            raise ConfigError(
                f"Unknown prior '{prior_cfg}': model.prior must be {choices(BUILTIN_PRIORS)} or "
                "model.prior._target_=<module.Callable> for a prior of your own."
            )
        return BUILTIN_PRIORS[prior_cfg]()
    target = prior_cfg.get("_target_") if isinstance(prior_cfg, Mapping) else None
    if not target:
        raise ConfigError(
            f"model.prior={prior_cfg!r} names no prior: give one of {choices(BUILTIN_PRIORS)} "
            "or model.prior._target_=<module.Callable>."
        )
    try:
        return hydra.utils.instantiate(prior_cfg)
    except Exception as err:  # hydra wraps import and signature errors in its own exception types
        cause = instantiation_error(err)
        raise ConfigError(
            f"Could not build the prior model.prior._target_='{target}' with arguments "
            f"{dict((k, v) for k, v in prior_cfg.items() if k != '_target_')}: {cause}. A prior is a Pyro "
            f"callable prior(batch_size, latent_dim) importable from the current directory or an installed "
            f"package, or a built-in: {choices(BUILTIN_PRIORS)} (model.prior=<name>)."
        ) from None


def build_generative(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """SimVAE / VAE / β-VAE: a decoder model with a prior, and the amortised Normal encoder guide."""
    m = cfg.model
    view_var = m.get("view_var")
    views = int(cfg.data.num_views)
    if view_var is not None and views < 2:
        raise ShapeError(
            f"SimVAE needs at least two views of each image to relate them, but data.num_views={views}. "
            "Set data.num_views=2 (or more), or use method=vae for single-view training."
        )
    prior_cfg = OmegaConf.to_container(m.prior, resolve=True) if isinstance(m.prior, DictConfig) else m.prior
    prior = build_prior(prior_cfg)
    decoder = build_decoder(cfg.net.encoder, m.latent_dim, channels, image_size)
    model = SimVAE(
        decoder,
        prior,
        m.latent_dim,
        view_var=view_var,
        likelihood=cfg.data.likelihood,
        beta=m.beta,
        integrate_content=m.integrate_content,
    )
    encoder = build_encoder(cfg.net.encoder, channels, image_size, cfg.net.feature_dim)
    guide = NormalEncoderGuide(
        encoder,
        m.latent_dim,
        latent_site=model.latent_site,
        samples_content=model.samples_content,
        view_var=view_var,
        num_views=views,
        beta=m.beta,
    )
    return PyroSSL(model, guide, elbo=m.elbo)


GUIDES = ("delta", "distillation", "prototypes", "clusters")


def build_discriminative(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """Point-embedding methods: a Delta-site guide (plain, distillation or prototypes) and a ViewModel
    whose terms (``model.terms``, a ``_target_`` returning ``{name: term}``) make the ELBO the loss."""
    encoder = build_encoder(cfg.net.encoder, channels, image_size, cfg.net.feature_dim)
    g = cfg.guide
    p = g.projector
    projector = projection_head(encoder.out_features, p.hidden_dim, p.out_dim, p.layers, p.batch_norm)
    terms_cfg = OmegaConf.to_container(cfg.model.terms, resolve=True)
    try:
        terms = hydra.utils.instantiate(terms_cfg)
    except Exception as err:
        raise ConfigError(f"Could not build the objective terms {terms_cfg}: {instantiation_error(err)}.") from None
    kind = g.get("kind", "delta")
    if kind == "delta":
        guide, sites = DeltaEncoderGuide(encoder, projector), {"z": p.out_dim}
    elif kind == "distillation":
        guide = DistillationGuide(encoder, projector, build_predictor(g.predictor, p.out_dim), g.target, g.momentum)
        sites = {"z": p.out_dim, "prediction": p.out_dim, "target": p.out_dim}
    elif kind == "prototypes":
        k = g.prototypes.num
        teacher = g.prototypes.teacher
        guide = PrototypeGuide(
            encoder, projector, k, teacher.enabled, teacher.momentum, teacher.temperature, teacher.centre_momentum
        )
        sites = {"scores": k, **({"teacher_probs": k} if teacher.enabled else {})}
    elif kind == "clusters":
        k = g.clusters.num
        guide, sites = ClusterAssignmentGuide(encoder, projector, k, g.clusters.iterations), {"scores": k}
        return PyroSSL(ViewModel(terms, sites, content_classes=k), guide, elbo=cfg.model.elbo)
    else:
        raise ConfigError(f"Unknown guide kind '{kind}': guide.kind must be {choices(GUIDES)}.")
    return PyroSSL(ViewModel(terms, sites), guide, elbo=cfg.model.elbo)


PREDICTORS = ("mlp", "directpred")


def build_predictor(pred_cfg: DictConfig, dim: int) -> torch.nn.Module:
    """BYOL/SimSiam's MLP predictor, or DirectPred's directly-set linear one."""
    if pred_cfg.kind == "mlp":
        return projection_head(dim, pred_cfg.hidden_dim, dim, layers=2)
    if pred_cfg.kind == "directpred":
        return DirectPredictor(dim, pred_cfg.rho, pred_cfg.eps, pred_cfg.freq, pred_cfg.variant)
    raise ConfigError(f"Unknown predictor '{pred_cfg.kind}': guide.predictor.kind must be {choices(PREDICTORS)}.")


BUILDERS: dict[str, Callable[[DictConfig, int, int], PyroSSL]] = {
    "generative": build_generative,
    "discriminative": build_discriminative,
    "masked": build_masked,
}


def build_method(cfg: DictConfig, channels: int, image_size: int) -> PyroSSL:
    """Build the model/guide pair of ``cfg.method`` for images of the given shape."""
    family = cfg.method.family
    if family not in BUILDERS:
        raise ConfigError(
            f"Unknown method family '{family}' in method '{cfg.method.name}': "
            f"method.family must be {choices(BUILDERS)}."
        )
    return BUILDERS[family](cfg, channels, image_size)


def untrained_method(cfg: DictConfig, dataset: ImageDataset, device: torch.device) -> PyroSSL:
    """The run's method as initialised: seeded with ``cfg.seed`` and built exactly as training builds it."""
    from genssl.train.runtime import seed_everything

    seed_everything(cfg.seed)
    return build_method(cfg, dataset.channels, dataset.image_size).to(device)


def check_input_shape(method: PyroSSL, views: torch.Tensor) -> None:
    """Run one loss evaluation so shape mismatches surface as a clear error before training starts."""
    try:
        method(views)
    except RuntimeError as err:
        if "shape" not in str(err) and "size" not in str(err):
            raise
        raise ShapeError(
            f"Images of shape {tuple(views.shape[2:])} do not fit the chosen networks: {err}. "
            "Check data.image_size, data.channels and net.encoder."
        ) from None
