"""Check a ``genssl-train`` command completely before Hydra writes anything.

Hydra creates the run directory and writes ``.hydra/`` before the task runs, so a bad value caught
there has already touched the disk (and, resuming into a finished run, rewritten its config). Here
the command line is composed with Hydra's own compose API — the same config search path, the
user's ``--config-dir`` and ``hydra.searchpath`` included — for every job of a sweep, and each job
is checked: the schema (:mod:`genssl.cli.schema`), the method built on a small batch of its images'
shape (the prior dry-run, the terms, the guide settings), the run directory (not a file, writable,
not a finished run unless resuming or overwriting, a resumable checkpoint that fits this method).
Only then does Hydra take over.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyro
import torch
from omegaconf import DictConfig, OmegaConf

from genssl.cli import rundirs
from genssl.cli.command import Command
from genssl.cli.overrides import group_directories
from genssl.cli.schema import validate
from genssl.errors import ConfigError, GensslError

# Hydra's own flags; those that take a value consume the next argument unless written flag=value.
VALUE_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--package", "-p",
               "--experimental-rerun", "--cfg", "-c", "--info", "-i", "--shell-completion"}  # fmt: skip


def split(argv: Sequence[str]) -> Command:
    """Separate Hydra's flags from the overrides; note ``--config-dir`` folders."""
    command = Command()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            command.flags.append(arg)
            if name in VALUE_FLAGS and not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
                command.flags.append(value)
                i += 1
            if name in ("--config-dir", "-cd") and value:
                command.config_dirs.append(Path(value).resolve())
        else:
            command.overrides.append(arg)
        i += 1
    return command


def searchpath_dirs(command: Command) -> list[Path]:
    """Folders of the user's own config groups: ``--config-dir`` and ``hydra.searchpath=[file://…]``."""
    dirs = list(command.config_dirs)
    for override in command.overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+~") == "hydra.searchpath":
            for item in value.strip("[]").split(","):
                item = item.strip().strip("'\"")
                if item.startswith("file://"):
                    dirs.append(Path(item[len("file://") :]).resolve())
                elif item and "://" not in item:
                    dirs.append(Path(item).resolve())
    return dirs


def jobs(command: Command) -> list[list[str]]:
    """The override list of every job: one for a run, the expanded sweep for ``-m``."""
    if not command.multirun:
        return [command.overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(command.overrides)
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception as err:  # a sweep Hydra expands only with its config loader (glob): check the first choice
        raise ConfigError(f"Could not expand the sweep {command.overrides}: {' '.join(str(err).split())}") from None


@contextlib.contextmanager
def composing(config_dirs: Sequence[Path]) -> Iterator[None]:
    """Hydra's compose API on genssl's configs plus the user's config folders."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("genssl.configs", version_base=None):
            yield
    finally:
        GlobalHydra.instance().clear()


def compose(overrides: list[str], config_dirs: Sequence[Path]) -> DictConfig:
    """The job's config, as Hydra will compose it (a composition error becomes one paragraph)."""
    from hydra import compose as hydra_compose

    search = [f"file://{d}" for d in config_dirs]
    extra = [f"hydra.searchpath=[{','.join(search)}]"] if search and not _sets(overrides, "hydra.searchpath") else []
    try:
        return hydra_compose("config", overrides=[*overrides, *extra])
    except Exception as err:  # Hydra's composition errors span many lines and hint at stack traces
        message = _one_paragraph(err)
        if message.startswith("Unknown setting "):
            message += _did_you_mean(message.split()[2].rstrip(":"), overrides, config_dirs)
        raise ConfigError(message) from None


def _did_you_mean(key: str, overrides: list[str], config_dirs: Sequence[Path]) -> str:
    """ " Did you mean 'batch_size'?" from the keys of the misspelt key's block in the defaults."""
    from hydra import compose as hydra_compose

    parent, _, name = key.rpartition(".")
    try:
        node = hydra_compose("config", overrides=group_selection(overrides, group_directories(config_dirs)))
        for part in parent.split(".") if parent else []:
            node = node[part]
    except Exception:
        return ""
    close = difflib.get_close_matches(name, [str(k) for k in node], n=1)
    return f" Did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""


def _sets(overrides: Sequence[str], key: str) -> bool:
    return any(o.partition("=")[0].lstrip("+~") == key for o in overrides)


def _one_paragraph(err: Exception) -> str:
    text = " ".join(str(err).replace("\n", " ").split())
    for noise in ("Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",):
        text = text.replace(noise, "").strip()
    if "not in struct" in text or "Could not override" in text:
        key = text.split("'")[1] if "'" in text else text
        return (
            f"Unknown setting {key}: no config has it, so it would be silently ignored. Check its spelling, or "
            f"add a setting a method takes with +{key}=<value> ({text})."
        )
    if "while parsing" in text or "while scanning" in text or "mapping values are not allowed" in text:
        return f"A config file does not parse as YAML: {text}. Fix the file named above."
    return f"The configuration could not be composed: {text}."


def group_selection(overrides: Sequence[str], group_dirs: set[str]) -> list[str]:
    """The overrides that pick a config group option (what the schema's defaults are composed from)."""
    out = []
    for override in overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key in group_dirs or key.startswith(("hydra.", "hydra/")):
            out.append(override)
    return out


def plain(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except Exception as err:  # an interpolation that does not resolve
        raise ConfigError(f"A setting refers to one that does not exist: {' '.join(str(err).split())}.") from None


def check_job(overrides: list[str], config_dirs: Sequence[Path]) -> DictConfig:
    """Schema, method and run directory of one job; returns its config."""
    cfg = compose(overrides, config_dirs)
    defaults = compose(group_selection(overrides, group_directories(config_dirs)), config_dirs)
    validate(plain(cfg), plain(defaults))
    dry_build(cfg)
    return cfg


def dry_build(cfg: DictConfig) -> None:
    """Build the method for its images' shape without touching the RNG or the global param store, and
    run one loss evaluation on a tiny batch: every config, prior and terms error surfaces here."""
    from genssl.data import build_augment
    from genssl.methods import build_method, check_input_shape

    d = cfg.data
    channels = 3 if d.get("styled", False) else int(d.channels)
    size = int(d.image_size)
    with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope(), torch.no_grad():
        torch.manual_seed(0)
        method = build_method(cfg, channels, size).eval()
        augment = build_augment(d.augment, int(d.num_views), size)
        images = torch.randint(0, 256, (4, channels, size, size), dtype=torch.uint8)
        views, _ = augment(images, torch.Generator().manual_seed(0))
        check_input_shape(method, views)


def check_command(argv: Sequence[str]) -> Command:
    """Validate every job of ``genssl-train`` ``argv`` (already normalised) before Hydra runs; raise
    :class:`GensslError` on the first problem."""
    command = split(argv)
    if command.inspects:
        return command
    config_dirs = searchpath_dirs(command)
    for path in config_dirs:
        if not path.is_dir():
            raise ConfigError(f"--config-dir / hydra.searchpath folder {path} does not exist or is not a folder.")
    checked = []
    with composing(config_dirs):
        for job in jobs(command):
            try:
                cfg = check_job(job, config_dirs)
            except GensslError as err:
                prefix = f"In the sweep job {' '.join(job)}: " if command.multirun else ""
                raise type(err)(prefix + str(err)) from None
            checked.append((job, cfg))
    rundirs.check(command, checked)
    return command
