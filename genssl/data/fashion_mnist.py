"""Fashion-MNIST: from ``data.root``, or (root null) from Debian's ``dataset-fashion-mnist`` or by download.

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
_ALL_STEMS = tuple(stem for pair in _STEMS.values() for stem in pair)
_FILE_LIST = ", ".join(_ALL_STEMS[:-1]) + " and " + _ALL_STEMS[-1]


def load_fashion_mnist(root: str | None = None, download: bool = True) -> ImageDataset:
    """Load Fashion-MNIST (60,000 train / 10,000 test, 1×28×28).

    With ``root`` given, only that folder is used: the four IDX files directly in it (``.gz`` or
    not) or in torchvision's ``root/FashionMNIST/raw/``; when neither layout holds any of them and
    ``download`` is true, torchvision downloads them into ``root``. A missing folder, one without
    the files, and one with some of them missing or unreadable are a :class:`DataError` naming what
    was expected and what was found, never a silent fall-back to another copy. With ``root=None``
    it looks in :data:`DEBIAN_DIR`, then downloads with torchvision into ``data/`` when allowed.
    """
    if root is not None:
        return _from_user_root(Path(root), download)
    files = _idx_files(DEBIAN_DIR)
    if files is not None:
        return _from_idx(files)
    reason = "downloading is disabled (data.download=false)"
    if download:
        try:
            return _download(None)
        except Exception as exc:  # noqa: BLE001 - any network or IO failure becomes one DataError
            reason = f"the torchvision download failed ({first_line(exc)})"
    raise DataError(
        f"Fashion-MNIST was not found (searched {DEBIAN_DIR}) and {reason}. Get it in one of three "
        "ways: on Debian/Ubuntu run `apt-get install -y dataset-fashion-mnist` (installs the files "
        f"into {DEBIAN_DIR}); or set data.root=<dir> to a directory holding {_FILE_LIST} (compressed "
        "or not, or under <dir>/FashionMNIST/raw/); or run once on a machine with internet access and "
        "data.download=true so torchvision downloads it."
    )


def _from_user_root(root: Path, download: bool) -> ImageDataset:
    """Fashion-MNIST from the user's ``data.root`` and nowhere else (see :func:`load_fashion_mnist`)."""
    layouts = [root, root / "FashionMNIST" / "raw"]
    try:
        found = {directory: _present(directory) for directory in layouts}
    except OSError as exc:  # e.g. a folder without search permission
        raise DataError(
            f"Fashion-MNIST cannot be looked up in data.root={root}: {exc.strerror or exc} ({exc.filename}). "
            "Fix the folder's permissions or point data.root at another folder."
        ) from None
    for directory, files in found.items():
        if len(files) == len(_ALL_STEMS):
            return _from_idx(_idx_files(directory) or {})
    expected = (
        f"the four IDX files {_FILE_LIST} (each may be gzip-compressed, with .gz) directly in {root} or in "
        f"torchvision's layout {layouts[1]}"
    )
    partial = [(directory, files) for directory, files in found.items() if files]
    if partial:
        directory, files = partial[0]
        missing = [stem for stem in _ALL_STEMS if stem not in files]
        raise DataError(
            f"Fashion-MNIST in data.root={root} is incomplete: expected {expected}, but {directory} holds "
            f"only {', '.join(p.name for p in files.values())} and lacks {', '.join(missing)}. Copy the "
            "missing files there (genssl does not download over files already in data.root), or point "
            "data.root at a folder with all four, or set data.root=null to use the system copy."
        )
    seen = describe_contents(root)
    hint = (
        "Put the files there or point data.root at the folder that has them; `apt-get install -y "
        f"dataset-fashion-mnist` installs a system copy into {DEBIAN_DIR}, which genssl reads when "
        "data.root is null"
    )
    if download:
        try:
            return _download(str(root))
        except Exception as exc:  # noqa: BLE001 - any network or IO failure becomes one DataError
            raise DataError(
                f"Fashion-MNIST was not found in data.root={root} (expected {expected}, but {seen}) and the "
                f"torchvision download failed ({first_line(exc)}; it downloads into {layouts[1]}). {hint}; "
                "or run once on a machine with internet access."
            ) from None
    raise DataError(
        f"Fashion-MNIST was not found in data.root={root}: expected {expected}, but {seen}. {hint}; or "
        f"set data.download=true on a machine with internet access to download it into {layouts[1]}."
    )


def _present(directory: Path) -> dict[str, Path]:
    """The Fashion-MNIST IDX files found in ``directory``, by stem."""
    found = {}
    for stem in _ALL_STEMS:
        path = find_idx(directory, stem)
        if path is not None:
            found[stem] = path
    return found


def describe_contents(path: Path, limit: int = 8) -> str:
    """What is at ``path``, for an error message: ``<path> does not exist`` / ``is empty`` / ``holds a, b``."""
    try:
        if not path.exists():
            parent = next((p for p in path.parents if p.exists()), None)
            return f"{path} does not exist" + (f" (the nearest existing folder is {parent})" if parent else "")
        if not path.is_dir():
            return f"{path} is a file, not a folder"
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError as exc:
        return f"{path} cannot be listed ({exc.strerror or exc})"
    if not names:
        return f"{path} is empty"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{path} holds {', '.join(names[:limit])}{more}"


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
        if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28) or labels.shape != (images.shape[0],):
            raise DataError(
                f"{image_path} holds images of shape {tuple(images.shape)} and {label_path} labels "
                f"of shape {tuple(labels.shape)}; expected [N, 28, 28] and [N] with the same N (a "
                "truncated or mismatched pair of files?)."
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
