"""Distributed runs from the command line: torchrun with 2 gloo processes, Slurm's environment and launcher.

- ``torchrun --nproc_per_node=2 genssl-train ...`` shares one run directory written by rank 0 only; a run
  stopped by SIGTERM (as Slurm preempts) and requeued (SLURM_RESTART_COUNT=1, which resumes) ends with
  the same weights and the same logged losses as one never stopped.
- Slurm's task environment maps to torch.distributed's rendezvous.
- ``hydra/launcher=slurm`` composes from overrides into the sbatch script submitit would submit, and
  submitit's local executor runs a genssl job here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, TINY, run_cli

from genssl.distributed import environment, expand_hostlist, slurm_rendezvous

RUN = [
    "method=simclr",
    "data=digits",
    *TINY,
    "trainer.batch_size=32",
    "trainer.max_epochs=3",
    "trainer.log_every=1",
    "eval.enabled=false",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    command = [str(BIN / "torchrun"), "--nnodes=1", "--nproc_per_node=2", f"--rdzv_endpoint=127.0.0.1:{free_port()}",
               "--rdzv_backend=c10d", str(BIN / "genssl-train"), *args]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def step_losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "step"}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["method"]


def test_torchrun_run_stopped_and_requeued_matches_an_uninterrupted_one(tmp_path):
    code, err = finish(torchrun(*RUN, "hydra.run.dir=whole", cwd=tmp_path))
    assert code == 0, err
    whole = tmp_path / "whole"
    assert sorted(p.name for p in whole.iterdir()) == [".hydra", "checkpoints", "metrics.json", "metrics.jsonl",
                                                       "train.log"]  # fmt: skip
    assert err.count("genssl: simclr on digits") == 1, "only rank 0 reports"

    # The same run without hydra.run.dir: both ranks find rank 0's time-stamped directory.
    process = torchrun(*RUN, cwd=tmp_path)
    deadline = time.time() + 240
    while time.time() < deadline:
        runs = list((tmp_path / "outputs").glob("simclr/digits/*/metrics.jsonl"))
        if runs and process.poll() is None and len(runs[0].read_text().splitlines()) >= 8:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # what Slurm sends at preemption; torchrun passes it on
    code, err = finish(process)
    # torchrun itself prints a traceback for the signal it got; the workers stop cleanly, with a checkpoint.
    assert code != 0 and "genssl: stopped at step" in err and not re.search(r'File ".*genssl[/-]', err), err
    assert len(list((tmp_path / "outputs").glob("simclr/digits/*"))) == 1, "the ranks wrote different run dirs"
    stopped = runs[0].parent
    state = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] < 3 * (1437 // 32), "the run finished before it was stopped: nothing was tested"

    code, err = finish(torchrun(*RUN, f"hydra.run.dir={stopped}", cwd=tmp_path, env={"SLURM_RESTART_COUNT": "1"}))
    assert code == 0, err
    assert "resuming from" in err
    assert step_losses(stopped) == step_losses(whole)
    resumed, uninterrupted = weights(stopped), weights(whole)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused(tmp_path):
    code, err = finish(torchrun(*RUN, "trainer.batch_size=33", "hydra.run.dir=odd", cwd=tmp_path))
    assert code != 0 and not re.search(r'File ".*genssl[/-]', err), err  # torchrun's own report aside
    assert err.count("genssl: error: trainer.batch_size=33") == 1 and "multiple of 2" in err, err
    assert not (tmp_path / "odd" / "checkpoints").exists()


def test_slurm_environment_gives_the_rendezvous():
    hosts = ["gpu01", "gpu02", "gpu03", "gpu07", "login5", "n8x", "n9x"]
    assert expand_hostlist("gpu[01-03,07],login5,n[8-9]x") == hosts
    assert expand_hostlist("r[1-2]-n[1-2]") == ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]
    env = {"SLURM_JOB_NODELIST": "node[12-13]", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "5", "SLURM_NTASKS": "8",
           "SLURM_LOCALID": "1"}  # fmt: skip
    got = slurm_rendezvous(env)
    assert got == {"MASTER_ADDR": "node12", "MASTER_PORT": str(20000 + 4242), "RANK": "5", "WORLD_SIZE": "8",
                   "LOCAL_RANK": "1"}  # fmt: skip
    assert environment(env) == got
    assert environment({**env, "SLURM_NTASKS": "1"}) == {}, "a one-task job is not distributed"
    torchrun_env = {**env, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "a", "MASTER_PORT": "1"}
    assert environment(torchrun_env)["WORLD_SIZE"] == "2", "torchrun's variables win inside a Slurm job"


def test_slurm_launcher_config_becomes_the_sbatch_script(tmp_path, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import submitit
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    overrides = ["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4",
                 "hydra.launcher.partition=gpu", "hydra.launcher.account=ssl-lab", "hydra.launcher.timeout_min=600",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    captured = {}

    def map_array(executor, *args):
        captured["executor"] = executor
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    launcher.launch([["seed=0"]], initial_job_idx=0)
    script = captured["executor"]._executor._make_submission_file_text("genssl-job", "uid")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--account=ssl-lab",
                 "--time=600", "--signal=USR2@120", "--cpus-per-task=8"):  # fmt: skip
        assert f"#SBATCH {line}" in script, f"{line} missing from:\n{script}"
    assert captured["executor"]._executor.max_num_timeout == 3


def test_submitit_local_executor_runs_a_job(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = run_cli("genssl-train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     f"hydra.sweep.dir={sweep}", "method=simclr", "data=digits", *TINY, "trainer.max_steps=3",
                     "eval.enabled=false", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (metrics,) = sweep.glob("*/metrics.json")
    assert json.loads(metrics.read_text())["train"]["steps"] == 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
