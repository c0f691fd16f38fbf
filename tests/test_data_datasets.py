"""Datasets: shapes, digits, Fashion-MNIST (real files and lookup), subsets, resizing, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from genssl.data import DATASETS, ImageDataset, dataset_options, fashion_mnist, load_dataset
from genssl.data.datasets import resize_images
from genssl.data.idx import read_idx
from genssl.data.shapes import CLASS_NAMES, FACTOR_RANGES
from genssl.errors import ConfigError, DataError

SMALL_SHAPES = {"num_train": 300, "num_test": 100}


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Write a uint8 array as an IDX file, the (Fashion-)MNIST format."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_fake_mnist_files(
    directory: Path, n_train: int = 12, n_test: int = 6, compress: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        write_idx(directory / stem, array, compress)
    return arrays


# --- shapes -------------------------------------------------------------------------------------


def test_shapes_is_deterministic_in_its_seed_and_ignores_the_run_seed():
    a = load_dataset("shapes", seed=0, **SMALL_SHAPES)
    b = load_dataset("shapes", seed=123, **SMALL_SHAPES)
    c = load_dataset("shapes", dataset_seed=1, **SMALL_SHAPES)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    for name in a.factor_kinds:
        assert torch.equal(a.train.factors[name], b.train.factors[name])
    assert not torch.equal(a.train.images, c.train.images)
    # Train and test are different draws, not the same images twice.
    assert not torch.equal(a.train.images[:100], a.test.images)


def test_shapes_layout_factors_and_ranges():
    d = load_dataset("shapes", **SMALL_SHAPES)
    assert isinstance(d, ImageDataset)
    assert d.train.images.shape == (300, 3, 32, 32) and d.test.images.shape == (100, 3, 32, 32)
    assert d.train.images.dtype == torch.uint8 and d.train.images.is_contiguous()
    assert d.channels == 3 and d.image_size == 32
    assert d.num_classes == len(CLASS_NAMES) >= 4 and d.class_names == CLASS_NAMES
    assert set(d.train.labels.unique().tolist()) == set(range(d.num_classes))
    assert d.factor_kinds == {k: "continuous" for k in ("pos_x", "pos_y", "scale", "rotation", "hue")}
    for split in (d.train, d.test):
        for name, (low, high) in FACTOR_RANGES.items():
            values = split.factors[name]
            assert values.shape == (len(split),) and values.dtype == torch.float32
            assert low <= values.min() and values.max() <= high
    # Every image shows a shape (something is drawn) on a black background.
    assert (d.train.images.flatten(1).amax(dim=1) > 100).all()


@pytest.mark.parametrize("size", [28, 32, 64])
def test_shapes_stay_inside_the_image(size):
    images = load_dataset("shapes", image_size=size, **SMALL_SHAPES).train.images
    assert images.shape[-1] == size
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
    assert border.max() == 0


def test_shapes_factors_match_the_pixels():
    d = load_dataset("shapes", num_train=400, num_test=10)
    images, f = d.train.images.float(), d.train.factors
    # Centre of mass of the drawn pixels follows pos_x / pos_y.
    mass = images.sum(dim=1)
    grid = (torch.arange(32) + 0.5) / 32
    total = mass.sum(dim=(1, 2))
    com_x = (mass.sum(dim=1) * grid).sum(dim=1) / total
    com_y = (mass.sum(dim=2) * grid).sum(dim=1) / total
    assert np.corrcoef(com_x, f["pos_x"])[0, 1] > 0.9
    assert np.corrcoef(com_y, f["pos_y"])[0, 1] > 0.9
    # Area follows scale squared within a class.
    square = d.train.labels == 0
    area = (images.amax(dim=1) > 127).flatten(1).sum(dim=1).float()
    assert np.corrcoef(area[square], f["scale"][square] ** 2)[0, 1] > 0.9


# --- digits -------------------------------------------------------------------------------------


def test_digits_loads_with_a_fixed_split():
    native = load_dataset("digits")
    assert native.train.images.shape == (1438, 1, 8, 8) and native.test.images.shape == (359, 1, 8, 8)
    assert native.train.images.max() == 255 and native.num_classes == 10
    resized = load_dataset("digits", image_size=28, seed=5)
    assert resized.train.images.shape == (1438, 1, 28, 28)
    assert torch.equal(native.test.labels, resized.test.labels)  # the split ignores the run seed


# --- Fashion-MNIST ------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (fashion_mnist.DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_real_files():
    d = load_dataset("fashion_mnist", download=False)
    assert d.train.images.shape == (60000, 1, 28, 28) and d.test.images.shape == (10000, 1, 28, 28)
    assert d.train.labels.min() == 0 and d.train.labels.max() == 9
    assert torch.equal(d.train.labels.bincount(), torch.full((10,), 6000))
    assert d.class_names[0] == "T-shirt/top" and d.factor_kinds == {}
    a = load_dataset("fashion_mnist", train_subset=500, test_subset=200, seed=3, download=False)
    b = load_dataset("fashion_mnist", train_subset=500, test_subset=200, seed=3, download=False)
    c = load_dataset("fashion_mnist", train_subset=500, seed=4, download=False)
    assert a.train.images.shape == (500, 1, 28, 28) and a.test.images.shape == (200, 1, 28, 28)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.images, c.train.images)


@pytest.mark.parametrize("layout", ["flat", "flat-gz", "torchvision"])
def test_fashion_mnist_from_root(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    directory = tmp_path / "FashionMNIST" / "raw" if layout == "torchvision" else tmp_path
    arrays = write_fake_mnist_files(directory, compress=layout == "flat-gz")
    d = load_dataset("fashion_mnist", root=str(tmp_path), download=False)
    assert torch.equal(d.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(d.test.labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert d.train.labels.dtype == torch.int64


def test_fashion_mnist_missing_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", root=str(tmp_path), download=False)
    message = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in message and "data.root" in message
    assert "internet" in message and "\n" not in message


def test_fashion_mnist_failed_download(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "absent")

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", offline)
    with pytest.raises(DataError, match="download failed.*no network.*apt-get.*data.root"):
        load_dataset("fashion_mnist", root=str(tmp_path), download=True)


def test_idx_reader_rejects_truncated_and_foreign_files(tmp_path):
    write_idx(tmp_path / "ok", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    assert read_idx(tmp_path / "ok").shape == (2, 3, 4)
    (tmp_path / "short").write_bytes((tmp_path / "ok").read_bytes()[:-1])
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "junk")


# --- load_dataset contract ----------------------------------------------------------------------


def test_unknown_dataset_lists_the_names():
    with pytest.raises(ConfigError) as info:
        load_dataset("imagenet")
    assert "imagenet" in str(info.value)
    assert all(f"'{name}'" in str(info.value) for name in DATASETS)


def test_unknown_option_lists_the_valid_ones():
    assert set(dataset_options("shapes")) == {"num_train", "num_test", "dataset_seed"}
    with pytest.raises(ConfigError, match="'colours'.*'dataset_seed'"):
        load_dataset("shapes", colours=3)
    with pytest.raises(ConfigError, match="takes no options"):
        load_dataset("digits", label_attr="x")


@pytest.mark.parametrize("bad", [0, -1, 1439, 2.5, True])
def test_bad_subset_sizes(bad):
    with pytest.raises(ConfigError, match="train_subset"):
        load_dataset("digits", train_subset=bad)


def test_subsets_are_seeded_and_keep_factors_aligned():
    full = load_dataset("shapes", **SMALL_SHAPES)
    a = load_dataset("shapes", train_subset=50, test_subset=20, seed=1, **SMALL_SHAPES)
    b = load_dataset("shapes", train_subset=50, test_subset=20, seed=1, **SMALL_SHAPES)
    c = load_dataset("shapes", train_subset=50, seed=2, **SMALL_SHAPES)
    assert len(a.train) == 50 and len(a.test) == 20 and len(c.test) == 100
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.images, c.train.images)
    # Each kept image still carries its own label and factors.
    for i in range(50):
        j = int(torch.nonzero((full.train.images == a.train.images[i]).flatten(1).all(1))[0])
        assert full.train.labels[j] == a.train.labels[i]
        assert full.train.factors["hue"][j] == a.train.factors["hue"][i]


def test_resize_is_antialiased_uint8():
    constant = torch.full((3, 1, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(constant, 20), torch.full((3, 1, 20, 20), 77, dtype=torch.uint8))
    native = load_dataset("digits")
    for size in (4, 16, 28):
        resized = load_dataset("digits", image_size=size)
        assert resized.train.images.dtype == torch.uint8 and resized.image_size == size
        # Bilinear resizing with antialiasing preserves the mean grey level.
        assert abs(resized.train.images.float().mean() - native.train.images.float().mean()) < 3
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("digits", image_size=0)
