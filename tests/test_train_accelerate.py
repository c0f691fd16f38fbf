"""The training step's speed options: torch.compile of the networks, channels-last convolutions, and a
step that never waits for the device. Each must leave the losses what the eager step computes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from genssl.cli.overrides import normalise_overrides
from genssl.data.types import ImageDataset, ImageSplit
from genssl.errors import GensslError
from genssl.methods import build_method
from genssl.runtime import epoch_generator
from genssl.train.accelerate import networks
from genssl.train.loop import Trainer, _Window

TINY_MLP = ["net.encoder=mlp", "net.mlp_hidden=[16]", "data.image_size=8", "guide.projector.hidden_dim=16"]
TINY_MLP += ["guide.projector.out_dim=8", "trainer.batch_size=8", "trainer.progress=false"]


def trainer(*overrides, side=8):
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides(["data=digits", *overrides]))
    torch.manual_seed(0)
    images = torch.randint(0, 256, (32, 1, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    split = ImageSplit(images, torch.zeros(32, dtype=torch.long))
    dataset = ImageDataset("synthetic", split, split, 1, ["0"])
    return Trainer(cfg, build_method(cfg, 1, side), dataset, torch.device("cpu"), Path(tempfile.mkdtemp()))


def losses(t, steps=3):
    generator = epoch_generator(0, 0, torch.device("cpu"))
    t.method.train()
    return torch.stack([t.step(torch.arange(8) + 8 * i, generator)[0] for i in range(steps)])


def first_loss_and_gradients(t):
    """−ELBO of the first batch and its parameter gradients, before any optimiser step (after one, Adam's
    near-sign updates turn float round-off into visible differences)."""
    t.method.train()
    views, _ = t.augment(t.images[:8], epoch_generator(0, 0, torch.device("cpu")))
    loss = t.method(views)
    params = [p for p in t.method.parameters() if p.requires_grad]
    return loss, torch.autograd.grad(loss, params)


def test_compiled_networks_train_as_the_eager_ones():
    eager = losses(trainer("method=simclr", *TINY_MLP))
    compiled_trainer = trainer("method=simclr", *TINY_MLP, "trainer.compile=true")
    assert any("compiled" in change for change in compiled_trainer.accelerated)
    torch.testing.assert_close(losses(compiled_trainer), eager, rtol=1e-4, atol=1e-5)


def test_channels_last_convolutions_compute_the_same_loss():
    eager = losses(trainer("method=simclr", "guide.projector.out_dim=8", "trainer.batch_size=8", side=28))
    fast = trainer("method=simclr", "guide.projector.out_dim=8", "trainer.batch_size=8", "trainer.channels_last=true",
                   side=28)  # fmt: skip
    names = [name for name, _ in networks(fast.method)]
    assert names and all("channels-last" in c for c in fast.accelerated)
    (loss_fast, grads_fast), (loss_eager, grads_eager) = (
        first_loss_and_gradients(fast),
        first_loss_and_gradients(
            trainer("method=simclr", "guide.projector.out_dim=8", "trainer.batch_size=8", side=28)
        ),
    )
    torch.testing.assert_close(loss_fast, loss_eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_fast, grads_eager):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))
    assert torch.isfinite(losses(fast)).all() and torch.isfinite(eager).all()


def test_the_loss_window_finds_the_first_non_finite_step():
    window = _Window(torch.device("cpu"), 0.0)
    for step, value in enumerate([1.0, 3.0, float("nan"), float("inf"), 2.0]):
        window.add(torch.tensor(value), 4, step)
    mean, first_bad = window.read()
    assert first_bad == 2 and mean == pytest.approx(6.0 / 5) and window.views == 20


def test_a_diverging_run_stops_before_any_checkpoint(tmp_path):
    t = trainer("method=simclr", *TINY_MLP, "trainer.optim.lr=1e30", "trainer.max_epochs=1", "trainer.log_every=1")
    t.run_dir = tmp_path
    t.checkpoint_path = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(GensslError, match="non-finite at step"):
        t.fit()
    assert not t.checkpoint_path.exists()
