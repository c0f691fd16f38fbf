"""User-facing errors.

Anything raised as a :class:`GensslError` is a problem with the user's input (a config value, a
missing dataset, a shape that does not fit a network). The command-line entry points print its
message as one paragraph, without a traceback, and exit with status 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class GensslError(Exception):
    """Bad user input; the message is a single paragraph naming the bad value and the valid ones."""


class ConfigError(GensslError):
    """An unknown or invalid configuration value."""


class DataError(GensslError):
    """A dataset that cannot be found or read."""


class ShapeError(GensslError):
    """Data whose shape does not fit the chosen network or model."""


def choices(options: Iterable[str]) -> str:
    """Format valid options for an error message: ``'a', 'b' or 'c'``."""
    quoted = [f"'{o}'" for o in sorted(options)]
    if len(quoted) <= 1:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
