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
