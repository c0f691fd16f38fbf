"""Batched multi-view augmentation: shapes, ranges, reproducibility, and agreement with torchvision."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms import InterpolationMode

from genssl.data import MultiViewAugment, build_augment, colour
from genssl.data.shapes import load_shapes
from genssl.errors import ConfigError, ShapeError

FULL = dict(
    crop={"scale": [0.3, 1.0], "ratio": [0.75, 4 / 3]},
    hflip=0.5,
    vflip=0.5,
    rotation={"p": 0.5, "degrees": 20},
    color_jitter={"p": 0.8, "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2},
    grayscale=0.2,
    blur={"p": 0.5, "sigma": [0.1, 2.0]},
)
ALL_PARAMS = {
    "crop_scale",
    "crop_aspect",
    "crop_x",
    "crop_y",
    "hflip",
    "vflip",
    "rotation",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "grayscale",
    "blur_sigma",
}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return load_shapes(num_train=16, num_test=1).train.images  # uint8 [16, 3, 32, 32]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_dtype_range_and_recorded_params(images):
    views, params = MultiViewAugment(3, 32, **FULL)(images, gen(0))
    assert views.shape == (16, 3, 3, 32, 32) and views.dtype == torch.float32
    assert 0.0 <= views.min() and views.max() <= 1.0
    assert set(params) == ALL_PARAMS
    for value in params.values():
        assert value.shape == (16, 3) and value.dtype == torch.float32
    area, aspect = params["crop_scale"], params["crop_aspect"]
    assert (area >= 0.3 - 1e-5).all() and (area <= 1 + 1e-5).all()
    assert (aspect >= 0.75 - 1e-5).all() and (aspect <= 4 / 3 + 1e-5).all()
    # The crop box lies inside the image.
    width, height = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
    for centre, extent in ((params["crop_x"], width), (params["crop_y"], height)):
        assert (centre - extent / 2 >= -1e-5).all() and (centre + extent / 2 <= 1 + 1e-5).all()
    for flag in ("hflip", "vflip", "grayscale"):
        assert set(params[flag].unique().tolist()) <= {0.0, 1.0}
    assert params["rotation"].abs().max() <= 20
    for name in ("brightness", "contrast", "saturation"):
        assert (params[name] >= 0.2 - 1e-6).all() and (params[name] <= 1.8 + 1e-6).all()
    assert params["hue"].abs().max() <= 0.2
    assert (params["blur_sigma"] == 0).any() and params["blur_sigma"].max() <= 2.0


def test_same_seed_same_views_other_seed_other_views(images):
    augment = MultiViewAugment(2, 32, **FULL)
    a, pa = augment(images, gen(7))
    b, pb = augment(images, gen(7))
    c, _ = augment(images, gen(8))
    assert torch.equal(a, b) and all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(a, c)
    assert not torch.equal(a[:, 0], a[:, 1])  # the views of an image differ


def test_disabled_ops_copy_the_input(images):
    for augment in (MultiViewAugment(2, 32), build_augment({}, 2, 32), build_augment(None, 2, 32)):
        views, params = augment(images, gen(0))
        assert params == {}
        expected = images.float() / 255
        assert torch.equal(views[:, 0], expected) and torch.equal(views[:, 1], expected)
    floats = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    views, _ = MultiViewAugment(3, 28)(floats)
    assert views.dtype == torch.float32 and torch.equal(views[:, 2], floats.float())
    # A different output size is a plain antialiased resize.
    resized, _ = MultiViewAugment(1, 16)(images)
    assert resized.shape == (16, 1, 3, 16, 16)
    expected = torch.nn.functional.interpolate(images.float() / 255, size=16, mode="bilinear", antialias=True)
    assert torch.allclose(resized[:, 0], expected, atol=1e-6)


def test_flips_flip(images):
    x = images.float() / 255
    views, params = MultiViewAugment(2, 32, hflip=1.0)(images)
    assert (params["hflip"] == 1).all()
    for j in range(2):
        assert torch.allclose(views[:, j], x.flip(-1), atol=1e-6)
    views, _ = MultiViewAugment(1, 32, vflip=1.0)(images)
    assert torch.allclose(views[:, 0], x.flip(-2), atol=1e-6)
    views, params = MultiViewAugment(1, 32, hflip=0.5)(images, gen(3))
    flipped = params["hflip"][:, 0].bool()
    assert 0 < flipped.sum() < len(images)
    assert torch.allclose(views[flipped, 0], x[flipped].flip(-1), atol=1e-6)
    assert torch.allclose(views[~flipped, 0], x[~flipped], atol=1e-6)


def test_rotation_matches_torchvision(images):
    views, params = MultiViewAugment(2, 32, rotation={"p": 1.0, "degrees": 90})(images[:4], gen(0))
    x = images[:4].float() / 255
    for i in range(4):
        for j in range(2):
            angle = float(params["rotation"][i, j])
            ref = TF.rotate(x[i], angle, interpolation=InterpolationMode.BILINEAR)
            assert torch.allclose(views[i, j], ref, atol=1e-4), angle


def test_crop_matches_torchvision_resized_crop():
    # Smooth images: a box off by a pixel or two changes them clearly, rounding to whole pixels does not.
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=gen(0)), size=32, mode="bilinear")
    views, p = MultiViewAugment(1, 32, crop={"scale": [0.25, 0.5]})(x, gen(1))
    for i in range(4):
        area, aspect = float(p["crop_scale"][i, 0]), float(p["crop_aspect"][i, 0])
        w, h = (area * aspect) ** 0.5, (area / aspect) ** 0.5
        # An integer-aligned crop of about the same box looks about the same.
        left, top = round((float(p["crop_x"][i, 0]) - w / 2) * 32), round((float(p["crop_y"][i, 0]) - h / 2) * 32)
        ref = TF.resized_crop(
            x[i],
            top,
            left,
            round(h * 32),
            round(w * 32),
            [32, 32],
            interpolation=InterpolationMode.BILINEAR,
            antialias=False,
        )
        assert (views[i, 0] - ref).abs().mean() < 0.03


def test_grey_images_skip_colour_only_ops():
    grey = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    views, params = MultiViewAugment(2, 28, **FULL)(grey, gen(0))
    assert views.shape == (8, 2, 1, 28, 28)
    assert not {"saturation", "hue", "grayscale"} & set(params)
    assert {"brightness", "contrast"} <= set(params)


def test_colour_ops_match_torchvision():
    x = torch.rand(6, 3, 16, 16, generator=gen(0))
    f = 0.2 + 1.6 * torch.rand(6, generator=gen(1))
    shift = torch.rand(6, generator=gen(2)) - 0.5
    sigma = 0.1 + 2 * torch.rand(6, generator=gen(3))
    pairs = [
        (colour.adjust_brightness(x, f), lambda i: TF.adjust_brightness(x[i], float(f[i]))),
        (colour.adjust_contrast(x, f), lambda i: TF.adjust_contrast(x[i], float(f[i]))),
        (colour.adjust_saturation(x, f), lambda i: TF.adjust_saturation(x[i], float(f[i]))),
        (colour.adjust_hue(x, shift), lambda i: TF.adjust_hue(x[i], float(shift[i]))),
        (colour.gaussian_blur(x, sigma, 7), lambda i: TF.gaussian_blur(x[i], [7, 7], [float(sigma[i])] * 2)),
        (colour.to_greyscale(x, torch.ones(6, dtype=torch.bool)), lambda i: TF.rgb_to_grayscale(x[i], 3)),
    ]
    for ours, theirs in pairs:
        assert torch.allclose(ours, torch.stack([theirs(i) for i in range(6)]), atol=2e-4)
    assert torch.allclose(colour.hsv_to_rgb(colour.rgb_to_hsv(x)), x, atol=1e-5)
    assert torch.equal(colour.gaussian_blur(x, torch.zeros(6), 7), x)


def test_jitter_leaves_unselected_views_untouched(images):
    augment = MultiViewAugment(4, 32, color_jitter={"p": 0.5, "brightness": 0.5, "hue": 0.1})
    views, params = augment(images, gen(0))
    assert set(params) == {"brightness", "hue"}
    untouched = (params["brightness"] == 1) & (params["hue"] == 0)
    assert 0 < untouched.sum() < untouched.numel()
    x = (images.float() / 255).unsqueeze(1).expand_as(views)
    assert torch.equal(views[untouched], x[untouched])


@settings(max_examples=25, deadline=None)
@given(
    views=st.integers(1, 3),
    size=st.sampled_from([8, 16, 20]),
    channels=st.sampled_from([1, 3]),
    scale_low=st.floats(0.05, 1.0),
    ratio_low=st.floats(0.2, 1.0),
    ratio_high=st.floats(1.0, 5.0),
    p=st.floats(0.0, 1.0),
    degrees=st.floats(0.0, 180.0),
    strength=st.floats(0.0, 2.0),
    hue=st.floats(0.0, 0.5),
    sigma_high=st.floats(0.1, 5.0),
    uint8=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_output_always_valid(
    views, size, channels, scale_low, ratio_low, ratio_high, p, degrees, strength, hue, sigma_high, uint8, seed
):
    augment = MultiViewAugment(
        views,
        size,
        crop={"scale": [scale_low, 1.0], "ratio": [ratio_low, ratio_high]},
        hflip=p,
        vflip=p,
        rotation={"p": p, "degrees": degrees},
        color_jitter={"p": p, "brightness": strength, "contrast": strength, "saturation": strength, "hue": hue},
        grayscale=p,
        blur={"p": p, "sigma": [0.05, sigma_high]},
    )
    g = gen(seed)
    x = torch.rand(3, channels, 12, 12, generator=g)
    x = (x * 255).to(torch.uint8) if uint8 else x
    out, params = augment(x, g)
    assert out.shape == (3, views, channels, size, size) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    for value in params.values():
        assert value.shape == (3, views) and torch.isfinite(value).all()
    if "crop_scale" in params:
        assert (params["crop_scale"] <= 1 + 1e-5).all() and (params["crop_scale"] > 0).all()


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="num_views"):
        MultiViewAugment(0, 32)
    with pytest.raises(ConfigError, match="probability"):
        MultiViewAugment(2, 32, hflip=1.5)
    with pytest.raises(ConfigError, match="'scales'.*'ratio' or 'scale'"):
        MultiViewAugment(2, 32, crop={"scales": [0.1, 1]})
    with pytest.raises(ConfigError, match="crop.scale"):
        MultiViewAugment(2, 32, crop={"scale": [0.5, 1.5]})
    with pytest.raises(ConfigError, match="hue"):
        MultiViewAugment(2, 32, color_jitter={"hue": 0.7})
    with pytest.raises(ConfigError, match="kernel_size"):
        MultiViewAugment(2, 32, blur={"kernel_size": 4})
    with pytest.raises(ConfigError, match="'solarize'.*'blur'"):
        build_augment({"solarize": 0.2}, 2, 32)
    with pytest.raises(ShapeError, match="square"):
        MultiViewAugment(2, 32)(torch.zeros(2, 3, 32, 16))


def test_build_augment_accepts_omegaconf_and_nulls():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "crop": {"scale": [0.4, 1.0]},
            "hflip": 0.5,
            "vflip": None,
            "rotation": None,
            "color_jitter": None,
            "grayscale": 0.0,
            "blur": None,
        }
    )
    augment = build_augment(cfg, 2, 28)
    assert augment.crop == {"scale": (0.4, 1.0), "ratio": (0.75, 4 / 3)} and augment.vflip == 0.0
    _, params = augment(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert set(params) == {"crop_scale", "crop_aspect", "crop_x", "crop_y", "hflip"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cuda_generator(images):
    augment = MultiViewAugment(2, 32, **FULL)
    cuda = images.cuda()
    a, pa = augment(cuda, torch.Generator(device="cuda").manual_seed(0))
    b, _ = augment(cuda, torch.Generator(device="cuda").manual_seed(0))
    assert a.is_cuda and all(v.is_cuda for v in pa.values()) and torch.equal(a, b)
    with pytest.raises(ConfigError, match="Generator"):
        augment(cuda, gen(0))
