"""Image folders in torchvision's ``ImageFolder`` layout (ImageNet, Imagenette, your own), read lazily.

Layout::

    <root>/<train_dir>/<class>/<image>.jpg|.png|...
    <root>/<test_dir>/<class>/<image>...

Classes are the train folder's sub-folders sorted by name (label = position), images within a class
sorted by path, as ``torchvision.datasets.ImageFolder`` does; the test folder's classes must be among
the train folder's. The images stay on disk as :class:`LazyImages`, decoded to uint8 ``[C, S, S]`` on
access (shorter side resized to ``S``, centre crop) by :class:`BatchStream`'s DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from genssl.data.fashion_mnist import describe_contents
from genssl.data.streaming import LazyImages
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import ConfigError, DataError

NAME = "image_folder"
TEST_DIRS = ("val", "test")  # looked for, in this order, when test_dir is not given


def _layout(root: Path, train_dir: str, test_dir: str) -> str:
    return (
        f"the ImageFolder layout: {root}/{train_dir}/<class>/<image> and {root}/{test_dir}/<class>/<image>, "
        f"one folder per class, images ending in {', '.join(IMG_EXTENSIONS)}"
    )


def _class_folders(directory: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in directory.iterdir() if entry.is_dir())
    except OSError:
        return []


def _samples(directory: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    try:
        return make_dataset(str(directory), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    except OSError as exc:  # unreadable folder
        raise DataError(f"The image folder {directory} could not be listed ({exc}).") from exc


def load_image_folder(
    root: str | None = None,
    image_size: int | None = 64,
    train_dir: str = "train",
    test_dir: str | None = None,
    channels: int = 3,
    num_workers: int = 2,
    threads: int | None = None,
) -> ImageDataset:
    """An ImageFolder tree as an :class:`ImageDataset` whose images are :class:`LazyImages`.

    Args:
        root: the folder holding ``train_dir`` and ``test_dir`` (required).
        image_size: ``S``: every image is decoded to ``S``×``S`` (shorter side resized to ``S``, then a
            centre crop; see :mod:`genssl.data.streaming`). Required: the files have no common size.
        train_dir, test_dir: the splits' sub-folders of ``root``; ``test_dir=None`` takes ``val``, else
            ``test``.
        channels: 3 (RGB) or 1 (grey, PIL's ``L``).
        num_workers: DataLoader workers :class:`BatchStream` decodes with (0: in the training process).
        threads: decode threads for a batch indexed in this process (default: up to 4).

    Raises :class:`DataError` naming the path and the expected layout when ``root``, a split folder or
    its class folders are missing or hold no images, or when the first image cannot be decoded.
    """
    if root is None:
        raise DataError(
            f"Dataset '{NAME}' needs data.root=<dir>, a folder in torchvision's ImageFolder layout: "
            "<dir>/train/<class>/<image> and <dir>/val/<class>/<image> (e.g. ImageNet or Imagenette)."
        )
    if image_size is None:
        raise ConfigError(
            f"Dataset '{NAME}' needs data.image_size: its images are decoded to one size on the fly "
            "(shorter side resized, centre crop)."
        )
    if channels not in (1, 3):
        raise ConfigError(f"data.options.channels={channels!r} is not possible for '{NAME}': use 3 (RGB) or 1 (grey).")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"data.options.num_workers={num_workers!r} must be a non-negative integer.")
    base = Path(root).expanduser()
    if test_dir is None:
        test_dir = next((d for d in TEST_DIRS if (base / d).is_dir()), TEST_DIRS[0])
    layout = _layout(base, train_dir, test_dir)
    if not base.is_dir():
        raise DataError(
            f"Dataset '{NAME}': data.root={root} is not a folder ({describe_contents(base)}); expected {layout}."
        )
    train_path, test_path = base / train_dir, base / test_dir
    for path in (train_path, test_path):
        if not path.is_dir():
            raise DataError(f"Dataset '{NAME}': {path} is missing ({describe_contents(base)}); expected {layout}.")

    classes = _class_folders(train_path)
    if not classes:
        raise DataError(
            f"Dataset '{NAME}': {train_path} has no class folders ({describe_contents(train_path)}); expected {layout}."
        )
    class_to_idx = {name: i for i, name in enumerate(classes)}
    train = _samples(train_path, class_to_idx)
    counts = torch.bincount(torch.tensor([label for _, label in train], dtype=torch.int64), minlength=len(classes))
    empty = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    if empty:
        shown = ", ".join(str(train_path / name) for name in empty[:5]) + (
            f" and {len(empty) - 5} more" if len(empty) > 5 else ""
        )
        raise DataError(f"Dataset '{NAME}': the class folder(s) {shown} hold no images; expected {layout}.")

    unknown = sorted(set(_class_folders(test_path)) - set(classes))
    if unknown:
        raise DataError(
            f"Dataset '{NAME}': {test_path} has class folder(s) {', '.join(unknown[:5])} that {train_path} lacks; "
            f"the test classes must be among the {len(classes)} training classes ({layout})."
        )
    test = _samples(test_path, class_to_idx)
    if not test:
        raise DataError(
            f"Dataset '{NAME}': {test_path} holds no images ({describe_contents(test_path)}); expected {layout}."
        )

    def split(samples: list[tuple[str, int]]) -> ImageSplit:
        images = LazyImages(
            [path for path, _ in samples], int(image_size), channels, threads=threads, num_workers=num_workers
        )
        return ImageSplit(images, torch.tensor([label for _, label in samples], dtype=torch.int64))

    dataset = ImageDataset(NAME, split(train), split(test), len(classes), classes)
    dataset.train.images.decode([0])  # a foreign file with an image's name fails here, named, not in a worker
    return dataset
