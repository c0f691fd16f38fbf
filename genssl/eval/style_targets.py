"""What the style probes read: ground-truth factors, and the augmentation parameters of a view.

Every dataset has style in the second sense: one augmented view is drawn per image (seeded, with
the run's own augmentation), its representation computed, and the parameters that made it (crop
box, flips, rotation, colour jitter …) become regression or classification targets. Datasets with
ground-truth factors (``shapes``, any ``data.styled=true`` set) also have the first sense, on the
clean images.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from genssl.data import ImageSplit, build_augment
from genssl.data.streaming import BatchStream

# Recorded augmentation parameters that are draws of a coin, not a continuous amount.
DISCRETE_AUGMENT_PARAMS = frozenset({"hflip", "vflip", "grayscale"})
AUGMENT_PREFIX = "aug_"


def dataset_augment(data_name: str) -> DictConfig | None:
    """The augmentation preset that ``configs/data/<name>.yaml`` selects by default.

    Style probes use it whatever the method trained with (the VAE trains on un-augmented images),
    so every method on a dataset is asked about the same factors. None when the dataset has no
    packaged config (a user's own dataset): the caller then falls back to the run's augmentation.
    """
    configs = importlib.resources.files("genssl.configs").joinpath("data")
    data_file = configs.joinpath(f"{data_name}.yaml")
    if not data_file.is_file():
        return None
    for entry in OmegaConf.load(data_file).get("defaults", []):
        if isinstance(entry, DictConfig) and "augment" in entry:
            return OmegaConf.load(configs.joinpath("augment", f"{entry.augment}.yaml"))
    return None


@torch.no_grad()
def augmented_view_targets(
    represent: Callable[[torch.Tensor], torch.Tensor],
    split: ImageSplit,
    augment_cfg: Mapping[str, Any] | None,
    device: torch.device,
    seed: int,
    batch_size: int = 1024,
    desc: str = "augmented views",
    progress: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, str]]:
    """Features of one augmented view per image of ``split`` and the parameters that made each view.

    Returns ``(features [N, D], factors {aug_<param>: [N]}, kinds {aug_<param>: continuous|discrete})``;
    discrete parameters (flips, grey) are int64 and continuous ones float32, as dataset factors are.
    """
    augment = build_augment(augment_cfg, 1, split.images.shape[-1]).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    features, params = [], {}
    with BatchStream.in_order(split.images, batch_size, device=device) as stream:
        for _, batch in tqdm(stream, desc=desc, unit="batch", leave=False, disable=not progress):
            views, drawn = augment(batch, generator)
            features.append(represent(views[:, 0]).float())
            for name, value in drawn.items():
                params.setdefault(name, []).append(value[:, 0].float())
    factors, kinds = {}, {}
    for name, chunks in params.items():
        value = torch.cat(chunks)
        discrete = name in DISCRETE_AUGMENT_PARAMS
        factors[AUGMENT_PREFIX + name] = value.round().long() if discrete else value
        kinds[AUGMENT_PREFIX + name] = "discrete" if discrete else "continuous"
    return torch.cat(features), factors, kinds
