"""Bad input and faults: one paragraph naming the key, exit status 2, no traceback, nothing on disk changed.

Most cases run ``genssl-train``'s and ``genssl-eval``'s ``main()`` in this process (they fail before
Hydra starts, which is the point); the cases that need a trained run or a signal use the console
scripts. Every case snapshots the folder it works in (every file and its hash) and checks it after.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, TINY, run_cli

QUICK = [*TINY, "data=digits", "data.train_subset=128", "trainer.batch_size=32", "trainer.max_steps=2"]
QUICK += ["eval.enabled=false"]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes (and every folder, as a name)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def call(module: str, argv: list[str], capsys, cwd: Path) -> tuple[int, str]:
    """Run ``genssl.cli.<module>.main()`` with ``argv`` in ``cwd``; (exit status, stderr)."""
    import importlib

    main = importlib.import_module(f"genssl.cli.{module}").main
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = [f"genssl-{module}", *argv]
    os.chdir(cwd)
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    message = err.strip()
    assert message.startswith("genssl: error:") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


CONFIG_CASES = [
    (["method=simclr", "trainer.replay=maybe"], ["trainer.replay", "'maybe'", "true or false"]),
    (["method=simclr", "trainer.batch_size=abc"], ["trainer.batch_size", "'abc'", "integer ≥ 1"]),
    (["method=simclr", "trainer.batch_size=0"], ["trainer.batch_size=0", "≥ 1"]),
    (["method=simclr", "trainer.batch_size=-5"], ["trainer.batch_size=-5"]),
    (["method=simclr", "trainer.optim.lr=-1e-3"], ["trainer.optim.lr", "> 0"]),
    (["method=simclr", "trainer.optim.lr=nan"], ["trainer.optim.lr=nan", "finite"]),
    (["method=simclr", "trainer.optim.lr=inf"], ["trainer.optim.lr=inf", "finite"]),
    (["method=simclr", "trainer.optim.weight_decay=-1"], ["trainer.optim.weight_decay"]),
    (["method=simclr", "trainer.optim.eps=0"], ["trainer.optim.eps", "> 0"]),
    (["method=simclr", "trainer.optim.name=sgd"], ["trainer.optim.name", "'adam'", "'adamw'"]),
    (["method=simclr", "trainer.optim.schedule=linear"], ["trainer.optim.schedule", "'cosine'"]),
    (["method=simclr", "trainer.optim.warmup_epochs=-2"], ["trainer.optim.warmup_epochs"]),
    (["method=simclr", "trainer.max_epochs=-1"], ["trainer.max_epochs=-1"]),
    (["method=simclr", "trainer.max_epochs=1.5"], ["trainer.max_epochs=1.5", "integer"]),
    (["method=simclr", "trainer.max_steps=-3"], ["trainer.max_steps=-3"]),
    (["method=simclr", "trainer.log_every=0"], ["trainer.log_every=0"]),
    (["method=simclr", "trainer.num_threads=-1"], ["trainer.num_threads=-1"]),
    (["method=simclr", "trainer.device=tpu"], ["trainer.device", "'cuda:<index>'"]),
    (["method=simclr", "trainer.precision=64"], ["trainer.precision", "'bf16'"]),
    (["method=simclr", "trainer.resume=maybe"], ["trainer.resume", "true or false"]),
    (["method=simclr", "seed=abc"], ["seed='abc'", "integer"]),
    (["method=simclr", "+trainer.foo=1"], ["trainer.foo", "'batch_size'"]),
    (["method=simclr", "trainer.bacth_size=3"], ["trainer.bacth_size", "Did you mean 'trainer.batch_size'"]),
    (["method=simclr", "data.num_views=0"], ["data.num_views=0"]),
    (["method=simclr", "data.train_subset=0"], ["data.train_subset=0"]),
    (["method=simclr", "data.image_size=-1"], ["data.image_size=-1"]),
    (["method=simclr", "data.likelihood=poisson"], ["data.likelihood", "'bernoulli'"]),
    (["method=simclr", "net.mlp_hidden=[0]"], ["net.mlp_hidden"]),
    (["method=simclr", "eval.knn.k=0"], ["eval.knn.k=0"]),
    (["method=simclr", "eval.linear.val_fraction=1.5"], ["eval.linear.val_fraction"]),
    (["method=simclr", "eval.preset=quick"], ["eval.preset='quick'", "'fast' or 'full'"]),
    (["method=simclr", "eval.linear.whitened_max_iter=0"], ["eval.linear.whitened_max_iter=0"]),
    (["method=simclr", "trainer.gather=everything"], ["trainer.gather='everything'", "'global' or 'local'"]),
    (["method=simclr", "model.terms.temperature=-0.2"], ["model.terms.temperature=-0.2", "> 0"]),
    (["method=simclr", "model.prior=power_law"], ["model.prior", "'vmf_mixture'"]),
    (["method=swav", "model.prior=class_marginal"], ["model.prior.weights has no value", "a list of"]),
    (["method=swav", "model.prior=class_marginal", "model.prior.weights=[1,-2]"], ["model.prior.weights=[1, -2]"]),
    (["method=swav", "model.prior=class_marginal", "model.prior.weights=abc"], ["model.prior.weights='abc'"]),
    (["method=simvae", "model.latent_dim=0"], ["model.latent_dim=0"]),
    (["method=simvae", "model.beta=-1"], ["model.beta=-1"]),
    (["method=simvae", "model.view_var=0"], ["model.view_var=0"]),
    (["method=dino", "guide.prototypes.num=0"], ["guide.prototypes.num=0"]),
    (["method=dino", "method.student_temp=-1"], ["method.student_temp=-1"]),
    (["method=mae", "guide.mask_ratio=1.5"], ["guide.mask_ratio=1.5"]),
    (["method=mae", "model.prior=normal"], ["mae has no content latent"]),
    (["method=simclr", "logger=wandb", "logger.mode=cloud"], ["logger.mode", "'offline'"]),
    (["method=simclrr"], ["method 'simclrr'", "'simclr'"]),
    (["method=simclr", "data=imagenet"], ["data 'imagenet'", "'digits'"]),
    (["method=simclr", "trainer.resume=true"], ["trainer.resume=true", "no checkpoint"]),
    (["method=simclr", "trainer.resume=true", "trainer.overwrite=true"], ["contradict"]),
]


@pytest.mark.parametrize("argv,fragments", CONFIG_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_config_values_are_refused_before_anything_is_written(tmp_path, capsys, argv, fragments):
    before = snapshot(tmp_path)
    code, err = call("train", [*QUICK, *argv, f"hydra.run.dir={tmp_path / 'run'}"], capsys, tmp_path)
    assert_refused(code, err, *fragments)
    assert snapshot(tmp_path) == before


BAD_PRIORS = textwrap.dedent("""
    import pyro, pyro.distributions as dist, torch
    def raises(b, d): raise RuntimeError("boom")
    def wrong_shape(b, d): return pyro.sample("y", dist.Normal(0., 1.).expand([d + 1]).to_event(1))
    def no_event(b, d): return pyro.sample("y", dist.Normal(torch.zeros(d), 1.))
    def other_name(b, d): return pyro.sample("z", dist.Normal(0., 1.).expand([d]).to_event(1))
    def samples_nothing(b, d): return None
    def returns_none(b, d): pyro.sample("y", dist.Normal(0., 1.).expand([d]).to_event(1))
    def continuous(b, k): return pyro.sample("y", dist.Normal(0., 1.).expand([k]).to_event(1))
""")
PRIOR_CASES = [
    ("raises", "simclr", ["failed when called", "RuntimeError: boom"]),
    ("wrong_shape", "simvae", ["event shape [65], not [64]"]),
    ("no_event", "simclr", ["forget .to_event(1)"]),
    ("other_name", "byol", ["samples no site 'y'", "it samples 'z'"]),
    ("samples_nothing", "vicreg", ["samples no site 'y'", "samples nothing"]),
    ("returns_none", "simvae", ["returned None"]),
    ("continuous", "dino", ["does not fit dino", "prototypes", "R^d", "'power_law'"]),
    ("missing_function", "simclr", ["Could not build the prior", "missing_function"]),
]


@pytest.mark.parametrize("prior,method,fragments", PRIOR_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_a_broken_user_prior_gets_one_paragraph_with_the_contract(tmp_path, capsys, prior, method, fragments):
    (tmp_path / "badpriors.py").write_text(BAD_PRIORS)
    before = snapshot(tmp_path)
    argv = [*QUICK, f"method={method}", f"model.prior._target_=badpriors.{prior}", f"hydra.run.dir={tmp_path / 'r'}"]
    code, err = call("train", argv, capsys, tmp_path)
    assert_refused(code, err, "model.prior", *fragments)
    if prior not in ("missing_function", "continuous"):
        assert "A prior is a Pyro callable" in err
    assert snapshot(tmp_path) == before
    sys.modules.pop("badpriors", None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished simclr run (two steps, evaluation off) and a copy of it to damage."""
    folder = tmp_path_factory.mktemp("finished")
    run_dir = folder / "run"
    result = run_cli("genssl-train", "method=simclr", *QUICK, f"hydra.run.dir={run_dir}", cwd=folder)
    assert result.returncode == 0, result.stderr
    return run_dir


def copy_run(run_dir: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run_dir, to)
    return to


def damage_checkpoint(path: Path, how: str) -> None:
    state = torch.load(path, weights_only=True)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif how == "random":
        path.write_bytes(os.urandom(2048))
    elif how == "not_a_checkpoint":
        torch.save({"weights": torch.zeros(3)}, path)
    elif how == "newer":
        state["format"] = 99
        torch.save(state, path)
    elif how == "no_method_key":
        state.pop("method")
        torch.save(state, path)


CHECKPOINT_CASES = [
    ("truncated", ["cannot be read", "truncated"]),
    ("random", ["cannot be read"]),
    ("not_a_checkpoint", ["not a genssl checkpoint", "lacks"]),
    ("newer", ["format 99", "upgrade genssl"]),
    ("no_method_key", ["not a genssl checkpoint", "method"]),
]


@pytest.mark.parametrize("how,fragments", CHECKPOINT_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_resume_from_a_damaged_or_foreign_checkpoint_is_refused(tmp_path, capsys, finished, how, fragments):
    run_dir = copy_run(finished, tmp_path / "run")
    damage_checkpoint(run_dir / "checkpoints" / "last.pt", how)
    before = snapshot(tmp_path)
    argv = [*QUICK, "method=simclr", "trainer.resume=true", f"hydra.run.dir={run_dir}"]
    code, err = call("train", argv, capsys, tmp_path)
    assert_refused(code, err, "last.pt", *fragments)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("how,fragments", CHECKPOINT_CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_evaluating_a_damaged_or_foreign_checkpoint_is_refused(tmp_path, capsys, finished, how, fragments):
    run_dir = copy_run(finished, tmp_path / "run")
    damage_checkpoint(run_dir / "checkpoints" / "last.pt", how)
    before = snapshot(tmp_path)
    code, err = call("eval", [f"run_dir={run_dir}"], capsys, tmp_path)
    assert_refused(code, err, *fragments)
    assert snapshot(tmp_path) == before


RUN_CASES = [
    (["method=simclr"], ["already holds a run", "trainer.resume=true", "trainer.overwrite=true"]),
    (["method=byol", "trainer.resume=true"], ["written by method=simclr, not method=byol"]),
    (["method=simclr", "trainer.resume=true", "guide.projector.out_dim=64"], ["does not fit this run's simclr"]),
    (["method=simclr", "trainer.resume=true", "net.encoder=mlp"], ["does not fit"]),
]


@pytest.mark.parametrize("argv,fragments", RUN_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_finished_run_is_never_rewritten_by_a_bad_command(tmp_path, capsys, finished, argv, fragments):
    run_dir = copy_run(finished, tmp_path / "run")
    before = snapshot(tmp_path)
    code, err = call("train", [*QUICK, *argv, f"hydra.run.dir={run_dir}"], capsys, tmp_path)
    assert_refused(code, err, *fragments)
    assert snapshot(tmp_path) == before  # .hydra/config.yaml included


EVAL_CASES = [
    (["eval.knn.kk=5"], ["eval.knn.kk", "'k'"]),
    (["eval.knn.k=0"], ["eval.knn.k=0"]),
    (["eval.knn.k=100000"], ["eval.knn.k=100000", "training images"]),
    (["trainer.device=tpu"], ["trainer.device"]),
    (["eval.preset=thorough"], ["eval.preset='thorough'", "'fast' or 'full'"]),
    (["not_an_override"], ["Unexpected argument"]),
]


@pytest.mark.parametrize("argv,fragments", EVAL_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_genssl_eval_refuses_misspelt_keys_and_impossible_values(tmp_path, capsys, finished, argv, fragments):
    run_dir = copy_run(finished, tmp_path / "run")
    before = snapshot(tmp_path)
    code, err = call("eval", [f"run_dir={run_dir}", *argv], capsys, tmp_path)
    assert_refused(code, err, *fragments)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "damage,fragments",
    [
        (lambda r: (r / "metrics.json").write_text("{not json"), ["metrics.json", "damaged"]),
        (lambda r: (r / ".hydra" / "config.yaml").write_text("method: [unclosed"), ["config.yaml", "does not parse"]),
        (lambda r: (r / ".hydra" / "config.yaml").write_text("just: a value\n"), ["not a genssl run's config"]),
        (lambda r: (r / ".hydra" / "config.yaml").unlink(), ["does not exist"]),
    ],
)
def test_genssl_eval_reports_damaged_run_files(tmp_path, capsys, finished, damage, fragments):
    run_dir = copy_run(finished, tmp_path / "run")
    (run_dir / "metrics.json").write_text(json.dumps({"method": "simclr", "data": "digits"}))
    damage(run_dir)
    before = snapshot(tmp_path)
    code, err = call("eval", [f"run_dir={run_dir}"], capsys, tmp_path)
    assert_refused(code, err, *fragments)
    assert snapshot(tmp_path) == before


def test_a_run_dir_that_is_a_file_or_unwritable_is_refused(tmp_path, capsys, monkeypatch):
    target = tmp_path / "afile"
    target.write_text("not a folder")
    before = snapshot(tmp_path)
    code, err = call("train", ["method=simclr", *QUICK, f"hydra.run.dir={target}"], capsys, tmp_path)
    assert_refused(code, err, "is a file")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    before = snapshot(tmp_path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == readonly else real_access(p, mode))
    code, err = call("train", ["method=simclr", *QUICK, f"hydra.run.dir={readonly / 'run'}"], capsys, tmp_path)
    assert_refused(code, err, "not writable", str(readonly))
    assert snapshot(tmp_path) == before


def test_a_sweep_checks_every_job_before_it_launches_any(tmp_path, capsys):
    argv = ["-m", *QUICK, "method=simclr,vae", "trainer.batch_size=8,-1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    code, err = call("train", argv, capsys, tmp_path)
    assert_refused(code, err, "In the sweep job", "trainer.batch_size=-1")
    assert not (tmp_path / "sweep").exists()


def test_a_users_own_config_groups_are_valid_names(tmp_path):
    groups = tmp_path / "myconfigs" / "data"
    groups.mkdir(parents=True)
    digits = (Path(__file__).resolve().parents[1] / "configs" / "data" / "digits.yaml").read_text()
    (groups / "mydigits.yaml").write_text(digits)
    run_dir = tmp_path / "run"
    result = run_cli(
        "genssl-train", f"--config-dir={tmp_path / 'myconfigs'}", "method=simclr", "data=mydigits",
        *[q for q in QUICK if q != "data=digits"], f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (run_dir / "checkpoints" / "last.pt").exists()


def test_a_config_file_that_does_not_parse_is_one_paragraph(tmp_path, capsys):
    groups = tmp_path / "myconfigs" / "data"
    groups.mkdir(parents=True)
    (groups / "broken.yaml").write_text("name: broken\n  indented: [oops\n")
    argv = [f"--config-dir={tmp_path / 'myconfigs'}", "method=simclr", "data=broken", *TINY]
    code, err = call("train", argv, capsys, tmp_path)
    assert_refused(code, err, "YAML")


def test_a_diverging_run_stops_without_writing_non_finite_weights(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        "genssl-train", "method=simclr", *QUICK, "trainer.optim.lr=1e30", "trainer.log_every=1",
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "non-finite" in result.stderr or "diverged" in result.stderr
    assert not (run_dir / "checkpoints" / "last.pt").exists()


def test_sigterm_stops_at_a_step_and_the_run_resumes_from_there(tmp_path):
    run_dir = tmp_path / "run"
    command = [str(BIN / "genssl-train"), "method=simclr", *TINY, "data=digits", "trainer.batch_size=16",
               "trainer.max_epochs=3", "eval.enabled=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert "trainer.resume=true" in err
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    if "epoch_position" in state:
        assert 0 < state["epoch_position"]["steps_done"]
    result = run_cli("genssl-train", "method=simclr", *TINY, "data=digits", "trainer.batch_size=16",
                     "trainer.max_epochs=3", "eval.enabled=false", "trainer.resume=true", f"hydra.run.dir={run_dir}",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "metrics.jsonl repeats steps after the resume"


def test_stale_temporaries_of_an_interrupted_write_are_removed(tmp_path, finished):
    run_dir = copy_run(finished, tmp_path / "run")
    stale = run_dir / "checkpoints" / ".tmp-killed.pt"
    stale.write_bytes(b"half a checkpoint")
    result = run_cli("genssl-train", "method=simclr", *QUICK, "trainer.resume=true", "trainer.max_steps=3",
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
