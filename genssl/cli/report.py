"""``genssl-report runs=[<dir>,...] out=<dir>``: one HTML + Markdown report over many training runs.

``runs`` takes Hydra's list syntax (``runs=[a,b]``), a single directory, a glob (``'runs=multirun/x/*'``,
quoted so the shell leaves it alone) or a Hydra multirun folder; every directory holding ``metrics.json``
at or below an entry is a run. Options: ``embedding=tsne|pca|none`` (the 2-D test-feature plots),
``progress=true|false``, ``title=<text>``.

The report is built in a temporary directory beside ``out`` (``.<out name>.staging-*``, locked with
``flock`` while in use) and moved into place only when complete, so a failure leaves ``out`` as it
was; staging folders that a killed report left behind (their lock free) are removed at the start of
the next report into the same ``out``. A SIGTERM stops the report like Ctrl-C, removing its folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genssl.errors import ConfigError, GensslError, choices

try:
    import fcntl
except ImportError:  # not POSIX: stale staging folders are recognised by their age alone
    fcntl = None  # type: ignore[assignment]

USAGE = (
    "usage: genssl-report runs=[<run dir>,...] out=<dir> [embedding=tsne|pca|none] [progress=true|false] [title=<text>]"
)
KEYS = ("runs", "out", "embedding", "progress", "title")
PROJECTIONS = ("tsne", "pca", "none")
STAGING_INFIX = ".staging-"  # the staging folder is .<out name>.staging-<random>, its lock that + .lock
# A staging folder whose lock is free is a killed report's leftover once it is LOCK_GRACE_S old (a
# live report locks its folder microseconds after creating it); where locks cannot be taken, once it
# is UNLOCKED_STALE_S old.
LOCK_GRACE_S = 2.0
UNLOCKED_STALE_S = 600.0


@dataclass
class Options:
    """Parsed command line."""

    runs: list[str] = field(default_factory=list)
    out: Path | None = None
    embedding: str = "tsne"
    progress: bool = True
    title: str | None = None


def split_list(value: str) -> list[str]:
    """Hydra-style list value → items: ``[a,b]``, ``a,b`` or ``a``; quotes stripped.

    Commas inside brackets or braces belong to a glob (``run[0,1]``), so only top-level commas split.
    """
    value = value.strip()
    if value.startswith("[") and value.endswith("]") and _balanced(value[1:-1]):
        value = value[1:-1]
    items, depth, quote, current = [], 0, "", ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += char
    items.append(current)
    cleaned = []
    for item in (i.strip() for i in items):
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            item = item[1:-1]
        if item:
            cleaned.append(item)
    return cleaned


def _balanced(text: str) -> bool:
    # "[a,b]" is a list, but "[ab]c" is a glob character class, not brackets around the whole value.
    depth = 0
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if depth < 0:
            return False
    return depth == 0


def parse_args(argv: list[str]) -> Options:
    """``key=value`` arguments → :class:`Options`; raises :class:`ConfigError` naming the bad argument."""
    options = Options()
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+")  # Hydra habit: "+runs=..." means the same here
        if not sep:
            raise ConfigError(
                f"Unexpected argument '{arg}': genssl-report takes key=value arguments (quote a list "
                f"that holds spaces: 'runs=[a, b]'). {USAGE}"
            )
        if key not in KEYS:
            raise ConfigError(f"Unknown argument '{key}' in '{arg}': genssl-report takes {choices(KEYS)}. {USAGE}")
        if key == "runs":
            options.runs += split_list(value)
        elif key == "out":
            if not value.strip():
                raise ConfigError(f"out= is empty: name the directory to write the report into. {USAGE}")
            options.out = Path(value).expanduser()
        elif key == "embedding":
            if value not in PROJECTIONS:
                raise ConfigError(f"Unknown embedding '{value}': embedding must be {choices(PROJECTIONS)}.")
            options.embedding = value
        elif key == "progress":
            if value.lower() not in ("true", "false"):
                raise ConfigError(f"progress='{value}' is not a boolean: use progress=true or progress=false.")
            options.progress = value.lower() == "true"
        else:
            options.title = value
    if not options.runs:
        raise ConfigError(f"No runs given: pass runs=[<run dir>,...] (globs and Hydra multirun folders work). {USAGE}")
    if options.out is None:
        raise ConfigError(f"No output directory given: pass out=<dir> (created if missing). {USAGE}")
    return options


def check_out(out: Path) -> None:
    """``out`` must be a writable directory or not exist yet; nothing on its path may be a file."""
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"out={out} is a file, not a directory. Pass a directory for the report (it is created "
            "if missing), e.g. out=reports/latest."
        )
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"out={out} is not writable: the report cannot replace the files in it.")
    for parent in out.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"out={out} cannot be created: {parent} is a file.")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"out={out} cannot be created: {parent} is not writable.")
            break


def staging_prefix(out: Path) -> str:
    """The name prefix of ``out``'s staging folders."""
    return f".{out.name}{STAGING_INFIX}"


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the staging folders that earlier reports into ``out`` left when they were killed.

    A report holds an ``flock`` on its staging folder while it builds, so a folder whose lock is free
    (and that is older than :data:`LOCK_GRACE_S`, the moment between creating and locking it) is a
    leftover; one still locked belongs to a report being built now and is left alone. Where locks do
    not work (no ``fcntl``, some network file systems) a folder counts as a leftover once it is
    :data:`UNLOCKED_STALE_S` old. Returns what was removed.
    """
    parent = out.resolve().parent
    prefix = staging_prefix(out)
    try:
        entries = sorted(p for p in parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []  # no parent yet, or it cannot be listed: nothing of ours is there
    removed = []
    for entry in entries:
        try:
            if entry.is_symlink() or not entry.is_dir():
                continue
            age = time.time() - entry.stat().st_mtime
        except OSError:
            continue
        held = _lock_state(entry)
        if (held is False and age >= LOCK_GRACE_S) or (held is None and age > UNLOCKED_STALE_S):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _try_lock(folder: Path) -> tuple[int | None, bool | None]:
    """Try an exclusive non-blocking ``flock`` on ``folder``: ``(descriptor holding it, False)`` when taken,
    ``(None, True)`` when another open file holds it, ``(None, None)`` where locks do not work."""
    if fcntl is None:
        return None, None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return None, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        return None, (True if isinstance(err, BlockingIOError) else None)
    return fd, False


def _lock(folder: Path) -> int | None:
    """An open descriptor holding an exclusive ``flock`` on ``folder``; None where it cannot be had."""
    return _try_lock(folder)[0]


def _lock_state(folder: Path) -> bool | None:
    """True when another open file holds ``folder``'s lock, False when it is free, None when unknown."""
    fd, held = _try_lock(folder)
    if fd is not None:
        os.close(fd)  # also releases the lock just taken
    return held


def publish(staging: Path, out: Path) -> None:
    """Move a finished report into ``out``: one rename when ``out`` is new, else file by file, pages last."""
    if not out.exists():
        os.replace(staging, out)
        return
    names = sorted(p.name for p in staging.iterdir())
    # PNGs first and report.html last: whoever opens the report mid-move sees the old or the new one whole.
    names.sort(key=lambda n: (n.endswith(".md"), n.endswith(".html")))
    for name in names:
        os.replace(staging / name, out / name)
    staging.rmdir()


def make_report(options: Options) -> tuple[Path, int]:
    """Find and load the runs, build the report in a staging directory, move it to ``options.out``."""
    from genssl.report.build import ReportBuilder
    from genssl.report.collect import find_run_dirs, load_runs
    from genssl.report.render import to_html, to_markdown, write_text_atomic

    assert options.out is not None
    out = options.out
    check_out(out)
    runs = load_runs(find_run_dirs(options.runs))  # every bad input is reported before anything is written
    remove_stale_staging(out)
    parent = out.resolve().parent
    staging: Path | None = None
    lock: int | None = None
    moving = False
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=staging_prefix(out), dir=parent))
        lock = _lock(staging)  # tells a concurrent report's clean-up that this folder is in use
        # mkdtemp makes a private (0700) directory; the published report should get the user's usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        builder = ReportBuilder(runs, staging, options.embedding, options.progress, options.title)
        blocks = builder.build()
        write_text_atomic(staging / "report.md", to_markdown(blocks))
        write_text_atomic(staging / "report.html", to_html(blocks, staging, builder.title))
        moving = True
        publish(staging, out)
    except OSError as err:
        raise ConfigError(_write_error(err, out, staging, moving)) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            os.close(lock)
    return out, len(runs)


def _write_error(err: OSError, out: Path, staging: Path | None, moving: bool) -> str:
    """One paragraph for a report that could not be written: the path, the reason, what to do."""
    where = Path(err.filename) if err.filename else None
    if where is not None and staging is not None:
        try:  # name the file as it would have been in out, not in the deleted staging folder
            where = out / Path(os.path.abspath(where)).relative_to(staging.resolve())
        except ValueError:
            pass
    reason = err.strerror or str(err)
    advice = {
        errno.ENOSPC: "the disk is full: free some space",
        errno.EDQUOT: "the disk quota is used up: free some space",
        errno.EACCES: "permission denied: choose a folder you can write to",
        errno.EPERM: "permission denied: choose a folder you can write to",
        errno.EROFS: "the file system is read-only: choose another out=",
    }.get(err.errno, "fix that")
    at = f" at {where}" if where is not None else ""
    state = (
        f"The move into {out} stopped part-way, so it may hold files of both reports"
        if moving
        else f"Nothing was changed in {out} (an earlier report there is intact)"
    )
    return f"The report could not be written to out={out}: {reason}{at}. {state}; {advice} and run genssl-report again."


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds make_report, whose finally removes the staging folder


def main() -> None:
    """Console entry point; bad input prints one ``genssl: error:`` paragraph and exits with status 2."""
    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + "\n\n" + (__doc__ or "").strip())
        return
    try:  # only the main thread may set handlers; elsewhere SIGTERM keeps its default
        previous = signal.signal(signal.SIGTERM, _terminate)
        installed = True
    except (AttributeError, ValueError):
        previous, installed = None, False
    try:
        out, count = make_report(parse_args(argv))
    except GensslError as err:
        print(f"genssl: error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        if installed:  # an in-process caller (the tests) gets its own handler back
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    print(f"Wrote {out / 'report.html'} and {out / 'report.md'} ({count} run{'s' * (count != 1)}).")


if __name__ == "__main__":
    main()
