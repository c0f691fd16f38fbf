"""genssl-train / genssl-eval end to end on small data: run-dir contract, resume, errors, priors."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from conftest import TINY, run_cli

DIGITS = ["data=digits", "data.train_subset=256", "data.test_subset=128", "trainer.batch_size=32", *TINY]


def train(tmp_path, *overrides, name="run"):
    run_dir = tmp_path / name
    result = run_cli("genssl-train", *overrides, f"hydra.run.dir={run_dir}")
    return result, run_dir


def assert_one_paragraph_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("genssl: error:") and "\n\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_simvae_run_writes_the_run_dir_contract(tmp_path):
    result, run_dir = train(
        tmp_path, "method=simvae", *DIGITS, "trainer.max_epochs=2", "trainer.log_every=4", "eval.knn.k=5"
    )
    assert result.returncode == 0, result.stderr
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 16
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert all(r["loss"] == r["loss"] for r in records)  # no NaN
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == "simvae" and metrics["data"] == "digits"
    assert set(metrics) >= {"content", "style", "style_mean", "rank_me", "baseline", "train", "elbo"}
    # 256 training images (about 25 per class) can give linear_10 but not linear_100, which says why.
    assert set(metrics["content"]) == {"linear", "mlp", "knn", "linear_10", "gmm_acc", "nmi", "ari"}
    assert metrics["probes"]["linear_100"].startswith("skipped")
    assert all(0.0 <= v <= 1.0 for k, v in metrics["content"].items() if k != "ari")
    # Digits has no ground-truth style: the style probes read the augmentation parameters of a view.
    assert metrics["style_source"] == "augmentation" and "aug_crop_scale" in metrics["style"]
    assert set(metrics["style"]["aug_hflip"]) == {"metric", "linear", "mlp"}
    assert metrics["style"]["aug_hflip"]["metric"] == "acc"
    assert set(metrics["baseline"]) >= {"content", "style", "style_mean", "rank_me"}
    assert set(metrics["baseline"]["content"]) == set(metrics["content"])
    for artefact in ("embedding.npz", "reconstructions.png", "samples.png", "traversals.png"):
        assert (run_dir / "eval" / artefact).is_file(), artefact
    # The baseline is the untrained network of this seed: a zero-epoch run scores exactly it.
    untrained, untrained_dir = train(
        tmp_path, "method=simvae", *DIGITS, "trainer.max_epochs=0", "eval.knn.k=5", name="untrained"
    )
    assert untrained.returncode == 0, untrained.stderr
    zero = json.loads((untrained_dir / "metrics.json").read_text())
    assert zero["train"]["steps"] == 0 and (untrained_dir / "checkpoints" / "last.pt").is_file()
    assert zero["content"] == pytest.approx(metrics["baseline"]["content"], abs=1e-6)
    assert zero["baseline"]["content"] == zero["content"]
    assert metrics["train"]["epochs"] == 2 and metrics["train"]["steps"] == 16
    assert metrics["train"]["samples_per_s"] > 0
    # genssl-eval re-runs the evaluation from the run dir alone and gets the same figures.
    metrics_path = run_dir / "metrics.json"
    metrics_path.unlink()
    again = run_cli("genssl-eval", f"run_dir={run_dir}")
    assert again.returncode == 0, again.stderr
    re_evaluated = json.loads(metrics_path.read_text())
    assert re_evaluated["probes"]["knn_k"] == metrics["probes"]["knn_k"] == 5  # the run's own eval settings
    # Closed-form and L-BFGS probes repeat to 1e-6; the minibatch MLP probe, trained for a few epochs on
    # ~230 images, can flip one of the 128 test predictions on last-bit differences in the features.
    mlp = re_evaluated["content"].pop("mlp"), metrics["content"].pop("mlp")
    assert re_evaluated["content"] == pytest.approx(metrics["content"], abs=1e-6)
    assert mlp[0] == pytest.approx(mlp[1], abs=2 / 128)
    # The summary table shows the run's figures.
    from genssl.eval.summary import format_table, rows

    table = format_table(rows([run_dir, tmp_path / "missing"]))
    assert "simvae" in table and f"{metrics['content']['linear']:.4f}" in table and "missing" not in table


@pytest.mark.parametrize("method", ["simvae", "directpred"])
def test_resume_continues_exactly(tmp_path, method):
    """Weights, optimiser, RNG and running state (EMA target, DirectPred's F̂) all resume."""
    common = [f"method={method}", *DIGITS, "eval.enabled=false"]  # the checkpoints are compared, not the probes
    straight, straight_dir = train(tmp_path, *common, "trainer.max_epochs=2", name="straight")
    # Interrupted after the first epoch of the same 2-epoch plan (schedules depend on the plan).
    first, resumed_dir = train(tmp_path, *common, "trainer.max_epochs=2", "trainer.max_steps=8", name="resumed")
    second, _ = train(tmp_path, *common, "trainer.max_epochs=2", "trainer.resume=true", name="resumed")
    for result in (straight, first, second):
        assert result.returncode == 0, result.stderr
    a = torch.load(straight_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed_dir / "checkpoints" / "last.pt", weights_only=True)
    assert b["epoch"] == 2
    for key, value in a["method"].items():
        torch.testing.assert_close(b["method"][key], value, msg=key)


def test_user_prior_from_own_module_trains_and_is_checkpointed(tmp_path):
    (tmp_path / "userpriors.py").write_text(
        textwrap.dedent("""
        import pyro, torch
        import pyro.distributions as dist
        from pyro.nn import PyroModule, PyroParam

        class LaplacePrior(PyroModule):
            def __init__(self, scale: float = 1.0):
                super().__init__()
                self.scale = PyroParam(torch.tensor(scale), constraint=dist.constraints.positive)

            def forward(self, batch_size, latent_dim):
                return pyro.sample("y", dist.Laplace(0.0, self.scale).expand([latent_dim]).to_event(1))
    """)
    )
    run_dir = tmp_path / "run"
    result = run_cli(
        "genssl-train",
        "method=simvae",
        *DIGITS,
        "trainer.max_steps=6",
        "eval.enabled=false",
        "model.prior._target_=userpriors.LaplacePrior",
        "+model.prior.scale=0.5",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["method"]
    key = "objective.model.prior.scale_unconstrained"
    assert key in state
    assert not torch.isclose(state[key], torch.tensor(0.5).log()), "the prior's scale did not train"
    assert "objective.guide.content_log_scale" in state  # y is sampled and guided, not integrated out


def test_mixture_prior_via_name(tmp_path):
    result, run_dir = train(
        tmp_path,
        "method=simvae",
        "model.prior=mog",
        "model.latent_dim=8",
        *DIGITS,
        "trainer.max_steps=4",
        "eval.enabled=false",
    )
    assert result.returncode == 0, result.stderr
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["method"]
    assert state["objective.model.prior.means_unconstrained"].shape == (10, 8)


@pytest.mark.parametrize(
    "override,fragments",
    [
        ("method=simclrr", ["method 'simclrr'", "'simvae'", "'vae'"]),
        ("data=imagenet", ["data 'imagenet'", "'fashion_mnist'", "'shapes'"]),
        ("model.prior=cauchy", ["model.prior 'cauchy'", "'flat'", "'mog'", "_target_"]),
        ("trainer.device=cuda", ["trainer.device=cuda", "no CUDA device"]),
        ("data.num_views=1", ["data.num_views=1", "method=vae"]),
        ("model.prior._target_=nowhere.Prior", ["nowhere.Prior", "prior"]),
        ("trainer.resume=true", ["no checkpoint"]),
        ("data.image_size=40", ["40×40", "28, 32, 64", "net.encoder=mlp"]),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(tmp_path, override, fragments):
    if override == "trainer.device=cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    result, run_dir = train(tmp_path, "method=simvae", *DIGITS, "trainer.max_steps=2", override)
    assert_one_paragraph_error(result, *fragments)
    assert not (run_dir / "checkpoints").exists()
    assert not (run_dir / "metrics.json").exists()


def test_eval_without_run_dir_explains(tmp_path):
    assert_one_paragraph_error(run_cli("genssl-eval", f"run_dir={tmp_path}"), "config.yaml", "genssl-train")


@pytest.mark.parametrize("method", ["simvae", "beta_vae"])
def test_shapes_trains_and_evaluates(tmp_path, method):
    result, run_dir = train(
        tmp_path,
        f"method={method}",
        "data=shapes",
        "data.options.num_train=512",
        "data.options.num_test=256",
        "trainer.batch_size=64",
        "trainer.max_epochs=1",
        *TINY,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["data"] == "shapes" and 0.0 <= metrics["content"]["linear"] <= 1.0
    # Ground-truth factors are probed on clean images (and set style_mean); augmentation ones too.
    assert metrics["style_source"] == "ground truth"
    assert {"pos_x", "pos_y", "scale", "rotation", "hue"} <= set(metrics["style"])
    assert any(name.startswith("aug_") for name in metrics["style"])
    assert set(metrics["dci"]) >= {"disentanglement", "completeness", "informativeness"}
    assert 0.0 <= metrics["mig"] <= 1.0 and "mig" in metrics["baseline"]


def test_bf16_on_cpu_and_wandb_offline(tmp_path):
    result, run_dir = train(
        tmp_path,
        "method=vae",
        *DIGITS,
        "trainer.max_steps=3",
        "trainer.precision=bf16",
        "logger=wandb",
        "trainer.log_every=1",
        "eval.enabled=false",
    )
    assert result.returncode == 0, result.stderr
    assert list((run_dir / "wandb").glob("offline-run-*")), "wandb should log offline into the run dir"
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) >= 3
