"""genssl.eval.generative: test ELBO, reconstruction / sample / traversal pictures for decoder methods."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image
from pyro.nn import PyroModule

from genssl.cli.overrides import normalise_overrides
from genssl.data import build_augment, load_dataset
from genssl.eval import generative as gen
from genssl.methods import build_method

CPU = torch.device("cpu")


def config(*overrides: str):
    with initialize_config_module("genssl.configs", version_base=None):
        return compose("config", overrides=normalise_overrides(["data=digits", *overrides]))


def method_for(*overrides: str):
    cfg = config(*overrides)
    return build_method(cfg, cfg.data.channels, cfg.data.image_size)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=28)


def test_only_decoder_methods_are_generative(digits, tmp_path):
    assert gen.has_decoder(method_for("method=simvae")) and gen.has_decoder(method_for("method=vae"))
    simclr = method_for("method=simclr")
    assert not gen.has_decoder(simclr)
    assert gen.write_generative_artefacts(simclr, digits, tmp_path / "eval", CPU) is None
    assert gen.test_elbo(simclr, digits.test.images[:4], CPU) is None
    assert not (tmp_path / "eval").exists()


def test_grids_have_the_expected_pixel_shape(digits):
    method = method_for("method=simvae")
    images = digits.test.images[:10]
    grid = gen.reconstruction_grid(method, images, CPU)
    cell = 28 * 3 + gen.BORDER  # 28 px upscaled by round(96 / 28) = 3, plus one border
    assert grid.dtype.name == "uint8" and grid.shape == (2 * cell + gen.BORDER, 10 * cell + gen.BORDER, 3)
    # The top row holds the originals, nearest-neighbour upscaled, grey on all three channels.
    first = grid[gen.BORDER : gen.BORDER + 84, gen.BORDER : gen.BORDER + 84]
    expected = images[0, 0].repeat_interleave(3, 0).repeat_interleave(3, 1).numpy()
    assert (first[..., 0] == expected).all() and (first[..., 2] == expected).all()
    assert grid[0, 0, 0] == 255  # the border
    samples = gen.prior_samples_grid(method, 20, CPU, seed=0, cols=8)
    assert samples.shape == (3 * cell + gen.BORDER, 8 * cell + gen.BORDER, 3)
    traversal = gen.latent_traversal_grid(method, images[0], CPU, dims=[0, 5, 7], steps=5)
    assert traversal.shape == (3 * cell + gen.BORDER, 5 * cell + gen.BORDER, 3)


def test_prior_samples_depend_on_the_seed_only(digits):
    for overrides in (["method=simvae"], ["method=vae"], ["method=simvae", "model.prior=mog"]):
        method = method_for(*overrides)
        torch.manual_seed(123)
        state = torch.get_rng_state()
        a = gen.prior_samples_grid(method, 8, CPU, seed=4)
        assert torch.equal(torch.get_rng_state(), state)  # the run's RNG is left alone
        torch.manual_seed(999)
        b = gen.prior_samples_grid(method, 8, CPU, seed=4)
        c = gen.prior_samples_grid(method, 8, CPU, seed=5)
        assert (a == b).all() and not (a == c).all()
    assert gen.prior_samples_grid(method_for("method=simvae", "model.prior=flat"), 8, CPU, seed=0) is None


def test_traversal_rows_vary_along_their_dimension(digits):
    method = method_for("method=simvae")
    dims, spread = gen.top_variance_dims(method, digits.test.images[:64], CPU, k=3)
    assert len(set(dims)) == 3 and (spread[:-1] >= spread[1:]).all() and (spread > 0).all()
    grid = torch.from_numpy(
        gen.latent_traversal_grid(method, digits.test.images[0], CPU, dims, span=3.0, steps=5, scales=spread)
    ).float()
    cell, b = 84, gen.BORDER

    def cell_at(row: int, col: int) -> torch.Tensor:
        return grid[
            b + row * (cell + b) : b + row * (cell + b) + cell, b + col * (cell + b) : b + col * (cell + b) + cell
        ]

    for row in range(3):
        assert (cell_at(row, 0) - cell_at(row, 4)).abs().max() > 0  # the ends of a row differ
        # The middle column is the posterior mean itself, the same in every row.
        assert torch.equal(cell_at(row, 2), cell_at(0, 2))


def test_artefacts_are_decodable_pngs(digits, tmp_path):
    method = method_for("method=simvae")
    out = gen.write_generative_artefacts(method, digits, tmp_path / "eval", CPU, seed=0, num_images=64)
    assert set(out) == {"elbo"} and out["elbo"] < 0
    for name, rows in (("reconstructions.png", 2), ("samples.png", 4), ("traversals.png", 6)):
        with Image.open(tmp_path / "eval" / name) as picture:
            picture.load()
            assert picture.mode == "RGB" and picture.size[1] == rows * 86 + gen.BORDER
    flat = method_for("method=simvae", "model.prior=flat")
    assert gen.write_generative_artefacts(flat, digits, tmp_path / "flat", CPU, num_images=16) == {}
    assert not (tmp_path / "flat" / "samples.png").exists()
    assert (tmp_path / "flat" / "traversals.png").exists()


def test_vae_elbo_matches_pyro_and_ignores_beta(digits):
    """The VAE's p(z) is its prior, so the closed form is exactly Pyro's ELBO at β = 1."""
    method = method_for("method=vae").eval()
    x = digits.test.images[:64]
    torch.manual_seed(0)
    with torch.no_grad():
        pyro_elbo = sum(-float(method(x.float().div(255).unsqueeze(1))) for _ in range(10)) / 10
    ours = gen.test_elbo(method, x, CPU, num_samples=10)
    assert ours == pytest.approx(pyro_elbo, rel=2e-3)
    beta = method_for("method=beta_vae")
    beta.load_state_dict(method.state_dict())
    torch.manual_seed(1)
    a = gen.test_elbo(beta, x, CPU)
    torch.manual_seed(1)
    assert gen.test_elbo(method, x, CPU) == pytest.approx(a, rel=1e-6)


class StandardNormal(PyroModule):
    """N(0, I) written as a user's own prior: test_elbo does not know its view marginal."""

    def forward(self, batch_size: int, latent_dim: int) -> torch.Tensor:
        return pyro.sample("y", dist.Normal(0.0, 1.0).expand([latent_dim]).to_event(1))


def test_simvae_marginal_bound_is_tighter_than_the_pyro_fallback(digits):
    """With a prior it does not know, test_elbo uses Pyro's ELBO at J = 1, where the guide also proposes
    y: a looser bound than the closed-form single-view marginal N(0, (1 + σ²) I) of the same prior."""
    method = method_for("method=simvae")
    x = digits.test.images[:128]
    torch.manual_seed(0)
    closed = gen.test_elbo(method, x, CPU, num_samples=8)
    method.model.prior = StandardNormal()
    torch.manual_seed(0)
    fallback = sum(gen.test_elbo(method, x, CPU) for _ in range(8)) / 8
    assert fallback == fallback and closed == closed  # finite
    assert fallback < closed


def test_elbo_improves_with_training(digits):
    cfg = config("method=simvae")
    method = build_method(cfg, 1, 28)
    augment = build_augment(cfg.data.augment, 2, 28)
    test_images = digits.test.images[:256]
    torch.manual_seed(0)
    before = gen.test_elbo(method, test_images, CPU)
    optimizer = torch.optim.Adam(method.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    method.train()
    for _ in range(15):
        index = torch.randint(len(digits.train), (64,), generator=generator)
        views, _ = augment(digits.train.images[index], generator)
        optimizer.zero_grad()
        method(views).backward()
        optimizer.step()
    torch.manual_seed(0)
    after = gen.test_elbo(method, test_images, CPU)
    assert after > before + 25, (before, after)  # nats per image; measured +48 after 10 steps, +70 after 20
