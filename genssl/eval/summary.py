"""Print a table of finished runs: ``python -m genssl.eval.summary <run dir> [<run dir> ...]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("run", "method", "data", "epochs", "linear", "untrained", "knn", "style_mean", "rank_me")


def rows(run_dirs: list[Path]) -> list[dict[str, str]]:
    table = []
    for run_dir in run_dirs:
        path = run_dir / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        base = m.get("baseline", {}).get("content", {})
        table.append(
            {
                "run": str(run_dir),
                "method": m["method"],
                "data": m["data"],
                "epochs": str(m.get("train", {}).get("epochs", "?")),
                "linear": f"{m['content']['linear']:.4f}",
                "untrained": _fmt(base.get("linear")),
                "knn": f"{m['content']['knn']:.4f}",
                "style_mean": _fmt(m.get("style_mean")),
                "rank_me": f"{m.get('rank_me', float('nan')):.1f}",
            }
        )
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(table: list[dict[str, str]]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in table]
    return "\n".join(lines)


def main() -> None:
    table = rows([Path(a) for a in sys.argv[1:]])
    if not table:
        print("No metrics.json found in " + ", ".join(sys.argv[1:]), file=sys.stderr)
        sys.exit(1)
    print(format_table(table))


if __name__ == "__main__":
    main()
