"""GPU checks; skipped where no CUDA device is visible (run them on a GPU machine)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, run_cli

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_augment_and_elbo_step_run_on_the_gpu():
    from genssl.data import build_augment
    from genssl.guides import NormalEncoderGuide
    from genssl.inference.pyro_ssl import PyroSSL
    from genssl.models import FlatPrior, SimVAE
    from genssl.nets import build_decoder, build_encoder

    device = torch.device("cuda")
    augment = build_augment({"crop": {"scale": [0.4, 1.0], "ratio": [0.75, 1.33]}, "hflip": 0.5}, 2, 28)
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, device=device)
    views, params = augment(images, torch.Generator(device=device).manual_seed(0))
    assert views.device.type == "cuda" and params["crop_scale"].device.type == "cuda"
    model = SimVAE(build_decoder("conv", 8, 1, 28), FlatPrior(), 8)
    guide = NormalEncoderGuide(build_encoder("conv", 1, 28), 8)
    method = PyroSSL(model, guide).to(device)
    with torch.device(device):
        loss = method(views)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad.device.type == "cuda" for p in method.parameters())


@pytest.mark.parametrize("precision", ["32", "bf16", "16"])
def test_train_cli_on_cuda(tmp_path, precision):
    run_dir = tmp_path / precision
    result = run_cli(
        "genssl-train",
        "method=simvae",
        "data=digits",
        "trainer.device=cuda",
        f"trainer.precision={precision}",
        "trainer.max_epochs=2",
        *TINY,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["content"]["linear"] > 0.5 and metrics["train"]["samples_per_s"] > 0


def test_the_training_step_never_waits_for_the_gpu():
    """torch's sync debug mode raises on any host synchronisation inside the steps."""
    import tempfile
    from pathlib import Path

    from hydra import compose, initialize_config_module

    from genssl.cli.overrides import normalise_overrides
    from genssl.data.types import ImageDataset, ImageSplit
    from genssl.inference.replay import EAGER_CALLS
    from genssl.methods import build_method
    from genssl.runtime import epoch_generator
    from genssl.train.loop import Trainer, _Window

    device = torch.device("cuda")
    for method_name in ("simclr", "simvae", "byol", "dino"):
        with initialize_config_module("genssl.configs", version_base=None):
            cfg = compose("config", overrides=normalise_overrides([f"method={method_name}", "data=digits"]))
        images = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8)
        split = ImageSplit(images, torch.zeros(256, dtype=torch.long))
        method = build_method(cfg, 1, 28).to(device)
        trainer = Trainer(cfg, method, ImageDataset("s", split, split, 1, ["0"]), device, Path(tempfile.mkdtemp()))
        generator = epoch_generator(0, 0, device)
        window = _Window(device, 0.0)
        # Warm-up: lazy CUDA init may sync, and so does the replay's one-off trace and check (replay.py).
        for _ in range(EAGER_CALLS + 2):
            trainer.step(torch.arange(64, device=device), generator)
        assert "replayed" in method.estimator, method.estimator
        torch.cuda.set_sync_debug_mode("error")
        try:
            for i in range(3):
                loss, views = trainer.step(torch.arange(64, device=device) + 64 * i, generator)
                window.add(loss, views, i)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert window.read()[1] == -1


@pytest.mark.parametrize(
    "options", [["trainer.compile=true"], ["trainer.channels_last=true", "trainer.precision=bf16"]]
)
def test_speed_options_on_cuda(tmp_path, options):
    run_dir = tmp_path / "run"
    result = run_cli(
        "genssl-train",
        "method=simclr",
        "data=digits",
        "trainer.device=cuda",
        "trainer.max_epochs=1",
        "eval.enabled=false",
        *options,
        *TINY,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr
    assert (run_dir / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("method_name", ["simclr", "simvae", "dino"])
def test_replayed_training_is_eager_training_on_cuda(method_name, autocast_dtype):
    """The traced-and-replayed loss (TorchScript on the GPU) trains as the eager one, as on the CPU,
    in float32 and under CUDA's autocast policies."""
    import pyro
    from test_lean_elbo import build
    from test_replay import replayed_and_eager

    method, views, index = build([f"method={method_name}"])
    device = torch.device("cuda")
    with pyro.validation_enabled(False):
        eager, replayed_losses, eager_losses = replayed_and_eager(
            method.to(device), views.to(device), index, autocast_dtype
        )
    assert method.replay.reason is None and method.replay.replayed > 0, method.estimator
    torch.testing.assert_close(torch.tensor(replayed_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-5)
    for (name, a), (_, b) in zip(method.state_dict().items(), eager.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=f"{name} differs after replayed training")
