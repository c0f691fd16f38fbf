"""Find training run directories and load what each holds into plain dataclasses.

A run directory is any directory that holds ``metrics.json`` (written by ``genssl-train`` /
``genssl-eval``). Everything else in it is optional: ``metrics.jsonl`` (training curve),
``.hydra/config.yaml``, ``eval/embedding.npz`` and the generative ``eval/*.png`` images. Only a missing,
unreadable or corrupt ``metrics.json``, or one with a value that breaks the metrics contract (see
:func:`check_metrics`), is an error; a damaged optional file is skipped with a warning, so one bad run
never stops a report over a sweep.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genssl.errors import ConfigError, DataError

CONTENT_KEYS = ("linear", "knn", "mlp", "linear_10", "linear_100", "gmm_acc", "nmi", "ari")
IMAGE_KINDS = ("reconstructions", "samples", "traversals")
# Directories inside a run that never hold another run; skipping them keeps the walk over a big
# multirun folder fast (checkpoints and wandb folders can be large).
_NOT_RUNS = {"checkpoints", "eval", "wandb", ".hydra", "__pycache__"}
_GLOB_CHARS = set("*?[")


@dataclass
class Embedding:
    """Test-set features of one run, as written to ``eval/embedding.npz``."""

    features: np.ndarray  # [N, D] float32
    labels: np.ndarray  # [N] int64
    class_names: list[str]
    factor_names: list[str]
    factors: np.ndarray  # [N, F] float32, F may be 0


@dataclass
class Run:
    """One training run: its identity, its metrics and whatever optional artefacts it left."""

    path: Path
    method: str
    data: str
    seed: int | None
    content: dict[str, float]
    style: dict[str, dict[str, Any]]
    style_mean: float | None
    rank_me: float | None
    extra: dict[str, float]  # dci_*, mig, elbo when present
    baseline: dict[str, Any] | None
    train: dict[str, Any]
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    curve_kind: str = "step"
    images: dict[str, Path] = field(default_factory=dict)
    embedding_path: Path | None = None
    overrides: list[str] = field(default_factory=list)  # the command line's, from .hydra/overrides.yaml
    variant: str = ""  # the overrides that set this run apart from other runs of its method (see load_runs)

    @property
    def label(self) -> str:
        return f"{self.method} (seed {self.seed})" if self.seed is not None else self.method


def warn(message: str) -> None:
    """A non-fatal problem with an optional file: tell the user and carry on."""
    print(f"genssl-report: warning: {message}", file=sys.stderr)


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None for missing / null / NaN / non-numeric entries."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def find_run_dirs(entries: list[str]) -> list[Path]:
    """Expand ``runs=`` entries (directories, globs, multirun folders) into run directories, in order.

    An explicit directory must be a run or hold runs below it; a glob may match files and run-less
    directories (a multirun folder's ``multirun.yaml``, a job that crashed) which are skipped, but it
    must yield at least one run.
    """
    if not entries:
        raise ConfigError("No runs given: pass runs=[<run dir>,...] (a glob or a Hydra multirun folder works too).")
    found: list[Path] = []
    for entry in entries:
        if _GLOB_CHARS & set(entry):
            matches = sorted(glob.glob(os.path.expanduser(entry), recursive=True))
            runs = [r for m in matches if Path(m).is_dir() for r in _runs_below(Path(m))]
            if not runs:
                raise ConfigError(
                    f"runs entry '{entry}' matched {len(matches)} path(s) but no run directory "
                    "(a directory holding metrics.json). Check the pattern, or quote it so the "
                    "shell does not expand it first."
                )
            skipped = [m for m in matches if Path(m).is_dir() and not _runs_below(Path(m))]
            for path in skipped:
                warn(f"skipping {path}: it holds no metrics.json (an unfinished run?).")
        else:
            path = Path(entry).expanduser()
            if not path.exists():
                raise ConfigError(
                    f"runs entry '{entry}' does not exist. Pass directories written by genssl-train "
                    "(each holds metrics.json), a glob, or a Hydra multirun folder."
                )
            if not path.is_dir():
                raise ConfigError(
                    f"runs entry '{entry}' is a file, not a run directory. Pass the directory that "
                    "holds metrics.json, not the file itself."
                )
            runs = _runs_below(path)
            if not runs:
                raise ConfigError(
                    f"runs entry '{entry}' holds no metrics.json, neither itself nor in any "
                    "subdirectory: it is not a finished genssl-train run (evaluate it with "
                    "genssl-eval run_dir=<dir> first) nor a folder of runs."
                )
        found.extend(runs)
    unique: dict[Path, None] = {}
    for run in found:
        unique.setdefault(run.resolve(), None)
    return list(unique)


def _runs_below(root: Path) -> list[Path]:
    """``root`` if it is a run, else every run below it (not descending into a run once found)."""
    if (root / "metrics.json").is_file():
        return [root]
    runs = []
    for current, dirs, files in os.walk(root):
        if "metrics.json" in files and Path(current) != root:
            runs.append(Path(current))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if d not in _NOT_RUNS and not d.startswith("."))
    return sorted(runs, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    # Hydra numbers multirun jobs 0, 1, ..., 10: sort them as numbers, not strings.
    return [int(part) if part.isdigit() else part for part in path.parts]


def load_run(path: Path) -> Run:
    """Read one run directory; raises :class:`DataError` when its ``metrics.json`` is unusable."""
    metrics_path = path / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"Cannot read {metrics_path}: {err}.") from None
    except json.JSONDecodeError as err:
        raise DataError(
            f"{metrics_path} is not valid JSON ({err}). Re-run genssl-eval run_dir={path} to "
            "rewrite it, or leave that run out of runs=[...]."
        ) from None
    if not isinstance(metrics, dict):
        raise DataError(
            f"{metrics_path} holds a JSON {type(metrics).__name__}, not the object genssl-eval "
            'writes ({"method": ..., "data": ..., "content": {...}}).'
        )
    check_metrics(metrics, metrics_path)
    config = _load_config(path)
    method = metrics.get("method") or config.get("method", {}).get("name")
    data = metrics.get("data") or config.get("data", {}).get("name")
    if not method or not data:
        raise DataError(
            f"{metrics_path} names no method or data (keys 'method' and 'data'), and there is no "
            f"{path / '.hydra' / 'config.yaml'} to read them from."
        )
    seed = metrics.get("seed", config.get("seed"))
    blocks = _metric_blocks(metrics)
    run = Run(
        path=path,
        method=str(method),
        data=str(data),
        seed=int(seed) if number(seed) is not None else None,
        baseline=_metric_blocks(metrics["baseline"]) if isinstance(metrics.get("baseline"), dict) else None,
        train=metrics.get("train") if isinstance(metrics.get("train"), dict) else {},
        **blocks,
    )
    run.curve, run.curve_kind = _load_curve(path / "metrics.jsonl")
    run.images = {
        kind: path / "eval" / f"{kind}.png" for kind in IMAGE_KINDS if (path / "eval" / f"{kind}.png").is_file()
    }
    if (path / "eval" / "embedding.npz").is_file():
        run.embedding_path = path / "eval" / "embedding.npz"
    run.overrides = _load_overrides(path)
    return run


# --- the metrics.json contract --------------------------------------------------------------------
# Every key is optional (a run evaluated with eval.style.enabled=false has no style block, one with the
# evaluation off has only method, data, seed and train), but a key that is there must have its type
# and range: a report over a value of the wrong type would be wrong without saying so. NaN, which
# Python's json writes for a score that could not be computed, counts as null.
_SCORE = (0.0, 1.0)  # accuracies, NMI, DCI, MIG
_CONTENT_RANGES: dict[str, tuple[float, float]] = {
    "linear": _SCORE,
    "knn": _SCORE,
    "mlp": _SCORE,
    "linear_10": _SCORE,
    "linear_100": _SCORE,
    "gmm_acc": _SCORE,
    "nmi": _SCORE,
    "ari": (-1.0, 1.0),
}
_STYLE_RANGES = {"r2": (-math.inf, 1.0), "acc": _SCORE}  # R² has no lower bound
_TRAIN_COUNTS = ("epochs", "steps")
_TRAIN_NUMBERS = ("seconds", "wall_seconds", "samples_per_s")
_DCI_KEYS = ("disentanglement", "completeness", "informativeness")
_TOLERANCE = 1e-6  # float round-off at the ends of a range


class _BadValue(Exception):
    """One key of metrics.json breaks the contract: ``key`` (dotted), its ``value``, what it ``expected``."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        super().__init__(key)
        self.key, self.value, self.expected = key, value, expected


def check_metrics(metrics: dict[str, Any], metrics_path: Path) -> None:
    """Raise :class:`DataError` naming the file, the key and the value of the first entry of a run's
    ``metrics.json`` that breaks the contract (see :func:`_check_block` for the metric blocks)."""
    try:
        for key in ("method", "data"):
            if metrics.get(key) is not None and not isinstance(metrics[key], str):
                raise _BadValue(key, metrics[key], "a name (a string) or null")
        seed = metrics.get("seed")
        if seed is not None and not _is_integer(seed):
            raise _BadValue("seed", seed, "an integer or null")
        _check_block(metrics, "")
        _check_train(metrics.get("train"))
        baseline = metrics.get("baseline")
        if baseline is not None:
            if not isinstance(baseline, dict):
                raise _BadValue("baseline", baseline, "an object with the run's own metric keys (content, ...) or null")
            _check_block(baseline, "baseline.")
    except _BadValue as bad:
        text = json.dumps(bad.value) if _jsonable(bad.value) else repr(bad.value)
        text = text if len(text) <= 80 else text[:77] + "..."
        raise DataError(
            f"{metrics_path} has '{bad.key}': {text} ({_kind(bad.value)}), but '{bad.key}' must be "
            f"{bad.expected}. Re-run genssl-eval run_dir={metrics_path.parent} to rewrite the file, or leave "
            "that run out of runs=[...]."
        ) from None


def _check_block(block: dict[str, Any], prefix: str) -> None:
    """The metric keys of a run (``prefix`` "") or of its baseline ("baseline.")."""
    content = _mapping(block, "content", prefix, "an object of content scores")
    for key, value in content.items():
        low, high = _CONTENT_RANGES.get(key, _SCORE if key.startswith("linear_") else (-math.inf, math.inf))
        _number(value, f"{prefix}content.{key}", low, high)
    style = _mapping(block, "style", prefix, "an object of style factors, each {metric, linear, mlp}")
    for factor, probe in style.items():
        where = f"{prefix}style.{factor}"
        if not isinstance(probe, dict):
            raise _BadValue(where, probe, 'an object {"metric": "r2" or "acc", "linear": <score>, "mlp": <score>}')
        metric = probe.get("metric")
        if metric not in _STYLE_RANGES:
            raise _BadValue(f"{where}.metric", metric, "'r2' (a continuous factor) or 'acc' (a discrete one)")
        low, high = _STYLE_RANGES[metric]
        for key in ("linear", "mlp"):
            _number(probe.get(key), f"{where}.{key}", low, high)
        if probe.get("skipped") is not None and not isinstance(probe["skipped"], str):
            raise _BadValue(f"{where}.skipped", probe["skipped"], "the reason the factor was skipped (a string)")
    _number(block.get("style_mean"), f"{prefix}style_mean", -math.inf, 1.0)
    _number(block.get("rank_me"), f"{prefix}rank_me", 0.0, math.inf)
    dci = _mapping(block, "dci", prefix, "an object {disentanglement, completeness, informativeness, ...}")
    for key in _DCI_KEYS:
        _number(dci.get(key), f"{prefix}dci.{key}", *_SCORE)
    _number(block.get("mig"), f"{prefix}mig", *_SCORE)
    _number(block.get("elbo"), f"{prefix}elbo", -math.inf, math.inf)


def _check_train(train: Any) -> None:
    if train is None:
        return
    if not isinstance(train, dict):
        raise _BadValue("train", train, "an object {epochs, steps, seconds, wall_seconds, samples_per_s} or null")
    for key in _TRAIN_COUNTS:
        value = train.get(key)
        if value is not None and not (_is_integer(value) and value >= 0):
            raise _BadValue(f"train.{key}", value, "a non-negative integer or null")
    for key in _TRAIN_NUMBERS:
        _number(train.get(key), f"train.{key}", 0.0, math.inf)


def _mapping(block: dict[str, Any], key: str, prefix: str, expected: str) -> dict[str, Any]:
    value = block.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _BadValue(prefix + key, value, f"{expected} or null")
    return value


def _number(value: Any, key: str, low: float, high: float) -> None:
    """``value`` must be null, NaN or a number from ``low`` to ``high``."""
    if value is None:
        return
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        if math.isnan(value) or low - _TOLERANCE <= value <= high + _TOLERANCE:
            return
    raise _BadValue(key, value, _range_text(low, high))


def _range_text(low: float, high: float) -> str:
    if math.isinf(low) and math.isinf(high):
        return "a finite number or null"
    if math.isinf(low):
        return f"a number of at most {high:g} or null"
    if math.isinf(high):
        return f"a number of at least {low:g} or null"
    return f"a number from {low:g} to {high:g} or null"


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _metric_blocks(metrics: dict[str, Any]) -> dict[str, Any]:
    """The comparable numbers of a metrics object (the run's own, or its ``baseline``)."""
    content_raw = metrics.get("content") if isinstance(metrics.get("content"), dict) else {}
    content = {k: v for k, v in ((k, number(content_raw.get(k))) for k in CONTENT_KEYS) if v is not None}
    # Content metrics this module does not know yet are still shown, after the known ones.
    content.update(
        {k: v for k, v in ((k, number(v)) for k, v in content_raw.items()) if v is not None and k not in content}
    )
    style_raw = metrics.get("style") if isinstance(metrics.get("style"), dict) else {}
    style = {name: probe for name, probe in style_raw.items() if isinstance(probe, dict)}
    style_mean = number(metrics.get("style_mean"))
    if style_mean is None and style:
        values = [number(p.get("linear")) for p in style.values()]
        values = [v for v in values if v is not None]
        style_mean = float(np.mean(values)) if values else None
    extra: dict[str, float] = {}
    if isinstance(metrics.get("dci"), dict):
        for key in ("disentanglement", "completeness", "informativeness"):
            if (value := number(metrics["dci"].get(key))) is not None:
                extra[f"dci_{key}"] = value
    for key in ("mig", "elbo"):
        if (value := number(metrics.get(key))) is not None:
            extra[key] = value
    return {
        "content": content,
        "style": style,
        "style_mean": style_mean,
        "rank_me": number(metrics.get("rank_me")),
        "extra": extra,
    }


def _optional_yaml(path: Path) -> Any:
    """The contents of an optional run file (``.hydra/config.yaml``, ``.hydra/overrides.yaml``); None when
    it is absent or damaged (with a warning: the run still reports from ``metrics.json``)."""
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:
        warn(f"ignoring {path}: {err}")
        return None


def _load_config(path: Path) -> dict[str, Any]:
    config = _optional_yaml(path / ".hydra" / "config.yaml")
    return config if isinstance(config, dict) else {}


def _load_curve(path: Path) -> tuple[list[tuple[int, float]], str]:
    """Loss against step from ``metrics.jsonl``: step records, or epoch records when none were logged."""
    if not path.is_file():
        return [], "step"
    records: dict[str, list[tuple[int, float]]] = {"step": [], "epoch": []}
    bad = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1  # a run killed mid-write leaves a truncated last line
            continue
        if not isinstance(record, dict) or record.get("kind") not in records:
            continue
        step, loss = number(record.get("step")), number(record.get("loss"))
        if step is not None and loss is not None:
            records[record["kind"]].append((int(step), loss))
    if bad:
        warn(f"skipped {bad} unreadable line(s) in {path}.")
    if records["step"]:
        return records["step"], "step"
    return records["epoch"], "epoch"


def load_embedding(path: Path) -> Embedding | None:
    """Read ``eval/embedding.npz``; None (with a warning) when it is missing pieces or malformed."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            features = np.asarray(npz["features"], dtype=np.float32)
            labels = np.asarray(npz["labels"]).astype(np.int64) if "labels" in npz else np.zeros(len(features), int)
            class_names = [str(c) for c in npz["class_names"]] if "class_names" in npz else []
            factor_names = [str(f) for f in npz["factor_names"]] if "factor_names" in npz else []
            factors = np.asarray(npz["factors"], dtype=np.float32) if "factors" in npz else np.zeros((len(features), 0))
    except Exception as err:
        warn(f"ignoring {path}: {err}")
        return None
    if features.ndim != 2 or len(features) < 5 or len(labels) != len(features):
        warn(
            f"ignoring {path}: features {features.shape} and labels {labels.shape} do not form [N, D] and [N] "
            "with N >= 5."
        )
        return None
    if factors.ndim != 2 or len(factors) != len(features):
        factors, factor_names = np.zeros((len(features), 0), np.float32), []
    factor_names = factor_names + [f"factor {i}" for i in range(len(factor_names), factors.shape[1])]
    return Embedding(features, labels, class_names, factor_names[: factors.shape[1]], factors)


def load_runs(paths: list[Path]) -> list[Run]:
    """Load every run; the first unusable ``metrics.json`` stops the report before anything is written.

    Runs of one method on one dataset that were launched with different settings (say a prior, a
    temperature or ``data.long_tail``) are told apart by ``variant``: the overrides whose value is not
    the same in all of them (seeds and bookkeeping such as threads or the logger aside), so the report
    compares ``simclr`` with ``simclr [model/prior=vmf_mixture]`` instead of averaging them as seeds.
    """
    runs = [load_run(p) for p in paths]
    assign_variants(runs)
    return runs


# Overrides that do not change what a run computes, or are told apart another way (the seed).
_BOOKKEEPING = ("seed", "method", "trainer.num_threads", "trainer.progress", "trainer.resume", "trainer.overwrite",
                "trainer.device", "logger", "hydra", "eval")  # fmt: skip


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _bookkeeping(key: str) -> bool:
    return any(key == k or key.startswith((k + ".", k + "/")) for k in _BOOKKEEPING)


def assign_variants(runs: list[Run]) -> None:
    """Set each run's ``variant``: its overrides on the keys where the runs of its (data, method) differ."""
    by_method: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by_method.setdefault((run.data, run.method), []).append(run)
    for runs_of_method in by_method.values():
        group = [run for run in runs_of_method if run.overrides]  # no overrides.yaml: nothing to tell apart
        settings = [
            {_override_key(o): o.lstrip("+~") for o in run.overrides if not _bookkeeping(_override_key(o))}
            for run in group
        ]
        keys = {k for s in settings for k in s}
        differing = sorted(k for k in keys if len({s.get(k) for s in settings}) > 1)
        for run, setting in zip(group, settings):
            shown = [_short(setting[k]) for k in differing if k in setting]
            if run.train.get("epochs") == 0:  # "(untrained)" says it
                shown = [v for v in shown if _override_key(v) != "trainer.max_epochs"]
            run.variant = ", ".join(shown)


def _short(override: str, limit: int = 48) -> str:
    """``key=value`` with a long value cut, plus a digest of the whole so that cut values stay distinct."""
    key, _, value = override.partition("=")
    if len(value) <= limit:
        return override
    return f"{key}={value[: limit - 12]}…#{hashlib.sha1(value.encode()).hexdigest()[:6]}"


def _load_overrides(path: Path) -> list[str]:
    overrides = _optional_yaml(path / ".hydra" / "overrides.yaml")
    return [str(o) for o in overrides] if isinstance(overrides, list) else []
