"""Fashion-MNIST: from a directory, from Debian's ``dataset-fashion-mnist``, or by download.

The IDX files are read directly (see :mod:`genssl.data.idx`), so the gzip files that Debian ships
need no decompression step and no torchvision directory layout. torchvision is only used for the
last resort, the download.
"""

from __future__ import annotations

from pathlib import Path

from genssl.data.idx import find_idx, read_idx
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import DataError

# Where Debian's dataset-fashion-mnist package installs the files. Module-level so tests can
# point it at an empty directory.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DOWNLOAD_ROOT = "data/"

CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def load_fashion_mnist(root: str | None = None, download: bool = True) -> ImageDataset:
    """Load Fashion-MNIST (60,000 train / 10,000 test, 1×28×28).

    Looks, in order, in ``root`` (the IDX files directly, ``.gz`` or not, or torchvision's
    ``root/FashionMNIST/raw/``), in :data:`DEBIAN_DIR`, and finally downloads with torchvision into
    ``root`` (default ``data/``) when ``download`` is true.
    """
    candidates: list[Path] = []
    if root is not None:
        candidates += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    candidates.append(DEBIAN_DIR)
    for directory in candidates:
        files = _idx_files(directory)
        if files is not None:
            return _from_idx(files)
    reason = "downloading is disabled (data.download=false)"
    if download:
        try:
            return _download(root)
        except Exception as exc:  # noqa: BLE001 - any network or IO failure becomes one DataError
            reason = f"the torchvision download failed ({first_line(exc)})"
    searched = ", ".join(str(d) for d in candidates)
    raise DataError(
        f"Fashion-MNIST was not found (searched {searched}) and {reason}. Get it in one of three "
        "ways: on Debian/Ubuntu run `apt-get install -y dataset-fashion-mnist` (installs the files "
        f"into {DEBIAN_DIR}); or set data.root=<dir> to a directory holding "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz (compressed or not, or under <dir>/FashionMNIST/raw/); or run "
        "once on a machine with internet access and data.download=true so torchvision downloads it."
    )


def _idx_files(directory: Path) -> dict[str, tuple[Path, Path]] | None:
    """The four IDX files in ``directory`` by split, or None unless all four are there."""
    found: dict[str, tuple[Path, Path]] = {}
    for split, (image_stem, label_stem) in _STEMS.items():
        images, labels = find_idx(directory, image_stem), find_idx(directory, label_stem)
        if images is None or labels is None:
            return None
        found[split] = (images, labels)
    return found


def _from_idx(files: dict[str, tuple[Path, Path]]) -> ImageDataset:
    splits = {}
    for split, (image_path, label_path) in files.items():
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.dim() != 3 or labels.shape != (images.shape[0],):
            raise DataError(
                f"{image_path} holds images of shape {tuple(images.shape)} and {label_path} labels "
                f"of shape {tuple(labels.shape)}; expected [N, 28, 28] and [N]."
            )
        splits[split] = ImageSplit(images.unsqueeze(1).contiguous(), labels.long())
    return ImageDataset("fashion_mnist", splits["train"], splits["test"], 10, list(CLASS_NAMES))


def _download(root: str | None) -> ImageDataset:
    """Download (or reuse a previous download) through torchvision."""
    from torchvision.datasets import FashionMNIST

    target = root if root is not None else DEFAULT_DOWNLOAD_ROOT
    train = FashionMNIST(target, train=True, download=True)
    test = FashionMNIST(target, train=False, download=True)
    return ImageDataset(
        "fashion_mnist",
        ImageSplit(train.data.unsqueeze(1).contiguous(), train.targets.long()),
        ImageSplit(test.data.unsqueeze(1).contiguous(), test.targets.long()),
        10,
        list(CLASS_NAMES),
    )


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` — enough to say why, without a traceback."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
