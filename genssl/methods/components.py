"""Config → component helpers shared by the family builders: instantiated terms and Hydra errors as one line."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genssl.errors import ConfigError, choices


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


def check_keys(block: DictConfig | None, allowed: set[str] | frozenset[str], where: str, who: str) -> None:
    """A config block may hold only the keys its reader takes: an unused key is an error, never ignored."""
    unknown = sorted(set(block or {}) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]} is not used by {who}"
            + (f" (nor are {', '.join(f'{where}.{k}' for k in unknown[1:])})" if len(unknown) > 1 else "")
            + f": {where} takes {choices(allowed)}. Remove it, or choose the method or guide that uses it."
        )
