"""configs/data: every dataset config composes under ``data`` with its augmentation preset."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from genssl.data import DATASETS, build_augment, dataset_options

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(p.stem for p in (CONFIGS / "data" / "augment").glob("*.yaml"))
KEYS = {
    "augment",
    "styled",
    "name",
    "root",
    "download",
    "train_subset",
    "test_subset",
    "long_tail",
    "image_size",
    "channels",
    "num_views",
    "likelihood",
    "encoder",
    "options",
}


@pytest.fixture(scope="module")
def primary(tmp_path_factory) -> Path:
    """A throwaway primary config that finds configs/data through Hydra's search path."""
    directory = tmp_path_factory.mktemp("primary")
    (directory / "config.yaml").write_text(
        f"defaults:\n  - data: fashion_mnist\n  - _self_\nhydra:\n  searchpath:\n    - file://{CONFIGS}\nseed: 0\n"
    )
    return directory


def composed(primary: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(primary), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_every_dataset_has_a_config():
    assert sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml")) == sorted(DATASETS)
    assert set(PRESETS) == {"none", "grey", "fashion", "colour", "shapes"}


@pytest.mark.parametrize("name", DATASETS)
def test_data_config_composes(primary, name):
    cfg = composed(primary, f"data={name}")
    data = cfg.data
    assert set(data) == KEYS and data.name == name
    assert data.likelihood == ("bernoulli" if data.channels == 1 else "gaussian")
    assert data.encoder in {"mlp", "conv", "resnet18"}
    assert set(data.options) <= set(dataset_options(name))
    augment = build_augment(data.augment, data.num_views, data.image_size)
    assert augment.num_views == 2 and augment.image_size == data.image_size


def test_augment_preset_override_from_the_command_line(primary):
    default = composed(primary)
    assert default.data.augment.crop.scale == [0.6, 1.0] and default.data.augment.hflip == 0.5
    assert composed(primary, "data=mnist").data.augment.crop.scale == [0.4, 1.0]
    cfg = composed(primary, "data/augment=none")
    assert OmegaConf.to_container(cfg.data.augment) == {
        "crop": None,
        "hflip": 0.0,
        "vflip": 0.0,
        "rotation": None,
        "color_jitter": None,
        "grayscale": 0.0,
        "blur": None,
    }
    assert build_augment(cfg.data.augment, 2, 28).geometric is False
    colour = composed(primary, "data=cifar10")
    assert colour.data.augment.color_jitter.brightness == 0.8 and colour.data.augment.grayscale == 0.2


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_list_every_option(preset):
    cfg = OmegaConf.load(CONFIGS / "data" / "augment" / f"{preset}.yaml")
    assert set(cfg) == {"crop", "hflip", "vflip", "rotation", "color_jitter", "grayscale", "blur"}
    build_augment(cfg, 2, 32)
