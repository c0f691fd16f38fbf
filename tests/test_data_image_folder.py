"""image_folder: LazyImages decoding on access, BatchStream over DataLoader workers, distributed shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genssl.data import BatchStream, LazyImages, distributed_order, load_dataset
from genssl.data.datasets import dataset_options
from genssl.errors import ConfigError, DataError

CLASSES = ("ant", "bee", "cat")  # written out of order below: labels follow the sorted names
PER_CLASS = {"train": 6, "val": 4}
SIZE = 16


def write_tree(root: Path, seed: int = 0, splits: dict[str, int] = PER_CLASS) -> dict[str, list[tuple[Path, int]]]:
    """Random RGB PNGs of random sizes (some smaller than SIZE, some grey/palette) in ImageFolder layout."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[Path, int]]] = {}
    for split, count in splits.items():
        files = []
        for label, name in sorted(enumerate(CLASSES), key=lambda item: -item[0]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = (int(v) for v in rng.integers(9, 40, size=2))
                image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                if i == 1:
                    image = image.convert("L")
                elif i == 2:
                    image = image.convert("P")
                path = folder / f"{i:02d}.png"
                image.save(path)
                files.append((path, label))
        (root / split / CLASSES[0] / "notes.txt").write_text("not an image")
        written[split] = sorted(files, key=lambda item: (item[1], item[0].name))
    return written


def by_hand(path: Path, size: int = SIZE, mode: str = "RGB") -> torch.Tensor:
    """The documented rule: shorter side resized to size (PIL bilinear), centre crop; uint8 [C, S, S]."""
    image = Image.open(path).convert(mode)
    w, h = image.size
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    image = image.resize(new, Image.Resampling.BILINEAR)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    array = np.asarray(image.crop((left, top, left + size, top + size)))
    return torch.from_numpy(array.reshape(size, size, -1).copy()).permute(2, 0, 1)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    return root, write_tree(root)


@pytest.fixture(scope="module")
def dataset(tree):
    return load_dataset("image_folder", root=str(tree[0]), image_size=SIZE, num_workers=0)


def test_load_counts_labels_and_class_names(tree, dataset):
    _, files = tree
    assert dataset.class_names == sorted(CLASSES) and dataset.num_classes == 3
    assert len(dataset.train) == 18 and len(dataset.test) == 12
    assert dataset.channels == 3 and dataset.image_size == SIZE
    assert isinstance(dataset.train.images, LazyImages)
    assert dataset.train.images.shape == (18, 3, SIZE, SIZE) and dataset.train.images.dtype == torch.uint8
    assert dataset.train.labels.tolist() == [label for _, label in files["train"]]
    assert dataset.train.images.paths == [str(p) for p, _ in files["train"]]  # notes.txt skipped
    assert set(dataset_options("image_folder")) == {"train_dir", "test_dir", "channels", "num_workers", "threads"}


def test_indexing_decodes_by_the_documented_rule(tree, dataset):
    _, files = tree
    images = dataset.test.images
    expected = torch.stack([by_hand(p) for p, _ in files["val"]])
    assert torch.equal(images[:], expected)
    assert torch.equal(images[3], expected[3]) and torch.equal(images[-1], expected[-1])
    assert torch.equal(images[torch.tensor(5)], expected[5])
    assert torch.equal(images[2:9:3], expected[2:9:3])
    index = torch.tensor([7, 0, 7, 11])
    assert torch.equal(images[index], expected[index]) and torch.equal(images[[7, 0]], expected[[7, 0]])
    mask = torch.arange(12) % 5 == 0
    assert torch.equal(images[mask], expected[mask])
    assert images[torch.zeros(0, dtype=torch.long)].shape == (0, 3, SIZE, SIZE)
    with pytest.raises(IndexError):
        images[12]
    serial = LazyImages(images.paths, SIZE, threads=1)
    assert torch.equal(serial[index], expected[index])


def test_matches_torchvision_resize_and_centre_crop(tree, dataset):
    from torchvision.transforms import CenterCrop, Compose, PILToTensor, Resize

    _, files = tree
    transform = Compose([Resize(SIZE), CenterCrop(SIZE), PILToTensor()])
    expected = torch.stack([transform(Image.open(p).convert("RGB")) for p, _ in files["train"]])
    assert torch.equal(dataset.train.images[:], expected)


def test_grey_channels(tree):
    root, files = tree
    grey = load_dataset("image_folder", root=str(root), image_size=8, channels=1, num_workers=0)
    assert grey.channels == 1 and grey.train.images[[0, 4]].shape == (2, 1, 8, 8)
    assert torch.equal(grey.train.images[4], by_hand(files["train"][4][0], 8, "L"))


def test_to_device_stays_lazy(dataset, monkeypatch):
    import genssl.data.streaming as streaming

    calls = []
    real = streaming.decode_image
    monkeypatch.setattr(streaming, "decode_image", lambda *a: calls.append(a) or real(*a))
    moved = dataset.train.images.to(torch.device("cpu"))
    assert isinstance(moved, LazyImages) and not calls
    assert moved.to(torch.uint8) is moved and moved.contiguous() is moved
    with pytest.raises(TypeError):
        moved.to(torch.float32)
    meta = moved.to("meta")  # a device where nothing could be decoded to eagerly
    assert isinstance(meta, LazyImages) and meta.device.type == "meta" and not calls
    assert meta.shape == moved.shape and len(meta) == 18 and meta.size(1) == 3 and meta.dim() == 4
    assert meta[[1, 2]].device.type == "meta" and len(calls) == 2


def test_select_subsets_and_long_tail(tree, dataset):
    root, _ = tree
    chosen = dataset.train.select(torch.tensor([4, 0, 17]))
    assert isinstance(chosen.images, LazyImages) and len(chosen) == 3
    assert chosen.labels.tolist() == dataset.train.labels[[4, 0, 17]].tolist()
    assert torch.equal(chosen.images[:], dataset.train.images[[4, 0, 17]])
    sub = load_dataset("image_folder", root=str(root), image_size=SIZE, train_subset=5, test_subset=4, seed=3)
    assert isinstance(sub.train.images, LazyImages) and len(sub.train) == 5 and len(sub.test) == 4
    all_paths = dataset.train.images.paths
    positions = [all_paths.index(p) for p in sub.train.images.paths]
    assert positions == sorted(positions) and sub.train.labels.tolist() == dataset.train.labels[positions].tolist()
    tail = load_dataset("image_folder", root=str(root), image_size=SIZE, long_tail=3.0, seed=1)
    counts = sorted(tail.train.labels.bincount(minlength=3).tolist())
    assert counts == [2, 3, 6] and isinstance(tail.train.images, LazyImages)
    with pytest.raises(ConfigError, match="styled"):
        load_dataset("image_folder", root=str(root), image_size=SIZE, styled=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_batch_stream_yields_each_index_once_with_its_pixels(dataset, workers):
    images = dataset.train.images
    expected = images[:]
    order = torch.randperm(18, generator=torch.Generator().manual_seed(0))
    with BatchStream(images, order, 4, num_workers=workers, device="cpu") as stream:
        assert len(stream) == 4  # the ragged last batch is dropped
        seen = []
        for batch_index, batch in stream:
            assert batch.dtype == torch.uint8 and batch.shape == (4, 3, SIZE, SIZE)
            assert torch.equal(batch, expected[batch_index])
            seen.append(batch_index)
        assert torch.equal(torch.cat(seen), order[:16])
        # the next epoch on the same workers, resumed at its second batch, the ragged batch kept
        following = torch.randperm(18, generator=torch.Generator().manual_seed(1))
        got = [(i, b) for i, b in stream.set_order(following, start=1, drop_last=False)]
        assert torch.equal(torch.cat([i for i, _ in got]), following[4:])
        assert all(torch.equal(b, expected[i]) for i, b in got) and len(got[-1][0]) == 2


def test_batch_stream_over_a_tensor_and_in_order(dataset):
    expected = dataset.test.images[:]
    order = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    pairs = list(BatchStream(expected, order, 3))
    assert [i.tolist() for i, _ in pairs] == [[3, 1, 4], [1, 5, 9]]
    assert all(torch.equal(b, expected[i]) for i, b in pairs)
    chunks = [b for _, b in BatchStream.in_order(dataset.test.images, 5, num_workers=0)]
    assert [len(c) for c in chunks] == [5, 5, 2] and torch.equal(torch.cat(chunks), expected)


def test_distributed_order_shards():
    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    shards = [distributed_order(order, rank, 4) for rank in range(4)]
    assert {len(s) for s in shards} == {5}
    union = torch.cat(shards)
    assert len(set(union.tolist())) == 20 and set(union.tolist()) == set(order[:20].tolist())
    assert torch.equal(distributed_order(order, 0, 1), order)
    with pytest.raises(ConfigError):
        distributed_order(order, 4, 4)


def test_a_broken_file_is_named(tmp_path):
    write_tree(tmp_path, splits={"train": 2, "val": 1})
    broken = tmp_path / "train" / "bee" / "01.png"
    broken.write_bytes(b"not a png")
    images = load_dataset("image_folder", root=str(tmp_path), image_size=8).train.images
    for workers in (0, 1):
        with (
            pytest.raises(DataError, match="01.png"),
            BatchStream(images, torch.arange(6), 6, num_workers=workers) as s,
        ):
            list(s)


def test_bad_roots(tmp_path):
    with pytest.raises(DataError, match="needs data.root"):
        load_dataset("image_folder", image_size=8)
    with pytest.raises(DataError, match=r"is not a folder.*ImageFolder layout"):
        load_dataset("image_folder", root=str(tmp_path / "nowhere"), image_size=8)
    with pytest.raises(DataError, match=r"train is missing"):
        load_dataset("image_folder", root=str(tmp_path), image_size=8)
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_dataset("image_folder", root=str(tmp_path), image_size=8)
    (tmp_path / "train" / "ant").mkdir()
    with pytest.raises(DataError, match=r"train/ant hold no images"):
        load_dataset("image_folder", root=str(tmp_path), image_size=8)
    Image.new("RGB", (9, 12)).save(tmp_path / "train" / "ant" / "a.png")
    with pytest.raises(DataError, match=r"val holds no images"):
        load_dataset("image_folder", root=str(tmp_path), image_size=8)
    (tmp_path / "val" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        load_dataset("image_folder", root=str(tmp_path), image_size=8)
    (tmp_path / "val" / "zebra").rmdir()
    (tmp_path / "test" / "ant").mkdir(parents=True)
    Image.new("RGB", (12, 9)).save(tmp_path / "test" / "ant" / "b.png")
    with pytest.raises(DataError, match=r"val holds no images"):  # val exists, so it is the test split
        load_dataset("image_folder", root=str(tmp_path), image_size=8)
    ok = load_dataset("image_folder", root=str(tmp_path), image_size=8, test_dir="test")
    assert len(ok.train) == 1 and len(ok.test) == 1 and ok.class_names == ["ant"]


@pytest.mark.parametrize("workers", [0, 1])
def test_evaluation_streams_features_from_files(dataset, workers, monkeypatch):
    """Evaluation reads image files through the same stream as training: the features (and the augmented
    views' features and parameters) equal those of the decoded tensor."""
    from genssl.data.types import ImageSplit
    from genssl.eval.features import extract_features
    from genssl.eval.style_targets import augmented_view_targets

    lazy = dataset.train.images
    monkeypatch.setattr(lazy, "num_workers", workers)
    decoded = lazy[:]
    weight = torch.randn(3 * SIZE * SIZE, 5, generator=torch.Generator().manual_seed(0))

    def represent(x):
        return x.flatten(1) @ weight

    cpu = torch.device("cpu")
    assert torch.equal(extract_features(represent, lazy, cpu, 4, progress=False), represent(decoded.float() / 255))
    augment = {"crop": {"scale": [0.5, 1.0], "ratio": [0.75, 1.33]}, "hflip": 0.5}
    labels = dataset.train.labels
    streamed = augmented_view_targets(represent, ImageSplit(lazy, labels), augment, cpu, 3, 5, progress=False)
    in_memory = augmented_view_targets(represent, ImageSplit(decoded, labels), augment, cpu, 3, 5, progress=False)
    torch.testing.assert_close(streamed[0], in_memory[0])
    assert streamed[1].keys() == in_memory[1].keys()
    assert all(torch.equal(streamed[1][k], in_memory[1][k]) for k in streamed[1])
