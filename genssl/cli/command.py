"""A ``genssl-train`` command line split into Hydra's flags and the config overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Flags that print something and train nothing: the command goes to Hydra unchecked.
INSPECT = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}


@dataclass
class Command:
    """A split command line: Hydra's flags, the config overrides, and where to look for configs."""

    flags: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    config_dirs: list[Path] = field(default_factory=list)

    @property
    def multirun(self) -> bool:
        return any(f in ("-m", "--multirun") for f in self.flags)

    @property
    def inspects(self) -> bool:
        return any(f.partition("=")[0] in INSPECT for f in self.flags)
