"""A small Vision Transformer for 28/32/64 pixel images, and MAE's light decoder.

:class:`ViTEncoder` embeds p×p patches, prepends a [CLS] token and runs pre-norm transformer
blocks. Given the indices of the visible patches it gathers their *pixels* before the patch
embedding, so masked pixels never reach a single weight (the leak test relies on this).
Called on whole images it returns the [CLS] feature, like any genssl encoder.

:class:`MaskedPatchDecoder` maps the encoder's tokens to a narrower width, puts a learned mask
token at every hidden patch, adds position embeddings, runs a few blocks and predicts the P =
p·p·C values of every patch (as in MAE; only the masked ones enter the loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genssl.errors import ConfigError, ShapeError, choices
from genssl.nets.masking import mask_order, patchify

POSITION_EMBEDDINGS = ("sincos", "learned")


def sincos_position_embedding(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine embeddings [grid², dim] (row-major patches).

    Half of the channels encode the row, half the column; each half is [sin(t·ω_k), cos(t·ω_k)]
    with ω_k = 10000^(−k/(dim/4)), k = 0 … dim/4 − 1 (the MAE / MoCo v3 construction).
    """
    if dim % 4:
        raise ConfigError(
            f"Sine-cosine position embeddings need a width divisible by 4, got {dim}. "
            "Choose net.vit.width / model.decoder.width as a multiple of 4 or pos_embed=learned."
        )
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(t: torch.Tensor) -> torch.Tensor:
        angles = t.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, w = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(n, t, w))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _check_sizes(what: str, width: int, depth: int, heads: int, pos_embed: str) -> None:
    for name, value in (("width", width), ("depth", depth), ("heads", heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what}.{name}={value!r} must be a positive integer.")
    if width % heads:
        raise ConfigError(
            f"{what}.width={width} is not divisible by {what}.heads={heads}: every attention head "
            "gets width/heads channels."
        )
    if pos_embed not in POSITION_EMBEDDINGS:
        raise ConfigError(
            f"Unknown position embedding '{pos_embed}': {what}.pos_embed must be {choices(POSITION_EMBEDDINGS)}."
        )


def _register_positions(module: nn.Module, pos_embed: str, width: int, grid: int) -> None:
    """``module.pos_embed`` [1, 1 + grid², width]: a fixed buffer (sincos, zero [CLS] row) or a learned parameter."""
    if pos_embed == "sincos":
        table = torch.cat([torch.zeros(1, width), sincos_position_embedding(width, grid)])
        module.register_buffer("pos_embed", table.unsqueeze(0))
    else:
        module.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, width) * 0.02)


def _init_weights(module: nn.Module) -> None:
    # Xavier-uniform linear layers and zero biases, as in MAE (torch's default fan-in init trains worse here).
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def default_patch_size(image_size: int) -> int:
    """Patch side giving a 4×4 grid: image_size / 4 (7 px at 28, 8 px at 32, 16 px at 64).

    Sixteen tokens keep a CPU epoch of Fashion-MNIST near two minutes, and on Fashion-MNIST the 7 px
    patches trained a better [CLS] feature than 4 px ones in the same time (bench/MASKED_RESULTS.md).
    """
    if image_size % 4:
        raise ShapeError(
            f"{image_size}×{image_size} images have no default patch size (a 4×4 grid needs a "
            "size divisible by 4): set net.vit.patch_size to a divisor of the image size."
        )
    return image_size // 4


class ViTEncoder(nn.Module):
    """ViT over p×p patches with a [CLS] token; ``forward`` returns the [CLS] feature [N, width]."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        patch_size: int = 4,
        width: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        pos_embed: str = "sincos",
    ) -> None:
        super().__init__()
        _check_sizes("net.vit", width, depth, heads, pos_embed)
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1 or image_size % patch_size:
            valid = [str(p) for p in range(1, image_size + 1) if image_size % p == 0 and p < image_size]
            raise ShapeError(
                f"net.vit.patch_size={patch_size!r} does not divide {image_size}×{image_size} images "
                f"into whole patches: for this image size it must be {choices(valid)} "
                "(or change data.image_size)."
            )
        self.channels, self.image_size, self.patch_size = channels, image_size, patch_size
        self.grid = image_size // patch_size
        self.num_patches = self.grid**2
        self.patch_dim = patch_size * patch_size * channels
        self.width = self.out_features = width
        # A linear map of the flattened patch equals MAE's stride-p convolution, and lets the
        # visible patches be selected before any weight sees them.
        self.patch_embed = nn.Linear(self.patch_dim, width)
        self.cls_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        _register_positions(self, pos_embed, width, self.grid)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        _init_weights(self)

    def encode(self, images: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens [N, 1 + L_vis, width] ([CLS] first) of the patches ``visible`` [N, L_vis] (all if None)."""
        if images.dim() != 4 or images.shape[1:] != (self.channels, self.image_size, self.image_size):
            raise ShapeError(
                f"The ViT encoder was built for images [N, {self.channels}, {self.image_size}, "
                f"{self.image_size}], got {tuple(images.shape)}."
            )
        patches = patchify(images, self.patch_size)
        positions = self.pos_embed[:, 1:].expand(len(images), -1, -1)
        if visible is not None:
            patches = torch.gather(patches, 1, visible.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
            positions = torch.gather(positions, 1, visible.unsqueeze(-1).expand(-1, -1, self.width))
        x = self.patch_embed(patches) + positions
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(images), -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def encode_masked(self, images: torch.Tensor, mask: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        """Tokens of the patches that ``mask`` [N, L] (1 = hidden) leaves visible (``keep`` of them, if known)."""
        order, _, keep = mask_order(mask, keep)
        return self.encode(images, order[:, :keep])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[:, 0]


class MaskedPatchDecoder(nn.Module):
    """MAE's decoder: encoder tokens + mask tokens → predicted pixels [N, L, P] of every patch."""

    def __init__(
        self,
        grid: int,
        patch_size: int,
        channels: int,
        encoder_width: int,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        pos_embed: str = "sincos",
    ) -> None:
        super().__init__()
        _check_sizes("model.decoder", width, depth, heads, pos_embed)
        self.grid, self.patch_size, self.channels = grid, patch_size, channels
        self.num_patches = grid * grid
        self.patch_dim = patch_size * patch_size * channels
        self.embed = nn.Linear(encoder_width, width)
        self.mask_token = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        _register_positions(self, pos_embed, width, grid)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.predict = nn.Linear(width, self.patch_dim)
        _init_weights(self)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, keep: int | None = None) -> torch.Tensor:
        """Predictions [N, L, P] from encoder tokens [N, 1 + L_vis, W_enc] and the masks [N, L] that chose them
        (``keep`` visible patches each, if known)."""
        order, restore, keep = mask_order(mask, keep)
        if tokens.shape[1] != 1 + keep:
            raise ShapeError(
                f"The decoder got {tokens.shape[1] - 1} visible tokens but the mask leaves {keep} patches visible."
            )
        x = self.embed(tokens)
        n, hidden = len(x), self.num_patches - keep
        patch_tokens = torch.cat([x[:, 1:], self.mask_token.expand(n, hidden, -1)], dim=1)
        patch_tokens = torch.gather(patch_tokens, 1, restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patch_tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.predict(self.norm(x))[:, 1:]


__all__ = ["POSITION_EMBEDDINGS", "ViTEncoder", "default_patch_size", "MaskedPatchDecoder", "sincos_position_embedding"]
