"""Every method config under configs/method builds and takes a training step; the contract's methods all have one."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

from genssl.cli.overrides import group_options, normalise_overrides
from genssl.data import build_augment
from genssl.methods import build_method

# The methods the DESIGN contract names: each must have a config (this list is the contract check).
CONTRACT = (
    "vae",
    "beta_vae",
    "simvae",
    "simclr",
    "simclr_er",
    "vicreg",
    "barlow_twins",
    "spectral",
    "byol",
    "byol_er",
    "simsiam",
    "directpred",
    "dino",
    "dino_er",
    "swav",
    "swav_er",
    "deepcluster",
    "deepcluster_er",
    "ssl_hsic",
    "mae",
    "umae",
    "mmae",
)
# What is tested to train: every method config there is, discovered, so a new one is covered unasked.
METHODS = group_options("method")


def config(*overrides):
    with initialize_config_module("genssl.configs", version_base=None):
        return compose("config", overrides=normalise_overrides(list(overrides)))


@pytest.mark.parametrize("name", METHODS)
def test_method_takes_a_training_step(name):
    cfg = config(f"method={name}", "data=digits")
    method = build_method(cfg, cfg.data.channels, cfg.data.image_size)
    augment = build_augment(cfg.data.augment, cfg.data.num_views, cfg.data.image_size)
    images = torch.randint(0, 256, (8, cfg.data.channels, cfg.data.image_size, cfg.data.image_size), dtype=torch.uint8)
    views, _ = augment(images, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    loss = method(views)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()
    method.after_step(0.1)
    changed = [k for k, v in method.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "one step changed no weight"
    method.eval()
    features = method.represent(images.float() / 255)
    assert features.shape[0] == 8 and torch.isfinite(features).all()


def test_every_contract_method_has_a_config():
    """Every method the DESIGN contract names has a config under configs/method."""
    missing = sorted(set(CONTRACT) - set(group_options("method")))
    assert missing == []
