"""``genssl-report``: one self-contained HTML and Markdown report comparing many training runs.

``collect`` finds run directories and loads them, ``aggregate`` groups them by (data, method) and
summarises seeds, ``figures`` draws the plots, ``render`` writes Markdown and HTML, ``build`` puts the
pieces in order and ``cli`` is the command line.
"""

from __future__ import annotations

from genssl.report.collect import Run, find_run_dirs, load_run, load_runs

__all__ = ["Run", "find_run_dirs", "load_run", "load_runs"]
