"""Learning-rate schedules: the formula, bad names, and what a CLI run logs."""

from __future__ import annotations

import json
import math

import pytest
from conftest import TINY, run_cli

from genssl.errors import ConfigError
from genssl.train.schedule import learning_rate


def test_constant_schedule_with_linear_warmup():
    assert [learning_rate(0.1, t, 10, "constant", 4) for t in range(6)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1]
    )
    assert all(learning_rate(0.1, t, 10) == 0.1 for t in range(10))


def test_cosine_schedule_follows_half_a_cosine_after_warmup():
    base, total, warmup = 2e-3, 110, 10
    assert learning_rate(base, warmup, total, "cosine", warmup) == pytest.approx(base)
    assert learning_rate(base, warmup + 50, total, "cosine", warmup) == pytest.approx(base / 2)
    t = 83
    assert learning_rate(base, t, total, "cosine", warmup) == pytest.approx(
        base * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
    )
    rates = [learning_rate(base, t, total, "cosine", warmup) for t in range(warmup, total)]
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] < base * 1e-3
    assert learning_rate(base, total + 5, total, "cosine") == pytest.approx(0.0, abs=1e-12)  # past the plan


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ConfigError, match="'linear'.*'constant' or 'cosine'"):
        learning_rate(1e-3, 0, 10, "linear")


def test_a_cli_run_steps_with_the_scheduled_rates(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "genssl-train",
        "method=vae",
        "data=digits",
        "data.train_subset=256",
        "data.test_subset=128",
        "trainer.batch_size=32",
        "trainer.max_epochs=2",
        "trainer.log_every=1",
        "eval.enabled=false",
        "trainer.optim.schedule=cosine",
        "trainer.optim.warmup_epochs=0.5",
        *TINY,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr
    steps = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "step"]
    assert len(steps) == 16  # 8 steps per epoch; the rate logged at step s is the one step s−1 used
    expected = [learning_rate(1e-3, r["step"] - 1, 16, "cosine", 4) for r in steps]
    assert [r["lr"] for r in steps] == pytest.approx(expected)
    assert steps[0]["lr"] == pytest.approx(2.5e-4) and steps[-1]["lr"] < 2e-5


def test_a_bad_schedule_fails_before_training(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "genssl-train",
        "method=vae",
        "data=digits",
        "data.train_subset=256",
        "trainer.optim.schedule=step",
        *TINY,
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'step'" in result.stderr and "'cosine'" in result.stderr
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.jsonl").exists()
