"""The README's commands, as written, from a user's own folder.

Every ``genssl-train`` command in a ``bash`` block of the README (directly, after ``torchrun ...
$(which genssl-train)`` or under a Slurm launcher) is checked the way ``genssl-train`` checks a command
before Hydra writes anything: composed with the user's working directory on the import path (where
the README's ``mypriors.py`` is written), validated against the schema, its method built on a small
batch. The slow tests (``make test-all``) run them for real: the CPU torchrun command as written, and
every other command that this machine can run (CPU, a dataset that is here, no Slurm) with
budget-shrinking overrides appended where the command does not set the key itself.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

README = (REPO / "README.md").read_text()
TRAIN = "genssl-train"


def bash_commands() -> list[str]:
    """Every command line of the README's bash blocks (continuations joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def train_arguments(command: str) -> list[str] | None:
    """The genssl-train arguments of a command (after torchrun's ``$(which genssl-train)``), else None."""
    command = command.replace("$(which genssl-train)", TRAIN)
    words = shlex.split(command)
    if TRAIN not in words:
        return None
    return words[words.index(TRAIN) + 1 :]


def user_module() -> str:
    """The README's own prior module (the python block that starts with ``# mypriors.py``)."""
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if b.startswith("# mypriors.py")]
    return block


TRAIN_COMMANDS = [c for c in bash_commands() if train_arguments(c) is not None]


def test_the_readme_has_the_commands_it_promises():
    assert len(TRAIN_COMMANDS) >= 12
    assert any(c.startswith("torchrun") for c in TRAIN_COMMANDS)
    assert any("hydra/launcher=slurm" in c for c in TRAIN_COMMANDS)
    assert any(c.startswith("make run") for c in bash_commands())


@pytest.mark.parametrize("command", TRAIN_COMMANDS)
def test_a_readme_training_command_passes_genssl_train_checks(command, tmp_path, monkeypatch):
    if "hydra/launcher=slurm" in command:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from genssl.cli.overrides import normalise_overrides
    from genssl.cli.prevalidate import check_command, searchpath_dirs, split
    from genssl.cli.train import use_working_directory

    (tmp_path / "mypriors.py").write_text(user_module())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    use_working_directory()
    parsed = split(train_arguments(command))
    overrides = normalise_overrides(parsed.overrides, searchpath_dirs(parsed))
    check_command([*parsed.flags, *overrides])


@pytest.mark.slow
def test_the_readme_cpu_torchrun_command_runs(tmp_path):
    (command,) = [c for c in TRAIN_COMMANDS if c.startswith("torchrun") and "data=digits" in c]
    words = shlex.split(command.replace("$(which genssl-train)", TRAIN))
    assert words[0] == "torchrun"
    args = [*words[1:], "trainer.progress=false"]
    result = run_cli("torchrun", *args[: args.index(TRAIN)], str(Path(sys.executable).parent / TRAIN),
                     *args[args.index(TRAIN) + 1 :], cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = tmp_path.glob("outputs/simclr/digits/*/metrics.json")
    assert "baseline" in metrics.read_text()


# Appended (unless the command sets the key) so that a README command runs in seconds.
SHRINK = {
    "trainer.max_steps": "2",
    "data.train_subset": "512",
    "data.test_subset": "256",
    "eval.enabled": "false",
    "trainer.progress": "false",
    "logger": "none",
}
NOT_HERE = ("cuda", "hydra/launcher=slurm", "data=cifar10", "data=celeba", "data=image_folder")


def runnable_here(command: str) -> bool:
    return not command.startswith("torchrun") and not any(word in command for word in NOT_HERE)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in TRAIN_COMMANDS if runnable_here(c)])
def test_a_readme_training_command_runs(command, tmp_path):
    (tmp_path / "mypriors.py").write_text(user_module())
    args = train_arguments(command)
    given = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a}
    args += [f"{key}={value}" for key, value in SHRINK.items() if key not in given]
    result = run_cli(TRAIN, *args, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.glob("**/checkpoints/last.pt")), "no run wrote a checkpoint"
