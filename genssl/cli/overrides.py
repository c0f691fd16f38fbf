"""Command-line overrides checked before Hydra sees them.

Hydra reports an unknown config-group option with a multi-line listing and a hint about stack
traces; genssl wants one paragraph naming the valid options. It also lets users write
``model.prior=mog`` (as the docs do) for what Hydra spells ``model/prior=mog``.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Sequence
from pathlib import Path

from genssl.errors import ConfigError, choices

# Override key (as users type it) → config group directory.
GROUPS = {
    "method": "method",
    "data": "data",
    "model/prior": "model/prior",
    "trainer": "trainer",
    "logger": "logger",
    "eval": "eval",
    "data/augment": "data/augment",
}
ALIASES = {"model.prior": "model/prior", "data.augment": "data/augment"}


def group_options(group: str, config_dirs: Sequence[Path] = ()) -> list[str]:
    """Names of the YAML files in a config group: genssl's, and the user's in ``config_dirs`` (the
    folders of ``--config-dir`` and ``hydra.searchpath``)."""
    roots = [importlib.resources.files("genssl.configs").joinpath(*group.split("/"))]
    roots += [Path(d).joinpath(*group.split("/")) for d in config_dirs]
    names = set()
    for root in roots:
        if root.is_dir():
            names.update(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
    return sorted(names)


def group_directories(config_dirs: Sequence[Path] = ()) -> set[str]:
    """Every config group (``method``, ``data/augment``, …), genssl's and the user's own."""
    groups = set(GROUPS)
    for root in (Path(d) for d in config_dirs):
        if root.is_dir():
            for folder in root.rglob("*"):
                if folder.is_dir() and any(p.suffix == ".yaml" for p in folder.iterdir()):
                    groups.add(str(folder.relative_to(root)).replace(os.sep, "/"))
    return groups


def normalise_overrides(argv: Sequence[str], config_dirs: Sequence[Path] = ()) -> list[str]:
    """Rewrite group aliases and reject unknown group options with a one-paragraph error.

    ``model.prior._target_=...`` without a prior group selects the empty ``custom`` prior first, so
    the default prior's keyword arguments do not leak into the user's callable.
    """
    keys = [arg.partition("=")[0].lstrip("+~") for arg in argv]
    if "model.prior._target_" in keys and not {"model/prior", "model.prior"} & set(keys):
        # Right before the _target_ override, after any flags (-m, --config-dir …) that argparse wants first.
        at = keys.index("model.prior._target_")
        argv = [*argv[:at], "model/prior=custom", *argv[at:]]
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        prefix = "+" if key.startswith("+") else ""
        bare = key.lstrip("+~")
        if sep and bare in ALIASES and value and not value.startswith("{"):
            bare = ALIASES[bare]
            key = prefix + bare
        if sep and bare in GROUPS:
            valid = group_options(GROUPS[bare], config_dirs)
            for option in _sweep_values(value):
                if option not in valid:
                    raise ConfigError(
                        f"Unknown {bare.replace('/', '.')} '{option}' (from '{arg}'): valid options "
                        f"are {choices(valid)}." + _hint(bare)
                    )
        out.append(f"{key}{sep}{value}" if sep else arg)
    return out


def _sweep_values(value: str) -> list[str]:
    """Options named by an override value: ``a`` or a sweep ``a,b``; sweeps like range() are not checked."""
    if "(" in value or "[" in value or "$" in value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _hint(group: str) -> str:
    if group == "model/prior":
        return " A prior of your own is given as model.prior._target_=<module.Callable> with its kwargs."
    return ""
