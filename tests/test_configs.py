"""Hydra config composition: method defaults, dataset defaults and command-line precedence."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from genssl.cli.overrides import group_options, normalise_overrides
from genssl.data import DATASETS
from genssl.errors import ConfigError

METHODS = ("simvae", "vae", "beta_vae")


def config(*overrides):
    with initialize_config_module("genssl.configs", version_base=None):
        return compose("config", overrides=normalise_overrides(list(overrides)), return_hydra_config=False)


def test_every_contract_name_has_a_config():
    assert set(METHODS) <= set(group_options("method"))
    assert set(DATASETS) == set(group_options("data"))
    assert {"normal", "flat", "mog"} <= set(group_options("model/prior"))


def test_method_defaults():
    simvae = config("method=simvae")
    assert simvae.model.prior._target_ == "genssl.models.NormalPrior" and simvae.data.num_views == 2
    assert config("method=simvae", "model.prior=flat").model.prior._target_ == "genssl.models.FlatPrior"
    vae = config("method=vae")
    assert vae.model.prior._target_ == "genssl.models.NormalPrior" and vae.data.num_views == 1
    assert vae.model.view_var is None and vae.data.augment.crop is None
    assert config("method=beta_vae").model.beta == 4.0


def test_command_line_beats_method_defaults():
    cfg = config("method=simvae", "model.prior=mog", "data.num_views=3", "data/augment=none")
    assert cfg.model.prior._target_ == "genssl.models.MixturePrior"
    assert cfg.model.prior.latent_dim == cfg.model.latent_dim
    assert cfg.data.num_views == 3 and cfg.data.augment.crop is None


def test_user_prior_target_and_kwargs():
    cfg = config("method=simvae", "model.prior._target_=mymodule.MyPrior", "+model.prior.scale=2")
    assert cfg.model.prior._target_ == "mymodule.MyPrior" and cfg.model.prior.scale == 2


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_defaults_pick_a_network_that_fits(name):
    from genssl.nets import SUPPORTED_SIZES

    cfg = config(f"data={name}")
    sizes = SUPPORTED_SIZES.get(cfg.data.encoder)
    assert sizes is None or cfg.data.image_size in sizes
    assert cfg.net.encoder == cfg.data.encoder


def test_sweep_values_are_checked():
    assert normalise_overrides(["method=simvae,vae"]) == ["method=simvae,vae"]
    with pytest.raises(ConfigError, match="'nope'"):
        normalise_overrides(["method=simvae,nope"])


def test_user_prior_does_not_inherit_the_default_priors_kwargs():
    cfg = config("method=simvae", "model.prior._target_=mymodule.MyPrior")
    assert dict(cfg.model.prior) == {"_target_": "mymodule.MyPrior"}
