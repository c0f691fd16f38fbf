"""The in-memory dataset layout every loader returns.

All images are held as one uint8 tensor per split, ``[N, C, H, W]`` on the CPU. That layout is a
fraction of the size of float images, it feeds the batched GPU augmentation directly (one index
and one ``.to(device)`` per batch, no per-item Python), and it is the same for every dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from genssl.data.streaming import LazyImages
from genssl.errors import DataError, ShapeError

FACTOR_KINDS: tuple[str, ...] = ("continuous", "discrete")


@dataclass
class ImageSplit:
    """One split of a dataset.

    Attributes:
        images: uint8 ``[N, C, H, W]``, CPU, contiguous; or a :class:`LazyImages` over image files
            (decoded on access, for data that does not fit in memory).
        labels: int64 ``[N]``, the content class.
        factors: ground-truth style factors, each ``[N]``: float32 when continuous, int64 when
            discrete; empty when the dataset has none.
    """

    images: torch.Tensor
    labels: torch.Tensor
    factors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def select(self, index: torch.Tensor) -> ImageSplit:
        """The images at ``index`` (an int64 tensor), with their labels and factors."""
        lazy = isinstance(self.images, LazyImages)  # files decoded on access: select the files
        return ImageSplit(
            images=self.images.select(index) if lazy else self.images[index].contiguous(),
            labels=self.labels[index].contiguous(),
            factors={k: v[index].contiguous() for k, v in self.factors.items()},
        )


@dataclass
class ImageDataset:
    """A train and a test split plus what is known about the classes and style factors."""

    name: str
    train: ImageSplit
    test: ImageSplit
    num_classes: int
    class_names: list[str]
    factor_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """Number of image channels (1 for grey, 3 for colour)."""
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        """Height (= width) of every image in pixels."""
        return int(self.train.images.shape[2])

    def check_labels(self, source: str = "") -> ImageDataset:
        """Check that each split has one integer label in ``[0, num_classes)`` per image.

        Raises :class:`DataError` naming the dataset, the split (and ``source``, where the data came
        from) and the first bad value: a half-written label file or a user's own data would otherwise
        crash deep inside the probes.
        """
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DataError(f"Dataset '{self.name}'{source} declares num_classes={k!r}; it must be a positive integer.")
        for split_name, split in (("train", self.train), ("test", self.test)):
            _check_labels(f"Dataset '{self.name}' ({split_name} split{source})", split, k)
        return self

    def validate(self) -> ImageDataset:
        """Check the layout contract; raise :class:`ShapeError` naming the first violation."""
        for split_name, split in (("train", self.train), ("test", self.test)):
            _check_split(self.name, split_name, split, self.factor_kinds)
        if self.train.images.shape[1:] != self.test.images.shape[1:]:
            raise ShapeError(
                f"Dataset '{self.name}' has train images of shape {tuple(self.train.images.shape[1:])} "
                f"but test images of shape {tuple(self.test.images.shape[1:])}; both splits must match."
            )
        if len(self.class_names) != self.num_classes:
            raise ShapeError(
                f"Dataset '{self.name}' declares {self.num_classes} classes but names "
                f"{len(self.class_names)}: {self.class_names}."
            )
        return self


def _check_labels(where: str, split: ImageSplit, num_classes: int) -> None:
    images, labels = split.images, split.labels
    if not isinstance(labels, torch.Tensor) or not isinstance(images, (torch.Tensor, LazyImages)):
        raise DataError(
            f"{where} holds images of type {type(images).__name__} and labels of type "
            f"{type(labels).__name__}; expected tensors."
        )
    if labels.dim() != 1 or images.dim() < 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{where} has {images.shape[0] if images.dim() else 0} images but labels of shape "
            f"{tuple(labels.shape)}; expected one label per image, [{images.shape[0] if images.dim() else 0}] "
            "(a truncated or mismatched label file?)."
        )
    if labels.numel() == 0:
        return
    valid = f"labels must be integers from 0 to {num_classes - 1} (num_classes={num_classes})"
    if labels.dtype == torch.bool or labels.is_complex():
        raise DataError(f"{where} has labels of dtype {labels.dtype}; {valid}.")
    if labels.is_floating_point():
        bad = ~torch.isfinite(labels) | (labels != labels.round())
        if bad.any():
            index = int(bad.nonzero()[0, 0])
            raise DataError(
                f"{where} has label {labels[index].item()!r} at index {index}, not an integer "
                f"({int(bad.sum())} of {labels.numel()} labels); {valid}."
            )
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        index = int(outside.nonzero()[0, 0])
        value = labels[index].item()
        value = int(value) if float(value).is_integer() else value
        raise DataError(
            f"{where} has label {value} at index {index} ({int(outside.sum())} of {labels.numel()} labels "
            f"outside the range, from {labels.min().item():g} to {labels.max().item():g}); {valid}."
        )


def _check_split(name: str, split_name: str, split: ImageSplit, kinds: dict[str, str]) -> None:
    where = f"Dataset '{name}' ({split_name} split)"
    images, labels = split.images, split.labels
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[2] != images.shape[3]:
        raise ShapeError(
            f"{where} has images of dtype {images.dtype} and shape {tuple(images.shape)}; "
            "expected uint8 [N, C, H, W] with H == W."
        )
    if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
        raise ShapeError(
            f"{where} has labels of dtype {labels.dtype} and shape {tuple(labels.shape)}; "
            f"expected int64 [{images.shape[0]}]."
        )
    if set(split.factors) != set(kinds):
        raise ShapeError(f"{where} has factors {sorted(split.factors)} but declares kinds for {sorted(kinds)}.")
    for factor, values in split.factors.items():
        want = torch.float32 if kinds[factor] == "continuous" else torch.int64
        if values.dtype != want or values.shape != (images.shape[0],):
            raise ShapeError(
                f"{where} has factor '{factor}' of dtype {values.dtype} and shape "
                f"{tuple(values.shape)}; expected {want} [{images.shape[0]}] ({kinds[factor]})."
            )
