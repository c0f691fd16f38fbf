"""Datasets: shapes, digits, Fashion-MNIST (real files and lookup), subsets, resizing, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from genssl.data import DATASETS, ImageDataset, dataset_from_config, dataset_options, fashion_mnist, load_dataset
from genssl.data.datasets import long_tail_counts, resize_images
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


# --- data.long_tail -----------------------------------------------------------------------------


def test_long_tail_counts_follow_the_seeded_class_order():
    full = load_dataset("digits")
    n_max = int(full.train.labels.bincount(minlength=10).min())
    d = load_dataset("digits", long_tail=10, seed=0)
    counts = d.train.labels.bincount(minlength=10)
    assert torch.equal(counts, torch.from_numpy(long_tail_counts(10, n_max, 10, seed=0)))
    assert counts.max() == n_max and counts.min() == round(n_max / 10)
    assert abs(counts.max() / counts.min() - 10) < 10 / counts.min()  # ≈ 10 within rounding
    # Decreasing along the seeded class order, head to tail.
    order = np.random.default_rng([0, 2]).permutation(10)
    assert (counts[order].diff() <= 0).all() and counts[order[0]] > counts[order[-1]]
    # Each kept image is one of the full split's, with its own label.
    kept = {bytes(x.numpy()): int(y) for x, y in zip(d.train.images, d.train.labels)}
    every = {bytes(x.numpy()): int(y) for x, y in zip(full.train.images, full.train.labels)}
    assert all(every[k] == y for k, y in kept.items())
    # The test split is untouched.
    assert torch.equal(d.test.images, full.test.images) and torch.equal(d.test.labels, full.test.labels)


def test_long_tail_is_seeded():
    a, b = load_dataset("digits", long_tail=10, seed=1), load_dataset("digits", long_tail=10, seed=1)
    c = load_dataset("digits", long_tail=10, seed=2)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    count_a, count_c = a.train.labels.bincount(minlength=10), c.train.labels.bincount(minlength=10)
    assert not torch.equal(count_a, count_c)  # another class order
    assert torch.equal(count_a.sort().values, count_c.sort().values)  # the same profile


def test_long_tail_ratio_one_is_balanced_and_composes_with_subset_and_style():
    full = load_dataset("digits")
    n_max = int(full.train.labels.bincount().min())
    balanced = load_dataset("digits", long_tail=1, seed=3)
    assert torch.equal(balanced.train.labels.bincount(), torch.full((10,), n_max))
    # train_subset is drawn from the long-tailed split.
    small = load_dataset("digits", long_tail=1.0, train_subset=100, seed=3)
    assert len(small.train) == 100 and len(small.test) == len(full.test)
    with pytest.raises(ConfigError, match="train_subset"):
        load_dataset("digits", long_tail=10, train_subset=len(full.train))
    # Styled: the same images and counts, each keeping the style it has in the full styled set.
    plain = load_dataset("digits", long_tail=5, seed=4)
    styled = load_dataset("digits", long_tail=5, seed=4, styled=True)
    everything = load_dataset("digits", styled=True)
    assert styled.channels == 3 and torch.equal(styled.train.labels, plain.train.labels)
    assert set(styled.train.factors) == set(everything.train.factors)
    flat = full.train.images.flatten(1)
    for i in range(0, len(plain.train), 7):
        same = torch.nonzero((flat == plain.train.images[i].flatten()).all(1)).flatten()
        assert any(all(everything.train.factors[k][j] == v[i] for k, v in styled.train.factors.items()) for j in same)


@pytest.mark.parametrize("bad", [0.5, 0, -2, "ten", True, float("nan"), float("inf"), [10], 1000])
def test_bad_long_tail_values(bad):
    with pytest.raises(ConfigError) as info:
        load_dataset("digits", long_tail=bad)
    message = str(info.value)
    assert "data.long_tail" in message and repr(bad) in message and "from 1 to" in message
    assert "\n" not in message


def test_long_tail_needs_two_classes(monkeypatch):
    from genssl.data import datasets

    real = datasets._LOADERS["digits"]

    def one_class(**kwargs):
        d = real()
        d.train.labels.zero_(), d.test.labels.zero_()
        d.num_classes, d.class_names = 1, ["0"]
        return d

    monkeypatch.setitem(datasets._LOADERS, "digits", one_class)
    with pytest.raises(ConfigError, match=r"data\.long_tail=10 .*at least two classes.*1 class"):
        load_dataset("digits", long_tail=10)


def test_dataset_from_config_honours_long_tail():
    data = {
        "name": "digits",
        "root": None,
        "train_subset": None,
        "test_subset": None,
        "download": False,
        "image_size": None,
        "styled": False,
        "long_tail": 10,
        "options": {},
    }
    cfg = OmegaConf.create({"seed": 5, "data": data})
    d = dataset_from_config(cfg)
    assert torch.equal(d.train.labels, load_dataset("digits", long_tail=10, seed=5).train.labels)
    del cfg.data.long_tail  # configs saved before the key load the whole split
    assert len(dataset_from_config(cfg).train) == len(load_dataset("digits").train)
