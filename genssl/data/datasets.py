"""``load_dataset``: one entry point for every dataset, returning the uniform uint8 layout.

Each loader returns its native resolution (shapes and CelebA render straight at the requested
size); this module then applies what is common to all: on request a seeded long-tailed subset of
the training split (``long_tail``), the seeded train/test subsets, the antialiased resize to
``image_size`` and, for grey datasets on request, the colour/position/scale styling of
:mod:`genssl.data.styled`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genssl.data.celeba import load_celeba
from genssl.data.digits import load_digits
from genssl.data.fashion_mnist import load_fashion_mnist
from genssl.data.image_folder import load_image_folder
from genssl.data.plain import to_plain
from genssl.data.shapes import load_shapes
from genssl.data.styled import attach_style_factors, render_styled_split, require_grey
from genssl.data.torchvision_sets import load_cifar10, load_mnist, load_stl10
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import ConfigError, choices

_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "fashion_mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "celeba": load_celeba,
    "stl10": load_stl10,
    "digits": load_digits,
    "shapes": load_shapes,
    "image_folder": load_image_folder,
}
DATASETS: tuple[str, ...] = tuple(_LOADERS)
# Native channel counts of the colour datasets, so that styled=true fails before a possibly
# missing download rather than after it (any other dataset is checked once loaded).
_COLOUR = {"cifar10": 3, "celeba": 3, "stl10": 3, "shapes": 3}
# Datasets read from files on access (LazyImages): nothing is rendered or resized in memory.
_LAZY = ("image_folder",)

# Arguments load_dataset itself hands to loaders that accept them; the rest of a loader's
# keyword arguments are its dataset-specific options.
_COMMON = ("root", "download", "image_size")
_RESIZE_CHUNK = 1024  # images resized at once; bounds the float temporaries


def dataset_options(name: str) -> tuple[str, ...]:
    """The dataset-specific option names ``load_dataset(name, **options)`` accepts."""
    _check_name(name)
    params = inspect.signature(_LOADERS[name]).parameters
    return tuple(p for p in params if p not in _COMMON)


def load_dataset(
    name: str,
    root: str | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    download: bool = True,
    image_size: int | None = None,
    styled: bool = False,
    style_seed: int = 0,
    long_tail: float | None = None,
    **options: Any,
) -> ImageDataset:
    """Load a dataset as uint8 ``[N, C, H, W]`` CPU tensors with labels and style factors.

    Args:
        name: one of :data:`DATASETS`.
        root: directory holding the data (dataset-specific layout; see each loader). When given,
            only that directory is used: a missing one, or one without (all of) the dataset's files,
            is a :class:`DataError` saying what was expected and found, never a quiet fall-back to
            a system copy. ``None`` keeps each loader's default search (and download).
        train_subset, test_subset: keep a random subset of this many images, drawn from ``seed``.
            ``train_subset`` is drawn from the long-tailed training split when ``long_tail`` is set.
        seed: the run seed; it only chooses subsets (including the long-tailed one and its class
            order), never the dataset itself or its split.
        download: allow torchvision to download missing data.
        image_size: side length wanted; images of another size are resized (bilinear,
            antialiased). ``None`` keeps the native size.
        styled: turn a grey dataset into RGB images with random hue, position and scale,
            recorded as continuous style factors (see :mod:`genssl.data.styled`).
        style_seed: seed of the style factors; like the split, they do not move with ``seed``.
        long_tail: imbalance ratio ``r = n_max / n_min >= 1`` of a long-tailed subset of the
            training split (the test split stays balanced as loaded); ``None`` keeps the split as
            is. See :func:`long_tail_counts` for the counts and the seeding rule. Applied to the
            full training split, before ``train_subset`` and the resize; style factors are drawn
            before it, so an image keeps its style.
        options: dataset-specific keyword arguments (see :func:`dataset_options`).

    Raises :class:`DataError` when a split's labels are not integers in ``[0, num_classes)`` or
    not one per image (checked straight after loading, for every dataset).
    """
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"Dataset '{name}' has no option(s) {choices(unknown)} (data.options); "
            + (f"valid options are {choices(valid)}." if valid else "it takes no options.")
        )
    if not isinstance(styled, bool):
        raise ConfigError(f"data.styled must be true or false, got {styled!r}.")
    if styled and name in _COLOUR:
        require_grey(name, _COLOUR[name])
    if styled and name in _LAZY:
        raise ConfigError(
            f"data.styled=true renders every image in memory, but '{name}' decodes its images from files "
            "on access; set data.styled=false."
        )
    if long_tail is not None:
        _check_long_tail(long_tail)  # before a possibly long load; the upper bound needs the data
    if image_size is not None and int(image_size) < 1:
        raise ConfigError(f"data.image_size must be a positive integer or null, got {image_size}.")
    loader = _LOADERS[name]
    params = inspect.signature(loader).parameters
    if root is not None and "root" not in params:
        raise ConfigError(
            f"data.root={root} is not used by '{name}', which needs no files (it is built in): drop data.root."
        )
    common = {"root": root, "download": download, "image_size": image_size}
    kwargs = {k: v for k, v in common.items() if k in params}
    kwargs.update({k: to_plain(v) for k, v in options.items()})
    dataset = loader(**kwargs)
    # Before anything indexes by label (long tail, probes): a bad label fails here, named.
    dataset.check_labels(f", data.root={root}" if root is not None and "root" in params else "")
    if styled:
        # Factors for the full splits before subsetting, so an image's style does not depend on
        # the run seed's subset; rendered after the resize, at the final size.
        dataset = attach_style_factors(dataset, style_seed)
    train = dataset.train
    if long_tail is not None:
        train = _long_tail(train, dataset.num_classes, long_tail, seed)
    train = _subset(train, train_subset, seed, 0, "train_subset")
    test = _subset(dataset.test, test_subset, seed, 1, "test_subset")
    if image_size is not None:
        train, test = resize_split(train, int(image_size)), resize_split(test, int(image_size))
    if styled:
        train, test = render_styled_split(train), render_styled_split(test)
    dataset.train, dataset.test = train, test
    return dataset.validate()


def _check_name(name: str) -> None:
    if name not in _LOADERS:
        raise ConfigError(f"Unknown dataset '{name}' (data.name); choose {choices(DATASETS)}.")


def _subset(split: ImageSplit, size: int | None, seed: int, stream: int, option: str) -> ImageSplit:
    """A random subset of ``size`` images, the same for the same ``seed``; None keeps all."""
    if size is None:
        return split
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= len(split):
        raise ConfigError(
            f"data.{option}={size} is not possible: it must be null (use all) or an integer "
            f"from 1 to {len(split)}, the size of this split."
        )
    # A separate stream per split, so the test subset does not depend on the train one.
    rng = np.random.default_rng([int(seed), stream])
    index = np.sort(rng.choice(len(split), size=int(size), replace=False))
    return split.select(torch.from_numpy(index))


def long_tail_counts(num_classes: int, n_max: int, ratio: float, seed: int) -> np.ndarray:
    """Per-class training counts of ``data.long_tail=ratio``, indexed by class label.

    ``n_max`` is the size of the smallest class of the full training split. The classes are put
    in a random order drawn from the run ``seed`` (``np.random.default_rng([seed, 2])``; the train
    and test subsets use streams 0 and 1, the choice of the long tail's images stream 3); the class
    of rank ``k`` (0 = head) keeps ``round(n_max * ratio ** (-k / (num_classes - 1)))`` images, so
    the head keeps ``n_max`` and the tail ``round(n_max / ratio)``; ``ratio=1`` gives ``n_max`` for
    every class. A loaded dataset's counts are ``train.labels.bincount(minlength=num_classes)``, and
    its class order is that of decreasing count (up to ties).
    """
    order = np.random.default_rng([int(seed), 2]).permutation(num_classes)
    counts = np.empty(num_classes, dtype=np.int64)
    for rank, label in enumerate(order):
        counts[label] = round(n_max * float(ratio) ** (-rank / (num_classes - 1)))
    return counts


def _check_long_tail(ratio: Any, n_max: int | None = None) -> None:
    """Raise :class:`ConfigError` unless ``ratio`` is a number from 1 to ``n_max`` (if known)."""
    number = isinstance(ratio, (int, float, np.integer, np.floating)) and not isinstance(ratio, (bool, np.bool_))
    if number and math.isfinite(float(ratio)) and 1 <= float(ratio) <= (n_max or math.inf):
        return
    bound = (
        f"from 1 to {n_max}, the size of the smallest class of this training split"
        if n_max
        else "from 1 to the size of the smallest class of the training split"
    )
    raise ConfigError(
        f"data.long_tail={ratio!r} is not allowed: it must be null (keep the training split as it "
        "is) or the imbalance ratio n_max / n_min between the most and the least frequent training "
        f"class, a number {bound} (so that the rarest class keeps at least one image); 1 keeps a "
        "balanced subset with as many images per class as the smallest class."
    )


def _long_tail(split: ImageSplit, num_classes: int, ratio: Any, seed: int) -> ImageSplit:
    """The long-tailed subset of ``split`` (see :func:`long_tail_counts`); images chosen per
    class by a permutation drawn from stream 3 of the run ``seed``, kept in their original order."""
    sizes = np.bincount(split.labels.numpy(), minlength=num_classes)
    if num_classes < 2 or sizes.min() < 1:
        why = f"dataset has {num_classes} class"
        if num_classes >= 2:
            why = f"class {int(sizes.argmin())} has no training images"
        raise ConfigError(
            f"data.long_tail={ratio!r} is not possible: a long-tailed subset needs at least two "
            f"classes, each with training images, and this {why}; set data.long_tail=null."
        )
    n_max = int(sizes.min())
    _check_long_tail(ratio, n_max)
    counts = long_tail_counts(num_classes, n_max, float(ratio), seed)
    rng = np.random.default_rng([int(seed), 3])
    labels = split.labels.numpy()
    keep = [rng.permutation(np.flatnonzero(labels == c))[: counts[c]] for c in range(num_classes)]
    return split.select(torch.from_numpy(np.sort(np.concatenate(keep))))


def resize_split(split: ImageSplit, size: int) -> ImageSplit:
    """The split with images resized to ``size``×``size`` (bilinear, antialiased); labels kept."""
    if split.images.shape[-1] == size and split.images.shape[-2] == size:
        return split
    return ImageSplit(resize_images(split.images, size), split.labels, split.factors)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size], in chunks to bound memory."""
    out = torch.empty(*images.shape[:2], size, size, dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        part = images[start : start + _RESIZE_CHUNK].float()
        resized = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + _RESIZE_CHUNK] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def dataset_from_config(cfg: Any) -> ImageDataset:
    """Load a run's ``cfg.data`` (its split subsets are drawn with the run's ``cfg.seed``)."""
    d = cfg.data
    return load_dataset(
        d.name,
        root=d.root,
        train_subset=d.train_subset,
        test_subset=d.test_subset,
        seed=cfg.seed,
        download=d.download,
        image_size=d.image_size,
        styled=d.get("styled", False),
        long_tail=d.get("long_tail"),
        **d.options,
    )
