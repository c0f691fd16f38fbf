"""Config → component helpers shared by the family builders: instantiated terms and priors."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genssl.errors import ConfigError, choices
from genssl.models import BUILTIN_PRIORS


def instantiation_error(err: Exception) -> str:
    """Hydra's instantiate error (or its cause) as one line: its messages span several."""
    return " ".join(str(err.__cause__ or err).split()).rstrip(".")


def plain(node: Any) -> Any:
    """A config node as plain Python containers (interpolations resolved); other values unchanged."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_terms(terms_cfg: DictConfig) -> Any:
    """Instantiate ``model.terms``: a ``_target_`` returning ``{name: term}`` (or a module with ``items()``)."""
    spec = plain(terms_cfg)
    try:
        return hydra.utils.instantiate(spec)
    except Exception as err:  # hydra wraps import, signature and value errors in its own exception types
        raise ConfigError(f"Could not build the objective terms {spec}: {instantiation_error(err)}.") from None


def build_prior(prior_cfg: Mapping[str, Any] | str, latent_dim: int) -> Callable:
    """Instantiate ``model.prior``: a built-in name or a ``_target_`` dotted path with its kwargs.

    A built-in named by a plain string gets ``latent_dim`` when its constructor takes one (the mixture
    prior), so every name in :data:`~genssl.models.BUILTIN_PRIORS` builds on that path too.
    """
    prior_cfg = plain(prior_cfg)
    if isinstance(prior_cfg, str):
        if prior_cfg not in BUILTIN_PRIORS:
            raise ConfigError(
                f"Unknown prior '{prior_cfg}': model.prior must be {choices(BUILTIN_PRIORS)} or "
                "model.prior._target_=<module.Callable> for a prior of your own."
            )
        prior_class = BUILTIN_PRIORS[prior_cfg]
        takes_dim = "latent_dim" in inspect.signature(prior_class).parameters
        return prior_class(latent_dim) if takes_dim else prior_class()
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
