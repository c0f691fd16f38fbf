"""Bad input to the loaders and to genssl-report: one paragraph naming the path or key, nothing on disk changed.

Every dataset here is a handful of images written into ``tmp_path`` in the on-disk format its loader
reads (tiny IDX files for Fashion-MNIST and MNIST), every run a hand-written ``metrics.json``; most
cases call the loader or the collector in this process, one per group goes through the console script.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from test_data_datasets import write_fake_mnist_files, write_idx
from test_data_torchvision import write_celeba, write_stl10

from genssl.cli import report as report_cli
from genssl.data import datasets as datasets_module
from genssl.data import fashion_mnist, load_dataset
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import DataError
from genssl.report.collect import load_run

FASHION_STEMS = fashion_mnist._ALL_STEMS


def snapshot(root: Path) -> dict[str, str]:
    """Every path below ``root`` with the SHA-256 of its content (``<dir>`` for folders)."""
    result = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        result[key] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def one_paragraph(err: BaseException, *fragments: str) -> str:
    message = str(err)
    assert "\n" not in message and message.strip() == message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture
def system_copy(tmp_path, monkeypatch) -> Path:
    """A complete "system" Fashion-MNIST (the Debian copy) that a user's data.root must never fall back to."""
    directory = tmp_path / "system-fashion-mnist"
    write_fake_mnist_files(directory, n_train=8, n_test=4, compress=True, seed=7)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", directory)
    return directory


@pytest.fixture
def no_download(monkeypatch) -> list:
    """Record any attempt to download through torchvision (there must be none) instead of going online."""
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append((args, kwargs))
        raise RuntimeError("no network in the tests")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", refuse)
    for name in ("MNIST", "CIFAR10", "STL10"):
        monkeypatch.setattr(f"torchvision.datasets.{name}.download", refuse)
    return calls


# --- 1. data.root is the only place looked at -------------------------------------------------------


@pytest.mark.parametrize("download", [False, True])
def test_missing_root_is_an_error_not_the_system_copy(tmp_path, system_copy, no_download, download):
    root = tmp_path / "typo" / "fashion"
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", root=str(root), download=download)
    one_paragraph(info.value, f"data.root={root}", "does not exist", *FASHION_STEMS, str(root / "FashionMNIST" / "raw"))
    assert str(system_copy) not in str(info.value).split("apt-get")[0]  # named only as the data.root=null option
    assert len(no_download) == download  # a download into the user's root is tried only when allowed
    assert snapshot(tmp_path) == before


def test_empty_root_says_it_is_empty(tmp_path, system_copy):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", root=str(root), download=False)
    one_paragraph(info.value, f"data.root={root}", f"{root} is empty", "data.download=true")
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_half_filled_root_names_what_is_missing(tmp_path, system_copy, no_download, layout):
    root = tmp_path / "data"
    directory = root / "FashionMNIST" / "raw" if layout == "torchvision" else root
    write_fake_mnist_files(directory)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (directory / stem).unlink()
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", root=str(root), download=True)
    message = one_paragraph(info.value, f"data.root={root}", "incomplete", str(directory))
    found, lacking = message.split("lacks")
    assert "train-images-idx3-ubyte" in found and "t10k-images-idx3-ubyte" in lacking
    assert "t10k-labels-idx1-ubyte" in lacking
    assert no_download == []  # nothing is downloaded over the user's files
    assert snapshot(tmp_path) == before


def test_truncated_idx_file_is_named(tmp_path, system_copy):
    write_fake_mnist_files(tmp_path / "data")
    labels = tmp_path / "data" / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-3])
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", root=str(tmp_path / "data"), download=False)
    one_paragraph(info.value, str(labels), "truncated")
    assert snapshot(tmp_path) == before


def test_corrupt_gzip_is_named(tmp_path, system_copy):
    write_fake_mnist_files(tmp_path / "data", compress=True)
    images = tmp_path / "data" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:40])  # cut inside the deflate stream
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", root=str(tmp_path / "data"), download=False)
    one_paragraph(info.value, str(images), "truncated or corrupt")


def test_root_null_keeps_the_system_copy(system_copy):
    d = load_dataset("fashion_mnist", root=None, download=False)
    assert d.train.images.shape == (8, 1, 28, 28) and d.test.images.shape == (4, 1, 28, 28)


def test_mnist_half_filled_root_is_not_downloaded_over(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_fake_mnist_files(raw)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=str(tmp_path), download=True)
    message = one_paragraph(info.value, f"data.root={tmp_path}", "incomplete", str(raw))
    assert "t10k-labels-idx1-ubyte" in message.split("lacks")[1]
    assert no_download == [] and snapshot(tmp_path) == before


def test_mnist_truncated_file_says_corrupt(tmp_path, no_download):
    raw = tmp_path / "MNIST" / "raw"
    write_fake_mnist_files(raw)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100])
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=str(tmp_path), download=True)
    one_paragraph(info.value, f"data.root={tmp_path}", "truncated or corrupt", str(raw))
    assert no_download == [] and snapshot(tmp_path) == before


def test_cifar10_missing_root_names_the_layout(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", root=str(root), download=False)
    one_paragraph(info.value, f"data.root={root}", "does not exist", "data_batch_1", "cifar-10-batches-py")
    assert not root.exists()


def test_stl10_half_filled_root(tmp_path, no_download):
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").unlink()
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("stl10", root=str(tmp_path), download=True)
    message = one_paragraph(info.value, "incomplete", str(tmp_path / "stl10_binary"))
    assert "unlabeled_X.bin" in message.split("lacks")[1]
    assert no_download == [] and snapshot(tmp_path) == before


def test_celeba_missing_jpeg_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.celeba.check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    write_celeba(tmp_path)
    missing = tmp_path / "celeba" / "img_align_celeba" / "000002.jpg"
    missing.unlink()
    with pytest.raises(DataError) as info:
        load_dataset("celeba", root=str(tmp_path), download=False, cache=False)
    one_paragraph(info.value, str(missing), "cannot be read")


# --- 2. labels are checked at load -----------------------------------------------------------------


def test_fashion_label_out_of_range_names_split_and_value(tmp_path, system_copy):
    arrays = write_fake_mnist_files(tmp_path / "data")
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[3] = 12  # a value a half-written or foreign label file can hold
    write_idx(tmp_path / "data" / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", root=str(tmp_path / "data"), download=False)
    one_paragraph(info.value, "'fashion_mnist'", "train split", "label 12 at index 3", "0 to 9", str(tmp_path / "data"))


def test_mnist_label_out_of_range_in_the_test_split(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    arrays = write_fake_mnist_files(raw)
    labels = arrays["t10k-labels-idx1-ubyte"].copy()
    labels[-1] = 10
    write_idx(raw / "t10k-labels-idx1-ubyte", labels)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root=str(tmp_path), download=False)
    one_paragraph(info.value, "'mnist'", "test split", f"label 10 at index {len(labels) - 1}")


def _own_dataset(train_labels: torch.Tensor, test_labels: torch.Tensor, n_train: int = 6) -> ImageDataset:
    images = torch.zeros(n_train, 1, 8, 8, dtype=torch.uint8)
    return ImageDataset(
        "digits",
        ImageSplit(images, train_labels),
        ImageSplit(torch.zeros(len(test_labels), 1, 8, 8, dtype=torch.uint8), test_labels),
        3,
        ["a", "b", "c"],
    )


@pytest.mark.parametrize(
    ("train", "test", "fragments"),
    [
        (torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, -1]), ("test split", "label -1 at index 1", "0 to 2")),
        (torch.tensor([0, 1, 2, 0, 1, 3]), torch.tensor([0, 1]), ("train split", "label 3 at index 5")),
        (torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1]), ("train split", "6 images", "labels of shape (5,)")),
        (torch.tensor([0.0, 1.0, 2.5, 0.0, 1.0, 2.0]), torch.tensor([0, 1]), ("train split", "2.5", "not an integer")),
    ],
    ids=["negative", "too-large", "length", "fractional"],
)
def test_own_data_with_bad_labels(monkeypatch, train, test, fragments):
    monkeypatch.setitem(datasets_module._LOADERS, "digits", lambda **kwargs: _own_dataset(train, test))
    with pytest.raises(DataError) as info:
        load_dataset("digits", long_tail=2)  # the check comes before anything indexes by label
    one_paragraph(info.value, "'digits'", *fragments)


# --- 3. metrics.json follows the contract ----------------------------------------------------------

GOOD_METRICS = {
    "method": "simclr",
    "data": "shapes",
    "seed": 0,
    "content": {"linear": 0.8, "knn": 0.75, "mlp": 0.81, "gmm_acc": 0.5, "nmi": 0.4, "ari": -0.01},
    "style": {"scale": {"metric": "r2", "linear": -0.2, "mlp": 0.3}, "flip": {"metric": "acc", "skipped": "one class"}},
    "style_mean": 0.3,
    "rank_me": 12.5,
    "train": {"epochs": 2, "steps": 20, "seconds": 3.5, "wall_seconds": 4.0, "samples_per_s": 900.0},
    "baseline": {"content": {"linear": 0.7, "knn": None}, "style": {}, "style_mean": None, "rank_me": 3.0},
}


def write_metrics(run_dir: Path, metrics: object) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = metrics if isinstance(metrics, str) else json.dumps(metrics)
    (run_dir / "metrics.json").write_text(text)
    return run_dir


def with_value(key: str, value: object) -> dict:
    """GOOD_METRICS with the dotted ``key`` set to ``value``."""
    metrics = json.loads(json.dumps(GOOD_METRICS))
    *parents, last = key.split(".")
    block = metrics
    for part in parents:
        block = block[part]
    block[last] = value
    return metrics


def test_good_metrics_with_nulls_and_nan_load(tmp_path):
    metrics = with_value("content.nmi", float("nan"))  # Python's json writes NaN for a score it could not compute
    run = load_run(write_metrics(tmp_path / "run", metrics))
    assert run.content["linear"] == 0.8 and "nmi" not in run.content and run.baseline["content"] == {"linear": 0.7}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("content.linear", "high", "a number from 0 to 1"),
        ("content", [0.8, 0.7], "an object of content scores"),
        ("content.knn", 1.5, "a number from 0 to 1"),
        ("content.ari", -3, "a number from -1 to 1"),
        ("content.linear", float("inf"), "a number from 0 to 1"),
        ("content.mlp", True, "a number from 0 to 1"),
        ("style", ["scale"], "an object of style factors"),
        ("style.scale", 0.3, '"metric"'),
        ("style.scale.metric", "mse", "'r2'"),
        ("style.scale.mlp", 1.7, "at most 1"),
        ("style.flip.linear", -0.1, "from 0 to 1"),
        ("style_mean", "0.3", "at most 1"),
        ("rank_me", -1, "at least 0"),
        ("train", [2, 20], "an object"),
        ("train.epochs", -1, "a non-negative integer"),
        ("train.samples_per_s", "fast", "at least 0"),
        ("baseline", "none", "an object"),
        ("baseline.content.knn", 2, "a number from 0 to 1"),
        ("baseline.style", {"scale": {"metric": "r2", "linear": "x"}}, None),
        ("method", ["simclr"], "a name"),
        ("seed", 0.5, "an integer"),
    ],
)
def test_metrics_with_wrong_types_name_file_key_and_value(tmp_path, key, value, expected):
    path = write_metrics(tmp_path / "run", with_value(key, value)) / "metrics.json"
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_run(path.parent)
    shown_key = "baseline.style.scale.linear" if key == "baseline.style" else key
    message = one_paragraph(info.value, str(path), f"'{shown_key}'", "genssl-eval run_dir=")
    if expected:
        assert expected in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("text", ["{not json", '{"method": "simclr", "content": {"linear": 0.8', "\x00\x01binary"])
def test_corrupt_metrics_json(tmp_path, text):
    path = write_metrics(tmp_path / "run", text) / "metrics.json"
    with pytest.raises(DataError) as info:
        load_run(path.parent)
    one_paragraph(info.value, str(path), "not valid JSON")


def assert_exit_2(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("genssl: error:") and "\n" not in message and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_console_script_refuses_bad_metrics_and_writes_nothing(tmp_path):
    good = write_metrics(tmp_path / "runs" / "good", GOOD_METRICS)
    bad = write_metrics(tmp_path / "runs" / "bad", with_value("content", {"linear": "high"}))
    out = tmp_path / "report"
    before = snapshot(tmp_path)
    result = run_cli("genssl-report", f"runs=[{good},{bad}]", f"out={out}", "embedding=none", "progress=false")
    assert_exit_2(result, str(bad / "metrics.json"), "'content.linear'", '"high"')
    assert snapshot(tmp_path) == before and not out.exists()


# --- 4. genssl-report and the file system -----------------------------------------------------------


def report_main(monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    monkeypatch.setattr("sys.argv", ["genssl-report", "progress=false", "embedding=none", *args])
    try:
        report_cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


@pytest.fixture
def one_run(tmp_path) -> Path:
    return write_metrics(tmp_path / "runs" / "0", GOOD_METRICS)


def test_stale_staging_folders_are_removed_and_live_ones_kept(tmp_path, one_run, monkeypatch, capsys):
    out = tmp_path / "site" / "report"
    out.parent.mkdir()
    killed = out.parent / ".report.staging-killed1"
    (killed / "sub").mkdir(parents=True)
    (killed / "shapes-training-curves.png").write_bytes(b"half a png")
    old = time.time() - 60
    os.utime(killed, (old, old))
    live = out.parent / ".report.staging-live"
    live.mkdir()
    os.utime(live, (old, old))
    other = out.parent / ".other.staging-abc"  # another out's folder: not ours to touch
    other.mkdir()
    os.utime(other, (old, old))
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a report building right now
    try:
        result = report_main(monkeypatch, capsys, f"runs=[{one_run}]", f"out={out}")
    finally:
        os.close(holder)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == [".other.staging-abc", ".report.staging-live", "report"]
    assert (out / "report.html").is_file()


def test_out_is_a_file(tmp_path, one_run, monkeypatch, capsys):
    out = tmp_path / "report.html"
    out.write_text("my page")
    before = snapshot(tmp_path)
    assert_exit_2(report_main(monkeypatch, capsys, f"runs=[{one_run}]", f"out={out}"), f"out={out}", "is a file")
    assert snapshot(tmp_path) == before


def test_unwritable_parent(tmp_path, one_run, monkeypatch, capsys):
    parent = tmp_path / "locked"
    parent.mkdir()
    real_access = os.access
    # Tests may run as root, for whom chmod does not take writing away: the check is what is tested.
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != parent and real_access(path, mode))
    before = snapshot(tmp_path)
    result = report_main(monkeypatch, capsys, f"runs=[{one_run}]", f"out={parent / 'a' / 'report'}")
    assert_exit_2(result, f"out={parent / 'a' / 'report'}", f"{parent} is not writable")
    assert snapshot(tmp_path) == before


def test_permission_denied_while_creating_the_staging_folder(tmp_path, one_run, monkeypatch, capsys):
    out = tmp_path / "report"

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out.parent))

    monkeypatch.setattr("tempfile.mkdtemp", denied)
    result = report_main(monkeypatch, capsys, f"runs=[{one_run}]", f"out={out}")
    assert_exit_2(result, f"out={out}", "Permission denied", "intact")
    assert not out.exists()


def test_full_disk_leaves_the_old_report_intact(tmp_path, one_run, monkeypatch, capsys):
    out = tmp_path / "report"
    first = report_main(monkeypatch, capsys, f"runs=[{one_run}]", f"out={out}")
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path)

    def disk_full(fig, path):  # every figure is saved through figures._save
        import matplotlib.pyplot as plt

        plt.close(fig)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("genssl.report.figures._save", disk_full)
    result = report_main(monkeypatch, capsys, f"runs=[{one_run}]", f"out={out}")
    message = result.stderr
    assert_exit_2(result, f"out={out}", "No space left on device", f"at {out}/", "free some space", "intact")
    assert ".staging-" not in message  # the file is named as it would be in out
    assert snapshot(tmp_path) == before  # the old report as it was, no staging folder left
