"""The acceptance runs on real Fashion-MNIST (minutes each): `make test-all` runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
        reason="Fashion-MNIST is not installed (apt-get install -y dataset-fashion-mnist)",
    ),
]


def content(tmp_path, method, epochs):
    run_dir = tmp_path / f"{method}-{epochs}"
    result = run_cli(
        "genssl-train",
        f"method={method}",
        "data=fashion_mnist",
        f"trainer.max_epochs={epochs}",
        "logger=none",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
        timeout=1800,
        env={"OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stderr
    return json.loads((run_dir / "metrics.json").read_text())["content"]


def test_simvae_three_epochs_beats_its_untrained_baseline(tmp_path):
    baseline = content(tmp_path, "simvae", 0)
    trained = content(tmp_path, "simvae", 3)
    assert trained["linear"] >= 0.80
    assert trained["linear"] >= baseline["linear"] + 0.02, (trained, baseline)
