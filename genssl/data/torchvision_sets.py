"""MNIST, CIFAR-10 and STL-10 through torchvision's own loaders, converted to uint8 tensors.

torchvision defines the on-disk layout, checks the files and downloads them; this module only
turns its arrays into the :class:`ImageSplit` layout and turns its failures into one
:class:`DataError` that says where the files belong and how to get them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genssl.data.fashion_mnist import describe_contents, first_line
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import DataError

DEFAULT_ROOT = "data/"

# The files torchvision needs in each dataset's folder (its own checks decide; these name them in errors).
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
STL10_FILES = ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")

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


@dataclass(frozen=True)
class Layout:
    """Where torchvision keeps a dataset under a root, and the files it needs there.

    ``files`` are relative to ``directory``; a name ending in ``/`` is a folder.
    """

    directory: Path
    files: tuple[str, ...]

    def present(self) -> list[str]:
        """The expected files and folders that are there."""
        found = []
        for name in self.files:
            path = self.directory / name.rstrip("/")
            try:
                ok = path.is_dir() if name.endswith("/") else path.is_file()
            except OSError:  # no permission to look: counts as not there
                ok = False
            if ok:
                found.append(name)
        return found


def open_torchvision(
    make: Callable[[bool], Any],
    name: str,
    download: bool,
    where: str,
    source: str,
    layout: Layout | None = None,
    user_root: str | None = None,
) -> Any:
    """Build a torchvision dataset, downloading only when the files are not already there.

    ``make(download)`` constructs the dataset. It is tried without downloading first, so a present
    dataset never touches the network; torchvision signals missing or corrupt files with
    RuntimeError. With ``user_root`` (the user's ``data.root``) and its ``layout``, files that are
    only partly there, or all there but unreadable, are a :class:`DataError` saying which, and a
    download (when allowed) happens only into a root that holds none of them, so it never writes
    over the user's files.
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
    if user_root is not None and layout is not None:
        _check_user_root(name, download, source, layout, user_root, missing)
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


def _check_user_root(name: str, download: bool, source: str, layout: Layout, root: str, why: str) -> None:
    """Raise the :class:`DataError` for a user's ``data.root`` that torchvision could not open, unless
    it holds none of the files and a download is allowed (the caller then downloads into it)."""
    present = layout.present()
    expected = f"torchvision's layout, {source}, in {layout.directory}"
    if present and len(present) == len(layout.files):
        raise DataError(
            f"{name} in data.root={root} could not be read: every file of {expected} is there, so one of "
            f"them is truncated or corrupt (torchvision: {why}). Replace them with intact copies; genssl "
            "does not download over files already in data.root."
        )
    if present:
        lacking = [f for f in layout.files if f not in present]
        raise DataError(
            f"{name} in data.root={root} is incomplete: expected {expected}, but {layout.directory} has "
            f"only {', '.join(present)} and lacks {', '.join(lacking)}. Copy the missing files there "
            "(genssl does not download over files already in data.root), or point data.root at a "
            f"folder that has them all, or set data.root=null to use {DEFAULT_ROOT}."
        )
    if not download:
        seen = describe_contents(layout.directory)
        if not layout.directory.exists():
            seen += f"; {describe_contents(Path(root))}" if Path(root) != layout.directory else ""
        raise DataError(
            f"{name} was not found in data.root={root}: expected {expected}, but {seen}. Put the files "
            "there, point data.root=<dir> at a folder that has them, or run with data.download=true on a "
            f"machine with internet access to download them into {root}."
        )


def load_mnist(root: str | None = None, download: bool = True) -> ImageDataset:
    """MNIST (60,000 / 10,000, 1×28×28) via ``torchvision.datasets.MNIST``."""
    from torchvision.datasets import MNIST

    user_root, root = root, root if root is not None else DEFAULT_ROOT
    layout = Layout(Path(root) / "MNIST" / "raw", MNIST_FILES)
    splits = {}
    for split, train in (("train", True), ("test", False)):
        data = open_torchvision(
            lambda dl, train=train: MNIST(root, train=train, download=dl),
            "MNIST",
            download,
            str(layout.directory),
            f"the four IDX files {', '.join(MNIST_FILES)}, decompressed",
            layout,
            user_root,
        )
        splits[split] = ImageSplit(data.data.unsqueeze(1).contiguous(), data.targets.long())
    return ImageDataset("mnist", splits["train"], splits["test"], 10, [str(d) for d in range(10)])


def load_cifar10(root: str | None = None, download: bool = True) -> ImageDataset:
    """CIFAR-10 (50,000 / 10,000, 3×32×32) via ``torchvision.datasets.CIFAR10``."""
    from torchvision.datasets import CIFAR10

    user_root, root = root, root if root is not None else DEFAULT_ROOT
    layout = Layout(Path(root) / "cifar-10-batches-py", CIFAR10_FILES)
    splits, classes = {}, []
    for split, train in (("train", True), ("test", False)):
        data = open_torchvision(
            lambda dl, train=train: CIFAR10(root, train=train, download=dl),
            "CIFAR-10",
            download,
            str(layout.directory),
            "the python pickle batches data_batch_1..5, test_batch and batches.meta, from cifar-10-python.tar.gz",
            layout,
            user_root,
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

    user_root, root = root, root if root is not None else DEFAULT_ROOT
    layout = Layout(Path(root) / "stl10_binary", STL10_FILES)
    splits, classes = {}, list(STL10_CLASS_NAMES)
    for split in ("train", "test"):
        data = open_torchvision(
            lambda dl, split=split: STL10(root, split=split, download=dl),
            "STL-10",
            download,
            str(layout.directory),
            "train_X.bin, train_y.bin, unlabeled_X.bin, test_X.bin and test_y.bin from stl10_binary.tar.gz",
            layout,
            user_root,
        )
        images = torch.from_numpy(np.ascontiguousarray(data.data))  # already CHW
        splits[split] = ImageSplit(images, torch.as_tensor(data.labels, dtype=torch.long))
        classes = list(getattr(data, "classes", classes))
    return ImageDataset("stl10", splits["train"], splits["test"], len(classes), classes)
