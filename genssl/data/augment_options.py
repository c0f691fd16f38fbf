"""Validation of the augmentation options, so a bad config fails before training starts.

Each dict-valued option is completed with defaults for the keys it leaves out; ``None`` (or a
probability of 0) disables the operation. Every error names the option, the bad value and what is
allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from genssl.errors import ConfigError, choices

# Defaults for the keys a dict option may leave out (torchvision's where it has them).
DICT_DEFAULTS: dict[str, dict[str, Any]] = {
    "crop": {"scale": (0.08, 1.0), "ratio": (3.0 / 4.0, 4.0 / 3.0)},
    "rotation": {"p": 1.0, "degrees": 0.0},
    "color_jitter": {"p": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0},
    "blur": {"p": 1.0, "sigma": (0.1, 2.0), "kernel_size": None},
}
PROBABILITIES = ("hflip", "vflip", "grayscale")
OPTIONS: tuple[str, ...] = ("crop", "hflip", "vflip", "rotation", "color_jitter", "grayscale", "blur")


def probability(option: str, value: Any) -> float:
    """A probability in [0, 1]."""
    p = number(option, value)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"augment.{option}={value} is not a probability; use a number in [0, 1].")
    return p


def number(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"augment.{option}={value!r} must be a finite number.")
    return float(value)


def interval(option: str, value: Any, low: float, high: float) -> tuple[float, float]:
    """A pair ``[a, b]`` with ``low < a <= b <= high``."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"augment.{option}={value!r} must be a pair [min, max].")
    a, b = number(option, value[0]), number(option, value[1])
    if not low < a <= b <= high:
        raise ConfigError(f"augment.{option}={[a, b]} is out of range: it needs {low} < min <= max <= {high}.")
    return a, b


def dict_option(option: str, value: Any) -> dict[str, Any] | None:
    """Complete and check one dict option; None when it is disabled."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"augment.{option}={value!r} must be a mapping with keys "
            f"{choices(DICT_DEFAULTS[option])}, or null to disable it."
        )
    defaults = DICT_DEFAULTS[option]
    unknown = sorted(set(value) - set(defaults))
    if unknown:
        raise ConfigError(
            f"augment.{option} has unknown key(s) {choices(unknown)}; valid keys are {choices(defaults)}."
        )
    merged = {**defaults, **value}
    checked = _CHECKS[option](merged)
    if "p" in checked:
        checked["p"] = probability(f"{option}.p", checked["p"])
        if checked["p"] == 0.0:
            return None
    return checked


def _crop(cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "scale": interval("crop.scale", cfg["scale"], 0.0, 1.0),
        "ratio": interval("crop.ratio", cfg["ratio"], 0.0, math.inf),
    }


def _rotation(cfg: dict[str, Any]) -> dict[str, Any]:
    degrees = number("rotation.degrees", cfg["degrees"])
    if not 0.0 <= degrees <= 180.0:
        raise ConfigError(f"augment.rotation.degrees={degrees} must be in [0, 180].")
    # No angle to draw means no rotation at all.
    return {"p": cfg["p"] if degrees > 0 else 0.0, "degrees": degrees}


def _color_jitter(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"p": cfg["p"]}
    for key in ("brightness", "contrast", "saturation"):
        out[key] = number(f"color_jitter.{key}", cfg[key])
        if out[key] < 0:
            raise ConfigError(f"augment.color_jitter.{key}={out[key]} must be >= 0 (0 disables it).")
    out["hue"] = number("color_jitter.hue", cfg["hue"])
    if not 0.0 <= out["hue"] <= 0.5:
        raise ConfigError(f"augment.color_jitter.hue={out['hue']} must be in [0, 0.5].")
    if not any(out[k] > 0 for k in ("brightness", "contrast", "saturation", "hue")):
        out["p"] = 0.0
    return out


def _blur(cfg: dict[str, Any]) -> dict[str, Any]:
    kernel = cfg["kernel_size"]
    if kernel is not None and (
        isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 3 or kernel % 2 == 0
    ):
        raise ConfigError(
            f"augment.blur.kernel_size={kernel!r} must be an odd integer >= 3, or null to derive "
            "it from the largest sigma."
        )
    return {"p": cfg["p"], "sigma": interval("blur.sigma", cfg["sigma"], 0.0, math.inf), "kernel_size": kernel}


_CHECKS = {"crop": _crop, "rotation": _rotation, "color_jitter": _color_jitter, "blur": _blur}
