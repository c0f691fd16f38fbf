"""``genssl-report runs=[<dir>,...] out=<dir>``: one HTML + Markdown report over many training runs.

``runs`` takes Hydra's list syntax (``runs=[a,b]``), a single directory, a glob (``'runs=multirun/x/*'``,
quoted so the shell leaves it alone) or a Hydra multirun folder; every directory holding ``metrics.json``
at or below an entry is a run. Options: ``embedding=tsne|pca|none`` (the 2-D test-feature plots),
``progress=true|false``, ``title=<text>``.

The report is built in a temporary directory beside ``out`` and moved into place only when complete,
so a failure leaves ``out`` as it was.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from genssl.errors import ConfigError, GensslError, choices

USAGE = (
    "usage: genssl-report runs=[<run dir>,...] out=<dir> [embedding=tsne|pca|none] [progress=true|false] [title=<text>]"
)
KEYS = ("runs", "out", "embedding", "progress", "title")
PROJECTIONS = ("tsne", "pca", "none")


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
    """``out`` must be a directory or not exist yet; nothing on its path may be a file."""
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"out={out} is a file, not a directory. Pass a directory for the report (it is created "
            "if missing), e.g. out=reports/latest."
        )
    for parent in out.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"out={out} cannot be created: {parent} is a file.")
            if not os.access(parent, os.W_OK):
                raise ConfigError(f"out={out} cannot be created: {parent} is not writable.")
            break


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
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=parent))
    # mkdtemp makes a private (0700) directory; the published report should get the user's usual mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        builder = ReportBuilder(runs, staging, options.embedding, options.progress, options.title)
        blocks = builder.build()
        write_text_atomic(staging / "report.md", to_markdown(blocks))
        write_text_atomic(staging / "report.html", to_html(blocks, staging, builder.title))
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out, len(runs)


def main() -> None:
    """Console entry point; bad input prints one ``genssl: error:`` paragraph and exits with status 2."""
    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + "\n\n" + (__doc__ or "").strip())
        return
    try:
        out, count = make_report(parse_args(argv))
    except GensslError as err:
        print(f"genssl: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"Wrote {out / 'report.html'} and {out / 'report.md'} ({count} run{'s' * (count != 1)}).")


if __name__ == "__main__":
    main()
