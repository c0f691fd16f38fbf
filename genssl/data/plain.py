"""Config values as plain Python: OmegaConf's DictConfig/ListConfig become dicts and lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def to_plain(value: Any) -> Any:
    """Recursively turn mappings into dicts and non-string sequences into lists.

    Loaders and the augmentation check values with ``isinstance`` and store them; OmegaConf
    containers would pass most checks but keep their struct flags and interpolations attached.
    """
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [to_plain(v) for v in value]
    return value
