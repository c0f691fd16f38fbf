"""data.styled: grey datasets in colour with random hue, position and scale as ground-truth factors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, run_cli
from omegaconf import OmegaConf

from genssl.data import STYLE_KINDS, STYLE_RANGES, ImageDataset, ImageSplit, apply_style, load_dataset, style_split
from genssl.data.colour import rgb_to_hsv
from genssl.data.styled import draw_style, render_style, style_grid
from genssl.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"


@pytest.fixture(scope="module")
def styled_digits() -> ImageDataset:
    return load_dataset("digits", image_size=28, styled=True)


@pytest.fixture(scope="module")
def grey_digits() -> ImageDataset:
    return load_dataset("digits", image_size=28)


def test_layout_kinds_and_ranges(styled_digits, grey_digits):
    d = styled_digits
    assert d.channels == 3 and d.image_size == 28
    assert d.train.images.dtype == torch.uint8 and len(d.train) == len(grey_digits.train)
    assert (
        d.factor_kinds
        == STYLE_KINDS
        == {"hue": "continuous", "pos_x": "continuous", "pos_y": "continuous", "scale": "continuous"}
    )
    for split in (d.train, d.test):
        for name, (low, high) in STYLE_RANGES.items():
            values = split.factors[name]
            assert values.dtype == torch.float32 and values.shape == (len(split),)
            assert low <= values.min() and values.max() <= high
            # Uniform draws cover the range (1,438 / 359 draws leave no big gap at either end).
            assert values.min() < low + 0.05 * (high - low) and values.max() > high - 0.05 * (high - low)
    torch.testing.assert_close(d.train.labels, grey_digits.train.labels)
    # The frame never leaves the canvas: |pos - 1/2| + scale/2 <= 1/2 at the range corners.
    assert max(abs(v - 0.5) for v in STYLE_RANGES["pos_x"]) + STYLE_RANGES["scale"][1] / 2 <= 0.5


def test_deterministic_streams_and_independent_of_the_run_seed(styled_digits):
    again = load_dataset("digits", image_size=28, styled=True, seed=7)
    assert torch.equal(again.train.images, styled_digits.train.images)
    for name in STYLE_RANGES:
        assert torch.equal(again.test.factors[name], styled_digits.test.factors[name])
    train, test = draw_style(300, 0, 0), draw_style(300, 0, 1)
    assert not torch.equal(train["hue"], test["hue"])
    assert not torch.equal(draw_style(300, 1, 0)["hue"], train["hue"])
    # A subset keeps each image's style: find every subset image in the full split by its hue.
    subset = load_dataset("digits", image_size=28, styled=True, seed=3, train_subset=200)
    full_hue = styled_digits.train.factors["hue"]
    index = (subset.train.factors["hue"].view(-1, 1) == full_hue.view(1, -1)).float().argmax(1)
    assert torch.equal(full_hue[index], subset.train.factors["hue"])
    assert torch.equal(styled_digits.train.images[index], subset.train.images)
    assert torch.equal(styled_digits.train.labels[index], subset.train.labels)


def test_grid_is_the_affine_grid_of_the_style_map():
    factors = draw_style(16, 0, 0)
    s, cx, cy = factors["scale"], 2 * factors["pos_x"] - 1, 2 * factors["pos_y"] - 1
    theta = torch.zeros(16, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, 0, 2], theta[:, 1, 2] = -cx / s, -cy / s
    expected = F.affine_grid(theta, [16, 1, 20, 24], align_corners=False)
    torch.testing.assert_close(style_grid(factors, 20, 24), expected, atol=1e-5, rtol=0)


def test_hue_of_the_brightest_pixels_is_the_recorded_hue(styled_digits):
    images = styled_digits.test.images.float() / 255.0
    value = images.max(dim=1).values.flatten(1)  # [N, H*W]
    brightest = value.argmax(dim=1)
    pixels = images.flatten(2)[torch.arange(len(images)), :, brightest]  # [N, 3]
    hue = rgb_to_hsv(pixels.view(-1, 3, 1, 1)).view(-1, 3)[:, 0]
    error = (hue - styled_digits.test.factors["hue"]).abs()
    error = torch.minimum(error, 1 - error)  # hue is circular
    assert error.max() < 0.01


def _centre_of_mass(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, H, W] -> centre of mass (x from the left, y from the top) as fractions of the side."""
    size = grey.shape[-1]
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    mass = grey.sum((1, 2))
    return (grey.sum(1) * coords).sum(1) / mass, (grey.sum(2) * coords).sum(1) / mass


def test_position_and_scale_are_visible(styled_digits, grey_digits):
    original = grey_digits.test.images[:, 0].float()
    # A saturated colour has max(r, g, b) = 1, so the channel maximum is the styled grey level.
    styled = styled_digits.test.images.float().max(dim=1).values
    f = styled_digits.test.factors
    ox, oy = _centre_of_mass(original)
    sx, sy = _centre_of_mass(styled)
    # The content frame is shrunk by `scale` and centred at `pos`: x' = pos + scale · (x − 1/2).
    pixel = 1 / 28
    assert (sx - (f["pos_x"] + f["scale"] * (ox - 0.5))).abs().max() < 0.25 * pixel
    assert (sy - (f["pos_y"] + f["scale"] * (oy - 0.5))).abs().max() < 0.25 * pixel
    # Ink (summed grey level, proportional to the foreground area) scales with scale².
    ratio = styled.sum((1, 2)) / original.sum((1, 2))
    assert ((ratio / f["scale"] ** 2) - 1).abs().max() < 0.03
    # And the factors really move things: correlations far from zero.
    assert torch.corrcoef(torch.stack((sx, f["pos_x"])))[0, 1] > 0.8
    assert torch.corrcoef(torch.stack((ratio, f["scale"])))[0, 1] > 0.95


def test_style_split_and_apply_style_match_load_dataset(styled_digits, grey_digits):
    assert torch.equal(apply_style(grey_digits).test.images, styled_digits.test.images)
    split = style_split(grey_digits.test, seed=0, stream=1)
    assert torch.equal(split.images, styled_digits.test.images)
    rendered = render_style(grey_digits.test.images[:5], {k: v[:5] for k, v in split.factors.items()})
    assert torch.equal(rendered, split.images[:5])


def test_colour_datasets_refuse_styling():
    for name in ("shapes", "cifar10", "celeba", "stl10"):
        with pytest.raises(ConfigError, match=f"'{name}'.*3 channels") as info:
            # cifar10 & co. fail before looking for data that is not on this machine.
            load_dataset(name, root="/nonexistent", download=False, styled=True)
        assert "grey" in str(info.value) and "data.styled=false" in str(info.value)
    colour = ImageSplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="'mine' has 3 channels"):
        apply_style(ImageDataset("mine", colour, colour, 1, ["a"]))
    with pytest.raises(ConfigError, match="data.styled must be true or false"):
        load_dataset("digits", styled="yes")


def test_every_data_config_has_styled_false():
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert OmegaConf.load(path).styled is False, path.name


def test_cli_trains_and_evaluates_on_styled_digits(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "genssl-train",
        "method=simvae",
        "data=digits",
        "data.styled=true",
        "data.train_subset=256",
        "data.test_subset=128",
        "trainer.batch_size=32",
        "trainer.max_epochs=1",
        *TINY,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"] == "digits" and 0.0 <= metrics["content"]["linear"] <= 1.0
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert config.data.styled is True
    # The encoder was built for the 3-channel images the data actually has.
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["method"]
    assert state["objective.guide.encoder.features.0.weight"].shape[1] == 3
    assert state["objective.model.decoder.body.4.weight"].shape[1] == 3


def test_cli_error_for_a_colour_dataset(tmp_path):
    result = run_cli(
        "genssl-train", "method=simclr", "data=shapes", "data.styled=true", *TINY, f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "data.styled=true applies to grey" in result.stderr and "'shapes'" in result.stderr
