"""MNIST, CIFAR-10 and STL-10 through torchvision's own loaders, converted to uint8 tensors.

torchvision defines the on-disk layout, checks the files and downloads them; this module only
turns its arrays into the :class:`ImageSplit` layout and turns its failures into one
:class:`DataError` that says where the files belong and how to get them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genssl.data.fashion_mnist import first_line
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import DataError

DEFAULT_ROOT = "data/"

STL10_CLASS_NAMES = [
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
]


def open_torchvision(make: Callable[[bool], Any], name: str, download: bool, where: str, source: str) -> Any:
    """Build a torchvision dataset, downloading only when the files are not already there.

    ``make(download)`` constructs the dataset. It is tried without downloading first, so a present
    dataset never touches the network; torchvision signals missing or corrupt files with
    RuntimeError.
    """
    try:
        return make(False)
    except RuntimeError as exc:
        missing = first_line(exc)
    except Exception as exc:  # noqa: BLE001 - the files exist but do not parse
        raise DataError(
            f"{name} in {where} could not be read ({first_line(exc)}); the files are probably "
            f"truncated or corrupt. Replace them with intact ones in torchvision's layout ({source})."
        ) from exc
    if download:
        try:
            return make(True)
        except Exception as exc:  # noqa: BLE001 - network, archive and IO failures alike
            missing = f"the download failed ({first_line(exc)})"
    raise DataError(
        f"{name} was not found or is incomplete in {where} ({missing}). Put the files there in "
        f"torchvision's layout ({source}), point data.root=<dir> at a directory that has them, or "
        "run with data.download=true on a machine with internet access to download them."
    )


def load_mnist(root: str | None = None, download: bool = True) -> ImageDataset:
    """MNIST (60,000 / 10,000, 1×28×28) via ``torchvision.datasets.MNIST``."""
    from torchvision.datasets import MNIST

    root = root if root is not None else DEFAULT_ROOT
    splits = {}
    for split, train in (("train", True), ("test", False)):
        data = open_torchvision(
            lambda dl, train=train: MNIST(root, train=train, download=dl),
            "MNIST",
            download,
            str(Path(root) / "MNIST" / "raw"),
            "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, decompressed",
        )
        splits[split] = ImageSplit(data.data.unsqueeze(1).contiguous(), data.targets.long())
    return ImageDataset("mnist", splits["train"], splits["test"], 10, [str(d) for d in range(10)])


def load_cifar10(root: str | None = None, download: bool = True) -> ImageDataset:
    """CIFAR-10 (50,000 / 10,000, 3×32×32) via ``torchvision.datasets.CIFAR10``."""
    from torchvision.datasets import CIFAR10

    root = root if root is not None else DEFAULT_ROOT
    splits, classes = {}, []
    for split, train in (("train", True), ("test", False)):
        data = open_torchvision(
            lambda dl, train=train: CIFAR10(root, train=train, download=dl),
            "CIFAR-10",
            download,
            str(Path(root) / "cifar-10-batches-py"),
            "the python pickle batches data_batch_1..5, test_batch and batches.meta, from cifar-10-python.tar.gz",
        )
        # torchvision keeps CIFAR as HWC numpy; the contract is CHW.
        images = torch.from_numpy(np.ascontiguousarray(data.data.transpose(0, 3, 1, 2)))
        splits[split] = ImageSplit(images, torch.as_tensor(data.targets, dtype=torch.long))
        classes = list(data.classes)
    return ImageDataset("cifar10", splits["train"], splits["test"], len(classes), classes)


def load_stl10(root: str | None = None, download: bool = True) -> ImageDataset:
    """STL-10 (5,000 labelled train / 8,000 test, 3×96×96) via ``torchvision.datasets.STL10``.

    Train is torchvision's labelled "train" split; the 100,000 unlabelled images are not used
    (torchvision still requires ``unlabeled_X.bin`` to be present).
    """
    from torchvision.datasets import STL10

    root = root if root is not None else DEFAULT_ROOT
    splits, classes = {}, list(STL10_CLASS_NAMES)
    for split in ("train", "test"):
        data = open_torchvision(
            lambda dl, split=split: STL10(root, split=split, download=dl),
            "STL-10",
            download,
            str(Path(root) / "stl10_binary"),
            "train_X.bin, train_y.bin, unlabeled_X.bin, test_X.bin and test_y.bin from stl10_binary.tar.gz",
        )
        images = torch.from_numpy(np.ascontiguousarray(data.data))  # already CHW
        splits[split] = ImageSplit(images, torch.as_tensor(data.labels, dtype=torch.long))
        classes = list(getattr(data, "classes", classes))
    return ImageDataset("stl10", splits["train"], splits["test"], len(classes), classes)
