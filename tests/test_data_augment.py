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


# --- The batched fast path against the previous implementation -------------------------------
#
# A compact copy of the code path before the planar rewrite (affine_grid + grid_sample over every
# view, the jitter computed for all views and blended with torch.where, the HSV round trip for hue,
# a grouped convolution for blur). Same draws from the same generator in the same order, so the
# recorded parameters must be identical and the views equal to float round-off.


def _old_grey(x):
    return x if x.shape[1] == 1 else (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _old_hue(x, shift):
    hue, sat, val = colour.rgb_to_hsv(x).unbind(dim=1)
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    return colour.hsv_to_rgb(torch.stack((hue, sat, val), dim=1))


def _old_blur(x, sigma, kernel_size):
    n, c, h, w = x.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma.clamp(min=1e-6).view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    y = torch.nn.functional.pad(x.reshape(1, n * c, h, w), (radius, radius, 0, 0), mode="reflect")
    y = torch.nn.functional.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = torch.nn.functional.pad(y, (0, 0, radius, radius), mode="reflect")
    y = torch.nn.functional.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w).clamp(0.0, 1.0)


def _old_augment(aug, images, generator):
    """MultiViewAugment.forward as it was, from the module's validated options."""
    from genssl.data.augment import _sample_crop, to_unit_float

    F = torch.nn.functional
    b, c = images.shape[:2]
    j, size, rgb = aug.num_views, aug.image_size, images.shape[1] == 3
    n = b * j
    x = to_unit_float(images)
    x = x.unsqueeze(1).expand(b, j, *x.shape[1:]).reshape(-1, *x.shape[1:])

    class Draw:
        def rand(self, *extra):
            return torch.rand(n, *extra, generator=generator)

        def uniform(self, low, high, *extra):
            return low + (high - low) * self.rand(*extra)

        def bernoulli(self, p):
            return (self.rand() < p).float()

    draw, params = Draw(), {}
    if aug.geometric:
        one = torch.ones(n)
        width, height, cx, cy = one, one, 0.5 * one, 0.5 * one
        if aug.crop is not None:
            width, height, cx, cy = _sample_crop(draw, aug.crop["scale"], aug.crop["ratio"])
            params.update(crop_scale=width * height, crop_aspect=width / height, crop_x=cx, crop_y=cy)
        flip_x, flip_y = one, one
        if aug.hflip > 0:
            params["hflip"] = draw.bernoulli(aug.hflip)
            flip_x = 1.0 - 2.0 * params["hflip"]
        if aug.vflip > 0:
            params["vflip"] = draw.bernoulli(aug.vflip)
            flip_y = 1.0 - 2.0 * params["vflip"]
        angle = torch.zeros(n)
        if aug.rotation is not None:
            chosen = draw.bernoulli(aug.rotation["p"])
            angle = params["rotation"] = chosen * draw.uniform(-aug.rotation["degrees"], aug.rotation["degrees"])
        t = torch.deg2rad(angle)
        cos, sin = torch.cos(t), torch.sin(t)
        theta = torch.stack(
            (
                torch.stack((width * flip_x * cos, -width * flip_x * sin, 2.0 * cx - 1.0), dim=-1),
                torch.stack((height * flip_y * sin, height * flip_y * cos, 2.0 * cy - 1.0), dim=-1),
            ),
            dim=-2,
        )
        grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    elif x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if aug.color_jitter is not None:
        cfg = aug.color_jitter
        chosen = draw.bernoulli(cfg["p"])
        jittered = x
        f = lambda v: v.view(-1, 1, 1, 1)
        steps = [
            ("brightness", lambda y, k: (y * f(k)).clamp(0, 1)),
            ("contrast", lambda y, k: (f(k) * y + (1 - f(k)) * _old_grey(y).mean((1, 2, 3), keepdim=True)).clamp(0, 1)),
        ]
        if rgb:
            steps.append(("saturation", lambda y, k: (f(k) * y + (1 - f(k)) * _old_grey(y)).clamp(0, 1)))
        for name, adjust in steps:
            if cfg[name] > 0:
                factor = draw.uniform(max(0.0, 1.0 - cfg[name]), 1.0 + cfg[name])
                params[name] = torch.where(chosen > 0, factor, torch.ones_like(factor))
                jittered = adjust(jittered, params[name])
        if rgb and cfg["hue"] > 0:
            params["hue"] = chosen * draw.uniform(-cfg["hue"], cfg["hue"])
            jittered = _old_hue(jittered, params["hue"])
        x = torch.where(chosen.bool().view(-1, 1, 1, 1), jittered, x)
    if aug.grayscale > 0 and rgb:
        params["grayscale"] = draw.bernoulli(aug.grayscale)
        x = torch.where(params["grayscale"].bool().view(-1, 1, 1, 1), _old_grey(x).expand_as(x), x)
    if aug.blur is not None:
        chosen = draw.bernoulli(aug.blur["p"])
        params["blur_sigma"] = chosen * draw.uniform(*aug.blur["sigma"])
        kernel = min(aug.blur["kernel_size"], size - 1 if size % 2 == 0 else size - 2)
        if kernel >= 3:
            x = _old_blur(x, params["blur_sigma"], kernel)
    views = x.clamp(0.0, 1.0).reshape(b, j, c, size, size)
    return views, {k: v.reshape(b, j) for k, v in params.items()}


def _config(name, **extra):
    from pathlib import Path

    import yaml

    import genssl.configs

    path = Path(genssl.configs.__file__).parent / "data" / "augment" / f"{name}.yaml"
    return {**yaml.safe_load(path.read_text()), **extra}


SIMCLR_BLUR = {"p": 0.5, "sigma": [0.1, 2.0], "kernel_size": 3}
NO_ROTATION = {k: v for k, v in FULL.items() if k != "rotation"}
# (options, channels, input side, output side): the two benchmarked pipelines first.
PREVIOUS_CASES = {
    "fashion": (_config("fashion"), 1, 28, 28),
    "colour": (_config("colour"), 3, 32, 32),
    "simclr": (_config("colour", blur=SIMCLR_BLUR), 3, 32, 32),
    "full": (FULL, 3, 20, 20),
    "full-grey": (FULL, 1, 16, 16),
    "no-rotation": (NO_ROTATION, 3, 24, 24),
    "resampled": (NO_ROTATION, 3, 12, 16),
    "extreme-crops": ({"crop": {"scale": [0.02, 1.0], "ratio": [0.2, 5.0]}, "vflip": 0.5}, 1, 10, 7),
    "all-jittered": ({"color_jitter": {"p": 1.0, "saturation": 0.5, "hue": 0.5}, "grayscale": 1.0}, 3, 8, 8),
    "none": ({}, 3, 8, 8),
}


@pytest.mark.parametrize("gather", [True, False], ids=["gathered", "blended"])
@pytest.mark.parametrize("case", list(PREVIOUS_CASES))
def test_same_views_and_parameters_as_the_previous_implementation(case, gather, monkeypatch):
    from genssl.data import augment as augment_module

    if not gather:  # the path taken on GPUs: every view computed, then blended
        monkeypatch.setattr(augment_module, "_GATHER_ON", ())
    options, channels, side, size = PREVIOUS_CASES[case]
    augment = build_augment(options, 2, size)
    for seed, dtype in ((0, torch.uint8), (1, torch.uint8), (2, torch.float64)):
        x = torch.rand(24, channels, side, side, generator=gen(100 + seed))
        x[:3] = x[:3, :1]  # grey pixels: ties in every channel, zero saturation
        x[3, :, :4] = 0.0
        x = (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
        views, params = augment(x, gen(seed))
        old_views, old_params = _old_augment(augment, x, gen(seed))
        assert params.keys() == old_params.keys()
        for name in params:
            assert torch.equal(params[name], old_params[name]), name
        assert views.shape == old_views.shape and views.is_contiguous()
        assert (views - old_views).abs().max() < 1e-5, (case, seed)


def test_repeated_calls_reuse_no_state(images):
    """Kept temporaries never leak into results: other batch sizes in between, a fresh module, copies."""
    import copy
    import pickle

    options = PREVIOUS_CASES["simclr"][0]
    augment = build_augment(options, 2, 32)
    first, first_params = augment(images, gen(3))
    kept = first.clone()
    augment(images[:5], gen(4))
    augment(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), gen(5))
    again, _ = augment(images, gen(3))
    fresh, fresh_params = build_augment(options, 2, 32)(images, gen(3))
    assert torch.equal(first, kept) and torch.equal(again, first) and torch.equal(fresh, first)
    assert all(torch.equal(first_params[k], fresh_params[k]) for k in first_params)
    for clone in (copy.deepcopy(augment), pickle.loads(pickle.dumps(augment))):
        assert clone._scratch == {}
        assert torch.equal(clone(images, gen(3))[0], first)


def test_planar_hue_and_blur_match_the_hsv_round_trip_and_the_convolution():
    x = torch.rand(40, 3, 9, 9, generator=gen(0))
    x[:4] = x[:4, :1]
    x[4:8, 0] = x[4:8, 1]  # ties between the largest channels
    x[8:10] = 0.0
    shift = torch.rand(40, generator=gen(1)) - 0.5
    assert (colour.adjust_hue(x, shift) - _old_hue(x, shift)).abs().max() < 2e-6
    sigma = 0.1 + 3 * torch.rand(40, generator=gen(2))
    sigma[:5] = 0.0
    for kernel in (3, 7):
        assert (colour.gaussian_blur(x, sigma, kernel) - _old_blur(x, sigma, kernel)).abs().max() < 1e-6
