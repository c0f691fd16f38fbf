"""Patches and random patch masks for masked image modelling (MAE, U-MAE, M-MAE).

An image [N, C, H, W] with patch size p becomes L = (H/p)·(W/p) patches of P = p·p·C values,
in row-major patch order. A mask is a float tensor [..., L] with 1 on masked (hidden) patches and
0 on visible ones; every mask drawn here hides exactly the same number of patches, so the batch
stays rectangular and the encoder can take the visible patches as one [N, L_vis, P] tensor.
"""

from __future__ import annotations

import torch

from genssl.errors import ConfigError, ShapeError


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[N, C, H, W] → [N, L, p·p·C] patches in row-major order (each patch flattened as (p, p, C))."""
    n, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ShapeError(
            f"Images of size {h}×{w} do not split into {patch_size}×{patch_size} patches: "
            "the image size must be a multiple of the patch size."
        )
    gh, gw = h // patch_size, w // patch_size
    x = images.reshape(n, c, gh, patch_size, gw, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, gh * gw, patch_size * patch_size * c)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify` for square images: [N, L, p·p·C] → [N, C, H, W]."""
    n, length, _ = patches.shape
    grid = int(round(length**0.5))
    if grid * grid != length:
        raise ShapeError(f"{length} patches do not tile a square image.")
    x = patches.reshape(n, grid, grid, patch_size, patch_size, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, grid * patch_size, grid * patch_size)


def visible_count(num_patches: int, mask_ratio: float) -> int:
    """Patches left visible: ⌊L·(1 − ratio)⌋ (as in MAE); at least one patch must be visible and one hidden."""
    if not 0.0 < float(mask_ratio) < 1.0:
        raise ConfigError(
            f"guide.mask_ratio={mask_ratio} must lie strictly between 0 and 1 (the fraction of "
            "patches hidden from the encoder; MAE uses 0.75)."
        )
    keep = int(num_patches * (1.0 - float(mask_ratio)))
    if keep < 1 or keep >= num_patches:
        raise ConfigError(
            f"guide.mask_ratio={mask_ratio} leaves {keep} of {num_patches} patches visible: at "
            "least one patch must be visible and one hidden. Choose a ratio nearer 0.5 or a "
            "smaller net.vit.patch_size (more patches)."
        )
    return keep


def random_patch_mask(
    batch: int,
    num_patches: int,
    mask_ratio: float,
    *,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniformly random masks [batch, L] hiding L − :func:`visible_count` patches of every row.

    Vectorised over the batch: the visible patches of a row are the first ones in the argsort of
    i.i.d. uniform noise, i.e. a uniformly random subset of fixed size.
    """
    keep = visible_count(num_patches, mask_ratio)
    noise = torch.rand(batch, num_patches, device=device, generator=generator)
    visible = torch.argsort(noise, dim=1)[:, :keep]
    mask = torch.ones(batch, num_patches, device=device)
    return mask.scatter_(1, visible, 0.0)


def mask_order(mask: torch.Tensor, keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For masks [N, L]: (visible-first order [N, L], its inverse permutation [N, L], visible count).

    The order lists the visible patches in increasing index, then the masked ones; gathering with
    its first ``visible count`` entries selects the encoder's input, and gathering a
    [visible tokens, mask tokens] sequence with the inverse puts every token back at its patch.
    ``keep``: the visible count when the caller drew the masks and knows it (no read of the masks'
    values, so a traced step does not depend on them); else it is counted and checked.
    """
    if keep is None:
        counts = (mask < 0.5).sum(1)
        keep = int(counts[0]) if len(counts) else 0
        if len(counts) and not bool((counts == keep).all()):
            raise ShapeError("Every mask in a batch must hide the same number of patches.")
    # A stable sort of the 0/1 mask is the order described above.
    order = torch.argsort(mask, dim=1, stable=True)
    return order, torch.argsort(order, dim=1), keep


def patch_targets(images: torch.Tensor, patch_size: int, normalise: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """Reconstruction targets [N, L, P]: pixel patches, optionally normalised per patch as in MAE.

    With ``normalise``: (x − mean(x)) / √(var(x) + ε) over the P values of each patch (unbiased
    variance, ε = 1e-6, as in MAE's ``norm_pix_loss``).
    """
    target = patchify(images, patch_size)
    if normalise:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    return target


def masked_patch_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's loss: the mean squared error per patch, averaged over the masked patches.

        L = Σ_n Σ_l m_nl · (1/P) Σ_k (x̂_nlk − x_nlk)²  /  Σ_n Σ_l m_nl

    for predictions and targets [..., L, P] and masks [..., L] (1 = masked).
    """
    per_patch = (prediction - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()
