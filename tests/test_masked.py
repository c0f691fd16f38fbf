"""MAE, U-MAE and M-MAE as Pyro ELBOs: equality with the published losses, masking, and CLI runs.

Reference losses are written out here from the papers / official code (not taken from genssl), on
tiny ViTs on the CPU, with the random mask fixed by seeding torch before the guide draws it.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import TINY, run_cli
from pyro import poutine

from genssl.errors import ConfigError, ShapeError
from genssl.guides import MaskedEncoderGuide
from genssl.inference.pyro_ssl import PyroSSL
from genssl.models import MaskedPatchModel
from genssl.models.masked import mae_terms, mmae_terms, umae_terms
from genssl.nets.masking import mask_order, masked_patch_mse, patchify, random_patch_mask, unpatchify
from genssl.nets.vit import MaskedPatchDecoder, ViTEncoder, default_patch_size

B, C, SIZE, PATCH = 6, 2, 8, 2  # 16 patches of 8 values; 4 visible at ratio 0.75
TERMS = {"mae": mae_terms, "umae": umae_terms, "mmae": mmae_terms}


def tiny_method(
    name: str, *, norm_pix: bool = False, pixel_var: float = 0.5, pos_embed: str = "sincos", **kwargs
) -> PyroSSL:
    encoder = ViTEncoder(C, SIZE, patch_size=PATCH, width=16, depth=2, heads=2, pos_embed=pos_embed)
    decoder = MaskedPatchDecoder(encoder.grid, PATCH, C, 16, width=8, depth=1, heads=2, pos_embed=pos_embed)
    guide = MaskedEncoderGuide(encoder, mask_ratio=0.75)
    model = MaskedPatchModel(
        decoder, 16, guide.num_visible, TERMS[name](**kwargs), norm_pix_loss=norm_pix, pixel_var=pixel_var
    )
    return PyroSSL(model, guide, elbo="trace")


def published_loss(
    method: PyroSSL, views: torch.Tensor, name: str, norm_pix: bool, lambda_: float = 1e-2, mu: float = 1.0
) -> torch.Tensor:
    """MAE's forward_loss + λ·regulariser on the [CLS] features, written out independently of genssl's terms."""
    encoder, decoder = method.guide.encoder, method.model.decoder
    flat = views.flatten(0, 1)
    mask = random_patch_mask(len(flat), encoder.num_patches, 0.75)  # the guide's draw, same seed
    tokens = encoder.encode_masked(flat, mask)
    prediction = decoder(tokens, mask)
    target = patchify(flat, PATCH)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    loss = (((prediction - target) ** 2).mean(-1) * mask).sum() / mask.sum()
    z = torch.nn.functional.normalize(tokens[:, 0], dim=1)
    if name == "umae":
        loss = loss + lambda_ * (z @ z.T).pow(2).mean()
    elif name == "mmae":
        d = z.shape[1]
        loss = loss - lambda_ * torch.logdet(torch.eye(d) + (mu / d) * z.T @ z)
    return loss


@pytest.mark.parametrize("name", ["mae", "umae", "mmae"])
@pytest.mark.parametrize("norm_pix,pixel_var,views_per_image", [(False, 0.5, 1), (True, 0.5, 2), (False, 2.0, 1)])
def test_negative_elbo_is_the_published_loss(name, norm_pix, pixel_var, views_per_image):
    """−ELBO = MSE/(2σ²) + λ·R + ½ log(2πσ²): at σ² = ½ the published loss + ½ log π, value and gradient.

    For σ² ≠ ½ the regulariser keeps weight λ while the MSE is scaled by 1/(2σ²), i.e. the published
    loss with λ' = 2σ²λ times 1/(2σ²); the check below writes that out.
    """
    torch.manual_seed(0)
    method = tiny_method(name, norm_pix=norm_pix, pixel_var=pixel_var)
    views = torch.rand(B, views_per_image, C, SIZE, SIZE)
    params = [p for p in method.parameters() if p.requires_grad]
    torch.manual_seed(123)
    ours = method(views)
    torch.manual_seed(123)
    scale = 1.0 / (2.0 * pixel_var)
    reference = scale * published_loss(method, views, name, norm_pix, lambda_=1e-2 / scale)
    reference = reference + 0.5 * math.log(2.0 * math.pi * pixel_var)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    assert math.isclose(method.model.constant, 0.5 * math.log(2 * math.pi * pixel_var))
    grads_ours = torch.autograd.grad(ours, params)
    grads_ref = torch.autograd.grad(reference, params)
    for _, a, b in zip(params, grads_ours, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_guide_records_mask_cls_and_visible_tokens_as_point_masses():
    method = tiny_method("mae")
    views = torch.rand(B, 1, C, SIZE, SIZE)
    trace = poutine.trace(method.guide).get_trace(views)
    sites = {name: trace.nodes[name] for name in trace.stochastic_nodes if name != "images"}  # not the plate
    assert set(sites) == {"mask", "cls", "tokens"}
    assert sites["mask"]["value"].shape == (B, 1, 16) and sites["cls"]["value"].shape == (B, 1, 16)
    assert sites["tokens"]["value"].shape == (B, 1, 4, 16)
    assert all(type(s["fn"]).__name__ == "Delta" for s in sites.values())
    assert torch.all(sites["mask"]["value"].sum(-1) == 12)


def test_m_mae_second_order_taylor_is_u_mae():
    """With A = (μ/d)ẐᵀẐ, log det(I + A) = tr A − ½ tr A² + ⅓ tr A³ − … For unit rows ẑ_i (n of them),
    tr A = μn/d and tr A² = (μ/d)²‖ẐẐᵀ‖_F² = (μ²n²/d²)·mean_ij(ẑ_iᵀẑ_j)², so to second order

        −log det(I + (μ/d)ẐᵀẐ) ≈ −μn/d + (μ²n²/2d²) · mean_ij(ẑ_iᵀẑ_j)²,

    i.e. M-MAE's term is U-MAE's scaled by μ²n²/2d² plus a constant. The remainder is ⅓ tr A³ ∝ μ³,
    so the two agree (in value up to the constant, and in gradient) at small μ and part at μ = 3.
    """
    torch.manual_seed(0)
    n, d = 32, 16
    z = (torch.randn(n, d) + 0.7 * torch.randn(1, d)).requires_grad_(True)  # correlated rows, like features
    sites = {"cls": z.unsqueeze(1)}
    uniformity = -umae_terms(lambda_=1.0)["uniformity"](sites)
    (grad_u,) = torch.autograd.grad(uniformity, z)

    def gap(mu: float) -> tuple[float, float]:
        coding = -mmae_terms(lambda_=1.0, mu=mu)["coding_rate"](sites)
        scale = mu**2 * n**2 / (2 * d**2)
        taylor = -mu * n / d + scale * uniformity
        (grad_m,) = torch.autograd.grad(coding, z)
        value_gap = abs(coding - taylor).item() / abs(coding + mu * n / d).item()
        cosine = torch.nn.functional.cosine_similarity(grad_m.flatten(), grad_u.flatten(), dim=0).item()
        return value_gap, cosine

    small_gap, small_cos = gap(0.01)
    large_gap, large_cos = gap(3.0)
    assert small_gap < 0.02 and small_cos > 0.999
    assert large_gap > 0.2 and large_cos < 0.99


def test_masked_pixels_never_reach_the_encoder():
    torch.manual_seed(0)
    method = tiny_method("umae", pos_embed="learned")
    images = torch.rand(B, C, SIZE, SIZE)
    mask = random_patch_mask(B, 16, 0.75)
    hidden = unpatchify(mask.unsqueeze(-1).expand(-1, -1, PATCH * PATCH * C), PATCH, C).bool()
    changed = torch.where(hidden, torch.rand_like(images) * 100, images)
    encoder = method.guide.encoder
    torch.testing.assert_close(
        encoder.encode_masked(changed, mask), encoder.encode_masked(images, mask), rtol=0, atol=0
    )
    a = method.guide.propose(images.unsqueeze(1), mask.unsqueeze(1))
    b = method.guide.propose(changed.unsqueeze(1), mask.unsqueeze(1))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    # A visible pixel does move the encoding (the check above is not vacuous).
    nudged = torch.where(hidden, images, images + 0.5)
    assert not torch.equal(encoder.encode_masked(nudged, mask), encoder.encode_masked(images, mask))


def test_masks_are_uniform_fixed_size_subsets_and_the_decoder_restores_order():
    torch.manual_seed(0)
    mask = random_patch_mask(2000, 16, 0.75)
    assert torch.all(mask.sum(1) == 12)
    assert (mask.mean(0) - 0.75).abs().max() < 0.05  # every patch hidden about equally often
    order, restore, keep = mask_order(mask)
    assert keep == 4 and torch.all(torch.gather(mask, 1, order[:, :4]) == 0)
    assert torch.equal(torch.gather(order, 1, restore), torch.arange(16).expand(2000, -1))
    images = torch.rand(3, C, SIZE, SIZE)
    assert torch.equal(unpatchify(patchify(images, PATCH), PATCH, C), images)
    prediction, target = torch.randn(3, 16, 8), torch.randn(3, 16, 8)
    m = random_patch_mask(3, 16, 0.75)
    expected = sum(((prediction[i, l] - target[i, l]) ** 2).mean() for i in range(3) for l in range(16) if m[i, l]) / 36
    torch.testing.assert_close(masked_patch_mse(prediction, target, m), expected)


def test_represent_is_the_unmasked_cls_feature_in_eval_mode():
    method = tiny_method("mmae")
    method.train()
    images = torch.rand(5, C, SIZE, SIZE)
    features = method.represent(images)
    assert features.shape == (5, 16)
    torch.testing.assert_close(features, method.guide.encoder.encode(images)[:, 0])
    assert method.guide.encoder.training  # represent restores the mode it found


def test_bad_sizes_and_ratios_are_clear_errors():
    with pytest.raises(ShapeError, match=r"patch_size=5.*'1', '14', '2', '4' or '7'"):
        ViTEncoder(1, 28, patch_size=5)
    with pytest.raises(ConfigError, match="width=30 is not divisible by net.vit.heads=4"):
        ViTEncoder(1, 28, width=30, heads=4)
    encoder = ViTEncoder(C, SIZE, patch_size=PATCH, width=16, depth=1, heads=2)
    for ratio in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            MaskedEncoderGuide(encoder, mask_ratio=ratio)
    with pytest.raises(ConfigError, match="one patch must be visible"):
        MaskedEncoderGuide(encoder, mask_ratio=0.97)
    with pytest.raises(ConfigError, match="pos_embed must be 'learned' or 'sincos'"):
        ViTEncoder(1, 28, pos_embed="rope")


def test_default_patch_size_is_a_four_by_four_grid():
    assert [default_patch_size(s) for s in (28, 32, 64)] == [7, 8, 16]
    with pytest.raises(ShapeError, match="set net.vit.patch_size"):
        default_patch_size(30)


TINY_VIT = [
    "net.vit.width=32",
    "net.vit.depth=1",
    "net.vit.heads=2",
    "model.decoder.width=16",
    "model.decoder.depth=1",
    "model.decoder.heads=2",
]
DIGITS = ["data=digits", "data.train_subset=256", "data.test_subset=128", "trainer.batch_size=32", *TINY]


@pytest.mark.parametrize("name", ["mae", "umae", "mmae"])
def test_trains_from_the_command_line(tmp_path, name):
    run_dir = tmp_path / name
    result = run_cli(
        "genssl-train", f"method={name}", *DIGITS, *TINY_VIT, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == name and metrics["train"]["steps"] == 16
    assert 0.0 <= metrics["content"]["linear"] <= 1.0
    losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for v in losses)


def test_command_line_rejects_a_patch_size_that_does_not_divide_the_image(tmp_path):
    result = run_cli(
        "genssl-train",
        "method=mae",
        *DIGITS,
        "net.vit.patch_size=5",
        "trainer.max_epochs=0",
        f"hydra.run.dir={tmp_path / 'bad'}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "net.vit.patch_size=5" in result.stderr and "'4' or '7'" in result.stderr
