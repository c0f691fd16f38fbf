"""MNIST, CIFAR-10, STL-10 and CelebA through torchvision, on tiny files in its on-disk format.

The real datasets cannot be downloaded here, so each test writes a few images in exactly the
layout torchvision reads. torchvision checks the MD5 of the CIFAR-10, STL-10 and CelebA files
against the published ones; those checks are relaxed to "the file exists" in these tests only.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_datasets import write_fake_mnist_files

from genssl.data import load_dataset
from genssl.errors import ConfigError, DataError


def exists_only(fpath, md5=None):
    return os.path.isfile(fpath)


@pytest.fixture
def no_md5(monkeypatch):
    for module in ("cifar", "stl10", "celeba"):
        monkeypatch.setattr(f"torchvision.datasets.{module}.check_integrity", exists_only)


def test_mnist_from_torchvision_layout(tmp_path):
    arrays = write_fake_mnist_files(tmp_path / "MNIST" / "raw", n_train=10, n_test=4)
    d = load_dataset("mnist", root=str(tmp_path), download=False)
    assert d.train.images.shape == (10, 1, 28, 28) and d.test.images.shape == (4, 1, 28, 28)
    assert torch.equal(d.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(d.test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert d.num_classes == 10 and d.channels == 1


@pytest.mark.parametrize("name", ["mnist", "cifar10", "stl10", "celeba"])
def test_missing_torchvision_data_says_where_and_how(tmp_path, name):
    with pytest.raises(DataError) as info:
        load_dataset(name, root=str(tmp_path), download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "data.root" in message and "data.download=true" in message
    assert "\n" not in message


def write_cifar(root: Path, per_batch: int = 3, test: int = 4) -> tuple[np.ndarray, list[int]]:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5 * per_batch + test, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, len(images)).tolist()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, name in enumerate(names):
        part = slice(index * per_batch, (index + 1) * per_batch) if index < 5 else slice(5 * per_batch, None)
        # One row per image: 1024 red, then green, then blue values, each row-major.
        entry = {"data": images[part].reshape(-1, 3072), "labels": labels[part]}
        (base / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (base / "batches.meta").write_bytes(pickle.dumps(meta))
    return images, labels


def test_cifar10_from_pickle_batches(tmp_path, no_md5):
    images, labels = write_cifar(tmp_path)
    d = load_dataset("cifar10", root=str(tmp_path), download=False)
    assert d.train.images.shape == (15, 3, 32, 32) and d.test.images.shape == (4, 3, 32, 32)
    assert d.train.images.is_contiguous()
    assert torch.equal(d.train.images, torch.from_numpy(images[:15]))
    assert torch.equal(d.test.images, torch.from_numpy(images[15:]))
    assert d.train.labels.tolist() == labels[:15] and d.test.labels.dtype == torch.int64
    assert d.class_names[1] == "automobile" and d.num_classes == 10


def test_cifar10_corrupt_batch_is_a_data_error(tmp_path, no_md5):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04 truncated")
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("cifar10", root=str(tmp_path), download=False)


def write_stl10(root: Path, n_train: int = 3, n_test: int = 2) -> dict[str, np.ndarray]:
    base = root / "stl10_binary"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", 1)):
        images = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        # STL-10 stores each channel column-major (Fortran order), hence the transpose.
        (base / f"{split}_X.bin").write_bytes(np.transpose(images, (0, 1, 3, 2)).tobytes())
        out[f"{split}_X"] = images
        if split != "unlabeled":
            labels = rng.integers(0, 10, n).astype(np.uint8)
            (base / f"{split}_y.bin").write_bytes((labels + 1).tobytes())  # stored 1-based
            out[f"{split}_y"] = labels
    (base / "class_names.txt").write_text(
        "\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"])
    )
    return out


def test_stl10_from_binary_files(tmp_path, no_md5):
    arrays = write_stl10(tmp_path)
    d = load_dataset("stl10", root=str(tmp_path), download=False)
    assert d.train.images.shape == (3, 3, 96, 96) and d.test.images.shape == (2, 3, 96, 96)
    assert torch.equal(d.train.images, torch.from_numpy(arrays["train_X"]))
    assert d.train.labels.tolist() == arrays["train_y"].tolist()
    assert torch.equal(d.test.labels, torch.from_numpy(arrays["test_y"]).long())
    assert d.class_names[7] == "monkey"
    small = load_dataset("stl10", root=str(tmp_path), download=False, image_size=64)
    assert small.train.images.shape == (3, 3, 64, 64) and small.train.images.dtype == torch.uint8


ATTRS = ["Bangs", "Blond_Hair", "Eyeglasses", "Male", "Smiling", "Young"]
# split 0 = train, 1 = valid (unused), 2 = test
PARTITION = [0, 0, 0, 1, 2, 2]


def write_celeba(root: Path) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(2)
    attrs = rng.choice([-1, 1], size=(len(PARTITION), len(ATTRS)))
    colours = [tuple(int(v) for v in rng.integers(30, 220, 3)) for _ in PARTITION]
    names = [f"{i + 1:06d}.jpg" for i in range(len(PARTITION))]
    for name, colour in zip(names, colours):
        # An aligned face is 178 wide and 218 high; the bands cut off by the centre crop are white.
        pixels = np.full((218, 178, 3), colour, dtype=np.uint8)
        pixels[:20] = 255
        pixels[-20:] = 255
        Image.fromarray(pixels).save(base / "img_align_celeba" / name, quality=95)

    def rows(values) -> str:
        return "".join(f"{n} {' '.join(map(str, v))}\n" for n, v in zip(names, values))

    (base / "list_eval_partition.txt").write_text(rows([[p] for p in PARTITION]))
    (base / "identity_CelebA.txt").write_text(rows([[i + 1] for i in range(len(names))]))
    (base / "list_bbox_celeba.txt").write_text(
        f"{len(names)}\nimage_id x_1 y_1 width height\n" + rows([[1, 2, 3, 4]] * len(names))
    )
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{len(names)}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
        "leftmouth_y rightmouth_x rightmouth_y\n" + rows([list(range(10))] * len(names))
    )
    # Like the real file: attribute values padded with extra spaces, header ending in a space.
    (base / "list_attr_celeba.txt").write_text(
        f"{len(names)}\n{' '.join(ATTRS)} \n"
        + "".join(f"{n} " + " ".join(f"{v:2d}" for v in a) + "\n" for n, a in zip(names, attrs))
    )
    return attrs, colours


def test_celeba_crop_resize_labels_and_factors(tmp_path, no_md5):
    attrs, colours = write_celeba(tmp_path)
    d = load_dataset("celeba", root=str(tmp_path), download=False)
    assert d.train.images.shape == (3, 3, 64, 64) and d.test.images.shape == (2, 3, 64, 64)
    male = ATTRS.index("Male")
    assert d.train.labels.tolist() == [int(a > 0) for a in attrs[:3, male]]
    assert d.test.labels.tolist() == [int(a > 0) for a in attrs[4:, male]]
    assert d.class_names == ["not Male", "Male"] and d.num_classes == 2
    assert d.factor_kinds == {a: "discrete" for a in ("Smiling", "Eyeglasses", "Blond_Hair", "Bangs")}
    assert d.train.factors["Smiling"].tolist() == [int(a > 0) for a in attrs[:3, ATTRS.index("Smiling")]]
    # The white bands are cropped away: every pixel keeps the face colour (up to JPEG noise).
    expected = torch.tensor(colours[:3], dtype=torch.float32).view(3, 3, 1, 1)
    assert (d.train.images.float() - expected).abs().max() < 40
    assert (d.train.images.float().mean(dim=(2, 3)) - expected.view(3, 3)).abs().max() < 4


def test_celeba_options_and_cache(tmp_path, no_md5):
    attrs, _ = write_celeba(tmp_path)
    d = load_dataset(
        "celeba",
        root=str(tmp_path),
        download=False,
        image_size=32,
        label_attr="Smiling",
        factor_attrs=["Young", "Smiling"],
    )
    assert d.image_size == 32 and set(d.factor_kinds) == {"Young"}
    assert d.train.labels.tolist() == [int(a > 0) for a in attrs[:3, ATTRS.index("Smiling")]]
    cached = sorted(p.name for p in (tmp_path / "celeba" / "genssl_cache").iterdir())
    assert cached == ["test-crop178-32px.pt", "train-crop178-32px.pt"]
    # A second load reads the cache instead of the JPEGs.
    for jpg in (tmp_path / "celeba" / "img_align_celeba").iterdir():
        jpg.unlink()
    again = load_dataset(
        "celeba", root=str(tmp_path), download=False, image_size=32, label_attr="Smiling", factor_attrs=["Young"]
    )
    assert torch.equal(again.train.images, d.train.images)
    with pytest.raises(ConfigError, match="'Wearing_Monocle'.*'Bangs'"):
        load_dataset("celeba", root=str(tmp_path), download=False, label_attr="Wearing_Monocle")
