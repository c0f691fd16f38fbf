"""CelebA through ``torchvision.datasets.CelebA``, decoded once into 64×64 uint8 tensors.

Images are the aligned 178×218 faces, centre-cropped to 178×178 and resized (antialiased bilinear)
to ``image_size`` — the usual preparation for 64×64 generative models. The content label is one
binary attribute (default ``Male``: two well-populated classes, about 42% / 58%); a few other
attributes are kept as discrete ground-truth style factors. Decoding ~160k JPEGs takes minutes,
so the result is cached next to the data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from genssl.data.fashion_mnist import first_line
from genssl.data.torchvision_sets import DEFAULT_ROOT, Layout, open_torchvision
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import ConfigError, DataError, choices

DEFAULT_FACTOR_ATTRS = ("Smiling", "Eyeglasses", "Blond_Hair", "Bangs")
CACHE_DIR = "genssl_cache"
CELEBA_FILES = (
    "img_align_celeba/",
    "list_attr_celeba.txt",
    "identity_CelebA.txt",
    "list_bbox_celeba.txt",
    "list_landmarks_align_celeba.txt",
    "list_eval_partition.txt",
)


def load_celeba(
    root: str | None = None,
    download: bool = True,
    image_size: int | None = None,
    label_attr: str = "Male",
    factor_attrs: Sequence[str] = DEFAULT_FACTOR_ATTRS,
    crop: int = 178,
    cache: bool = True,
) -> ImageDataset:
    """CelebA train (162,770) and test (19,962) splits; the "valid" split is not used.

    Args:
        label_attr: the attribute used as the binary content class.
        factor_attrs: attributes stored as discrete style factors (``label_attr`` is skipped).
        crop: side of the centre square cut from each face before resizing.
        cache: store the decoded tensors under ``root/celeba/genssl_cache/`` and reuse them.
    """
    from torchvision.datasets import CelebA

    user_root, root = root, root if root is not None else DEFAULT_ROOT
    layout = Layout(Path(root) / "celeba", CELEBA_FILES)
    size = 64 if image_size is None else int(image_size)
    splits: dict[str, ImageSplit] = {}
    for split in ("train", "test"):
        data = open_torchvision(
            lambda dl, split=split: CelebA(root, split=split, target_type="attr", download=dl),
            "CelebA",
            download,
            str(layout.directory),
            "img_align_celeba/*.jpg plus list_attr_celeba.txt, identity_CelebA.txt, "
            "list_bbox_celeba.txt, list_landmarks_align_celeba.txt and list_eval_partition.txt; "
            "downloading needs the gdown package",
            layout,
            user_root,
        )
        # The real attribute header ends with a space, which csv turns into an empty name.
        names = [n for n in data.attr_names if n]
        label_index = _attr_index(names, label_attr, "label_attr")
        factors = {
            a: data.attr[:, _attr_index(names, a, "factor_attrs")].long().contiguous()
            for a in factor_attrs
            if a != label_attr
        }
        image_dir = Path(root) / "celeba" / "img_align_celeba"
        images = _decoded(image_dir, list(data.filename), split, crop, size, cache)
        splits[split] = ImageSplit(images, data.attr[:, label_index].long().contiguous(), factors)
    kinds = {a: "discrete" for a in splits["train"].factors}
    return ImageDataset("celeba", splits["train"], splits["test"], 2, [f"not {label_attr}", label_attr], kinds)


def _attr_index(names: list[str], attr: str, option: str) -> int:
    if attr not in names:
        raise ConfigError(
            f"CelebA has no attribute '{attr}' (option data.options.{option}); choose from {choices(names)}."
        )
    return names.index(attr)


def _decoded(image_dir: Path, filenames: list[str], split: str, crop: int, size: int, cache: bool) -> torch.Tensor:
    """All images of a split as uint8 [N, 3, size, size], from the cache when it matches."""
    cache_file = image_dir.parent / CACHE_DIR / f"{split}-crop{crop}-{size}px.pt"
    if cache and cache_file.is_file():
        try:
            stored = torch.load(cache_file, weights_only=True)
        except Exception:  # noqa: BLE001 - a cache cut short (a killed run): decode again and rewrite it
            stored = {}
        if isinstance(stored, dict) and stored.get("filenames") == filenames:
            return stored["images"]
    images = np.empty((len(filenames), size, size, 3), dtype=np.uint8)

    def decode(i: int) -> None:
        images[i] = _prepare(image_dir / filenames[i], crop, size)

    # PIL releases the GIL while decoding and resizing, so threads use all cores.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        progress = tqdm(
            pool.map(decode, range(len(filenames))),
            total=len(filenames),
            desc=f"CelebA {split}: decoding JPEGs",
            unit="img",
            disable=len(filenames) < 1000,
        )
        for _ in progress:
            pass
    result = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    if cache:
        tmp = cache_file.with_name(cache_file.name + ".tmp")
        try:
            cache_file.parent.mkdir(exist_ok=True)
            torch.save({"filenames": filenames, "images": result}, tmp)
            os.replace(tmp, cache_file)  # a killed run leaves no half-written cache
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only or full data directory only costs decoding time
    return result


def _prepare(path: Path, crop: int, size: int) -> np.ndarray:
    try:
        return _crop_resize(path, crop, size)
    except (OSError, ValueError, SyntaxError) as exc:  # missing, unreadable, truncated or not an image
        raise DataError(
            f"CelebA image {path} cannot be read ({first_line(exc)}): list_eval_partition.txt names it, so "
            f"{path.parent} must hold it as an intact JPEG. Restore it from img_align_celeba.zip."
        ) from None


def _crop_resize(path: Path, crop: int, size: int) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        side = min(crop, width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != size:
            # PIL widens the bilinear kernel when shrinking, i.e. it antialiases.
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)
