"""Files of a run directory written so that a crash never leaves a half-written one.

Checkpoints are weights-only pickles (``torch.load(..., weights_only=True)``: tensors and plain
containers, no code); JSON files are written whole, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and an atomic rename.

    A crash mid-write leaves the previous checkpoint intact, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, no pickled code."""
    return torch.load(path, map_location=map_location, weights_only=True)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON through a temporary file renamed over ``path``."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


# The checkpoint layout this genssl writes; a newer one is refused with a clear message.
CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = ("method", "optimizer", "epoch", "step", "config")


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """:func:`load_checkpoint` with one-paragraph errors for a checkpoint that is missing, truncated, not a
    genssl checkpoint, or from a newer genssl."""
    from genssl.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"There is no checkpoint at {path}.")
    try:
        state = load_checkpoint(path, map_location=map_location)
    except Exception as err:  # truncated zip, random bytes, a pickle with code: torch says which, at length
        reason = " ".join(str(err).split())[:300]
        raise DataError(
            f"The checkpoint {path} cannot be read ({type(err).__name__}: {reason}). It is truncated, damaged or "
            "not a genssl checkpoint; genssl loads weights only (weights_only=True). Restore it from a copy, or "
            "train afresh with trainer.overwrite=true."
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        found = sorted(state)[:8] if isinstance(state, dict) else type(state).__name__
        raise DataError(
            f"{path} is not a genssl checkpoint: it lacks {', '.join(missing)} (found {found}). genssl-train "
            "writes checkpoints/last.pt with the method's weights, optimiser and progress."
        )
    version = state.get("format", 0)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise DataError(
            f"The checkpoint {path} has format {version!r}, newer than this genssl reads ({CHECKPOINT_FORMAT}): "
            "upgrade genssl to load it."
        )
    return state


def checkpoint_config(state: dict[str, Any]) -> dict[str, Any]:
    """The resolved config a checkpoint was written with (a plain dict)."""
    import yaml

    try:
        loaded = yaml.safe_load(state["config"])
    except Exception as err:
        raise ValueError(f"the checkpoint's config does not parse: {err}") from None
    return loaded if isinstance(loaded, dict) else {}


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files an interrupted atomic write left in ``folder`` (``.tmp-*.pt``, ``*.tmp``)."""
    removed = []
    if folder.is_dir():
        for stale in [*folder.glob(".tmp-*.pt"), *folder.glob("*.tmp"), *folder.glob("*.tmp.npz")]:
            with contextlib.suppress(OSError):
                stale.unlink()
                removed.append(stale)
    return removed
