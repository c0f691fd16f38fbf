"""The typed, validated configuration: every user-facing key has a type and a valid range.

Two sources make the schema, so it never drifts from the configs:

- **types from the defaults**: a key's default value in the packaged configs (composed for the same
  method, dataset and groups) fixes its type — an integer default wants an integer, a list of
  numbers a list of numbers, and so on;
- **ranges and nullable types** in :data:`RANGES`, for the keys whose default is ``null`` or whose
  valid values are a subset of the type (``trainer.batch_size`` ≥ 1, a finite positive learning rate).

Keys a user adds with ``+key=value`` must exist in the defaults unless they sit in an *open* block
(:data:`OPEN`), whose reader checks its own keys (a prior's or a method's keyword arguments, the
dataset's options): an unknown key is an error naming the keys that block takes. Every error is one
paragraph naming the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genssl.errors import ConfigError, choices


@dataclass(frozen=True)
class Range:
    """What a key may hold: ``kind`` (int, float, str, bool, list[int], list[float]), bounds, choices."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    options: tuple[str, ...] = ()
    doc: str = ""

    def describe(self) -> str:
        if self.options:
            text = f"one of {choices(self.options)}"
        else:
            text = {
                "int": "an integer",
                "float": "a finite number",
                "str": "a string",
                "bool": "true or false",
                "list[int]": "a list of integers",
                "list[float]": "a list of finite numbers",
                "device": "'auto', 'cpu', 'cuda' or 'cuda:<index>'",
            }[self.kind]
            if self.low is not None:
                text += f" {'>' if self.low_open else '≥'} {_fmt(self.low)}"
            if self.high is not None:
                text += f"{' and' if self.low is not None else ''} {'<' if self.high_open else '≤'} {_fmt(self.high)}"
        return text + (" or null" if self.nullable else "")


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def integer(low: float | None = None, high: float | None = None, nullable: bool = False, doc: str = "") -> Range:
    return Range("int", low, high, nullable=nullable, doc=doc)


def real(low: float | None = None, high: float | None = None, low_open: bool = False, nullable: bool = False,
         doc: str = "", high_open: bool = False) -> Range:  # fmt: skip
    return Range("float", low, high, low_open, high_open, nullable, doc=doc)


def one_of(*options: str, nullable: bool = False, doc: str = "") -> Range:
    return Range("str", options=tuple(options), nullable=nullable, doc=doc)


RANGES: dict[str, Range] = {
    "seed": integer(0, 2**31 - 1, doc="the run's seed"),
    "trainer.max_epochs": integer(0, doc="training epochs (0: the untrained baseline)"),
    "trainer.max_steps": integer(1, nullable=True, doc="an optional cap on optimiser steps"),
    "trainer.batch_size": integer(1, doc="source images per step"),
    "trainer.device": Range("device", doc="where to train"),
    "trainer.precision": one_of("32", "bf16", "16", doc="the forward pass's precision"),
    "trainer.num_threads": integer(1, nullable=True, doc="torch CPU threads"),
    "trainer.log_every": integer(1, doc="steps between metrics.jsonl records"),
    "trainer.gather": one_of("global", "local", doc="what the batch-coupled terms see on several processes"),
    "trainer.optim.name": one_of("adam", "adamw"),
    "trainer.optim.lr": real(0.0, low_open=True, doc="the learning rate"),
    "trainer.optim.eps": real(0.0, low_open=True, doc="Adam's epsilon"),
    "trainer.optim.weight_decay": real(0.0, doc="the weight decay"),
    "trainer.optim.schedule": one_of("constant", "cosine"),
    "trainer.optim.warmup_epochs": real(0.0, doc="linear warm-up, in epochs"),
    "data.root": Range("str", nullable=True, doc="the data directory"),
    "data.train_subset": integer(1, nullable=True, doc="a seeded subset of the training split"),
    "data.test_subset": integer(1, nullable=True, doc="a seeded subset of the test split"),
    "data.long_tail": real(1.0, nullable=True, doc="the imbalance ratio of a long-tailed training subset"),
    "data.image_size": integer(1, doc="the image side in pixels"),
    "data.channels": integer(1, doc="image channels"),
    "data.num_views": integer(1, doc="augmented views per image"),
    "data.likelihood": one_of("bernoulli", "gaussian"),
    "data.encoder": one_of("mlp", "conv", "resnet18"),
    "net.encoder": one_of("mlp", "conv", "resnet18"),
    "net.feature_dim": integer(1, doc="the conv encoder's feature width"),
    "net.mlp_hidden": Range("list[int]", 1, doc="the MLP's hidden widths"),
    "net.vit.patch_size": integer(1, nullable=True, doc="the ViT's patch side"),
    "net.vit.width": integer(1),
    "net.vit.depth": integer(1),
    "net.vit.heads": integer(1),
    "net.vit.mlp_ratio": real(0.0, low_open=True),
    "net.vit.pos_embed": one_of("sincos", "learned"),
    "model.latent_dim": integer(1, doc="the content latent's size"),
    "model.view_var": real(0.0, low_open=True, nullable=True, doc="SimVAE's view variance σ² (null: the VAE)"),
    "model.beta": real(0.0, doc="the KL weight β"),
    "model.elbo": one_of("meanfield", "trace", "enum"),
    "model.pixel_var": real(0.0, low_open=True),
    "model.decoder.width": integer(1),
    "model.decoder.depth": integer(1),
    "model.decoder.heads": integer(1),
    "model.decoder.mlp_ratio": real(0.0, low_open=True),
    "guide.mask_ratio": real(0.0, 1.0, low_open=True, high_open=True, doc="the fraction of hidden patches"),
    "guide.projector.hidden_dim": integer(1),
    "guide.projector.out_dim": integer(1),
    "guide.projector.layers": integer(1),
    "guide.prototypes.num": integer(2, doc="prototypes"),
    "guide.clusters.num": integer(2, doc="k-means clusters"),
    "guide.clusters.iterations": integer(0, doc="Lloyd rounds per epoch"),
    "guide.momentum": real(0.0, 1.0, doc="the EMA momentum"),
    "guide.target": one_of("ema", "stopgrad"),
    "guide.kind": one_of("delta", "distillation", "prototypes", "clusters"),
    "guide.predictor.kind": one_of("mlp", "directpred"),
    "guide.predictor.hidden_dim": integer(1),
    "guide.predictor.rho": real(0.0, 1.0),
    "guide.predictor.eps": real(0.0),
    "guide.predictor.freq": integer(1),
    "guide.predictor.variant": one_of("directpred", "directcopy"),
    "guide.prototypes.teacher.momentum": real(0.0, 1.0),
    "guide.prototypes.teacher.temperature": real(0.0, low_open=True, doc="the teacher's temperature"),
    "guide.prototypes.teacher.centre_momentum": real(0.0, 1.0),
    "method.student_temp": real(0.0, low_open=True, doc="DINO's student temperature"),
    "method.teacher_temp": real(0.0, low_open=True, doc="DINO's teacher temperature"),
    # The methods' terms (model.terms, an open block: each method takes its own keyword arguments).
    "model.prior.weights": Range("list[float]", 0.0, doc="class_marginal's weights of the K classes"),
    "model.terms.temperature": real(0.0, low_open=True, doc="the softmax / vMF temperature"),
    "model.terms.kappa": real(0.0, low_open=True, doc="the vMF concentration κ"),
    "model.terms.lambda_": real(0.0, doc="a term's weight"),
    "model.terms.mu": real(0.0, doc="a term's weight"),
    "model.terms.nu": real(0.0, doc="a term's weight"),
    "model.terms.eps": real(0.0, low_open=True),
    "model.terms.iterations": integer(0, doc="Sinkhorn–Knopp rounds"),
    "model.terms.epsilon": real(0.0, low_open=True, doc="Sinkhorn–Knopp's entropic regularisation"),
    "model.terms.estimator": one_of("mean", "plugin"),
    "model.terms.exclude_self": Range("bool"),
    "model.terms.student_temp": real(0.0, low_open=True, doc="DINO's student temperature"),
    "model.terms.gamma": real(0.0, doc="SSL-HSIC's γ"),
    "model.terms.init_scale": real(0.0, low_open=True, doc="the kernel's initial scale"),
    "model.terms.num_features": integer(1, nullable=True, doc="random Fourier features (null: exact HSIC)"),
    "eval.batch_size": integer(1),
    "eval.linear.weight_decays": Range("list[float]", 0.0),
    "eval.linear.val_fraction": real(0.0, 1.0, low_open=True, high_open=True),
    "eval.preset": one_of("fast", "full", doc="the evaluation's solvers (genssl.eval.evaluate)"),
    "eval.linear.max_iter": integer(1),
    "eval.linear.whitened_max_iter": integer(1, doc="L-BFGS steps per fit of the fast preset's linear probes"),
    "eval.knn.k": integer(1, doc="neighbours of the kNN probe"),
    "eval.few_label.per_class": Range("list[int]", 1),
    "eval.few_label.draws": integer(1),
    "eval.style.max_train": integer(1),
    "eval.style.max_test": integer(1),
    "eval.disentanglement.max_train": integer(1),
    "eval.disentanglement.max_test": integer(1),
    "logger.name": one_of("none", "wandb"),
    "logger.mode": one_of("offline", "online", "disabled"),
    "logger.entity": Range("str", nullable=True),
    "logger.run_name": Range("str", nullable=True),
}
# Blocks whose keys their readers check (keyword arguments, dataset options, guide settings by kind):
# the schema checks only the keys it knows inside them.
OPEN = ("model.prior", "model.terms", "data.options", "data.augment", "guide.predictor", "guide.prototypes.teacher")


# Blocks in the order their errors are reported: a size set through the guide before the model key that
# interpolates it.
ORDER = ("seed", "trainer", "data", "net", "method", "guide", "model", "eval", "logger")


def validate(cfg: Mapping[str, Any], defaults: Mapping[str, Any], where: str = "") -> None:
    """Check every key of ``cfg`` (a plain container) against ``defaults`` (the packaged config for the
    same group choices) and :data:`RANGES`; raise :class:`ConfigError` on the first bad one."""
    keys = sorted(cfg, key=lambda k: ORDER.index(k) if not where and k in ORDER else len(ORDER))
    for key in keys:
        value = cfg[key]
        path = f"{where}.{key}" if where else str(key)
        default = defaults.get(key) if isinstance(defaults, Mapping) else None
        if path in OPEN:  # its reader checks which keys it takes; the schema checks the values it knows
            if isinstance(value, Mapping):
                for inner, inner_value in value.items():
                    inner_default = default.get(inner) if isinstance(default, Mapping) else None
                    _check_value(f"{path}.{inner}", inner_value, inner_default)
            continue
        if key not in defaults:
            _unknown(path, key, defaults)
        if isinstance(value, Mapping):
            if default is not None and not isinstance(default, Mapping):
                raise ConfigError(f"{path} takes a single value (default {default!r}), not a block of settings.")
            validate(value, default or {}, path)
        else:
            _check_value(path, value, default)


def _unknown(path: str, key: str, defaults: Mapping[str, Any]) -> None:
    parent = path.rpartition(".")[0] or "the config"
    known = sorted(str(k) for k in defaults)
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ConfigError(
        f"Unknown setting {path}: {parent} takes {choices(known)}.{hint} A setting that nothing reads would be "
        "silently ignored, so genssl refuses it."
    )


def _check_value(path: str, value: Any, default: Any) -> None:
    spec = RANGES.get(path) or _spec_from_default(default)
    if spec is None:
        return
    if value == "???":  # OmegaConf's MISSING, left in place: a value the config asks the user for
        raise ConfigError(f"{path} has no value and needs one: give {path}=<{spec.describe()}>.")
    if value is None:
        if spec.nullable or default is None:
            return
        _bad(path, value, spec)
    if spec.kind in ("int", "float"):
        if not _is_number(value, spec.kind):
            _bad(path, value, spec)
        _bounds(path, float(value), spec, shown=value)
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            _bad(path, value, spec)
    elif spec.kind == "str":
        text = str(value)
        if spec.options and text not in spec.options:
            _bad(path, value, spec)
        if not spec.options and not isinstance(value, str):
            _bad(path, value, spec)
    elif spec.kind == "device":
        if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or _cuda_index(value)):
            _bad(path, value, spec)
    elif spec.kind.startswith("list"):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            _bad(path, value, spec)
        for item in value:
            if not _is_number(item, spec.kind[5:-1]):
                _bad(path, value, spec)
            _bounds(path, float(item), spec, shown=value)


def _is_number(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _cuda_index(value: str) -> bool:
    head, _, index = value.partition(":")
    return head == "cuda" and index.isdigit()


def _spec_from_default(default: Any) -> Range | None:
    if isinstance(default, bool):
        return Range("bool")
    if isinstance(default, int):
        return Range("int")
    if isinstance(default, float):
        return Range("float")
    if isinstance(default, str):
        # "???" (OmegaConf's MISSING: a value the user must give, e.g. class_marginal's weights) says nothing
        # about the type; the reader of the key checks it.
        return None if default == "???" else Range("str")
    if (
        isinstance(default, Sequence)
        and default
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in default)
    ):
        return Range("list[int]" if all(isinstance(v, int) for v in default) else "list[float]")
    return None


def _bounds(path: str, value: float, spec: Range, shown: Any = None) -> None:
    shown = value if shown is None else shown
    if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
        _bad(path, shown, spec)
    if spec.high is not None and (value > spec.high or (spec.high_open and value == spec.high)):
        _bad(path, shown, spec)


def _bad(path: str, value: Any, spec: Range) -> None:
    what = f" ({spec.doc})" if spec.doc else ""
    raise ConfigError(f"{path}={value!r} is not valid{what}: it must be {spec.describe()}.")
