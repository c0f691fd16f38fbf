"""One process against two (torchrun, gloo) on the same global batch: loss curves and samples/s.

    python bench/ddp_digits.py --methods simclr simvae --epochs 10 --batch 128 --out bench/results/ddp_digits

For each method, three genssl-train runs on digits with the same seed and global batch:
``1 process x 2 threads``, ``1 process x 1 thread`` and ``torchrun --nproc_per_node=2`` with 1 thread
per process (the 2-core machine's two ways of using both cores). Rank 1 augments with its own stream,
so the runs see the same images per step but not the same views: the curves agree statistically,
not bitwise (the bitwise check is tests/test_distributed.py). Writes ``<out>.json`` (per-epoch losses,
samples/s, the largest relative gap between the 2-process and 1-process epoch losses) and
``<out>.png`` (the curves).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
# (name, processes, threads per process, seed); the seed-1 run shows how far curves move by chance alone.
RUNS = [("1 process x 2 threads", 1, 2, 0), ("2 processes x 1 thread", 2, 1, 0), ("1 process x 1 thread", 1, 1, 0),
        ("1 process, seed 1", 1, 2, 1)]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(method: str, epochs: int, batch: int, run_dir: Path, procs: int, threads: int, seed: int = 0) -> dict:
    overrides = [
        f"seed={seed}", f"method={method}", "data=digits", f"trainer.max_epochs={epochs}",
        f"trainer.batch_size={batch}",
        "trainer.progress=false", f"trainer.num_threads={threads}", "trainer.log_every=1", "logger=none",
        "eval.enabled=false", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    script = str(BIN / "genssl-train")
    if procs > 1:
        command = [str(BIN / "torchrun"), "--nnodes=1", f"--nproc_per_node={procs}", "--rdzv_backend=c10d",
                   f"--rdzv_endpoint=127.0.0.1:{free_port()}", script, *overrides]  # fmt: skip
    else:
        command = [script, *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "processes": procs,
        "threads_per_process": threads,
        "epoch_loss": [r["loss"] for r in records if r["kind"] == "epoch"],
        "step_loss": [r["loss"] for r in records if r["kind"] == "step"],
        "samples_per_s": metrics["train"]["samples_per_s"],
        "train_seconds": metrics["train"]["seconds"],
        "wall_seconds": wall,
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (method, runs) in zip(axes[0], results.items()):
        for name, run in runs.items():
            label = f"{name} ({run['samples_per_s']:.0f} views/s)"
            ax.plot(range(1, len(run["step_loss"]) + 1), run["step_loss"], label=label, alpha=0.8, linewidth=1)
        ax.set_title(f"{method} on digits: −ELBO per step")
        ax.set_xlabel("step (global batch)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["simclr", "simvae"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ddp_digits"))
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            runs = {}
            for name, procs, threads, seed in RUNS:
                run_dir = Path(tmp) / f"{method}-{procs}-{threads}-{seed}"
                runs[name] = train(method, args.epochs, args.batch, run_dir, procs, threads, seed)
                print(f"{method}: {name}: {runs[name]['samples_per_s']:.0f} views/s", file=sys.stderr)
            one = runs["1 process x 2 threads"]["epoch_loss"]
            for key, other in (("2 processes", "2 processes x 1 thread"), ("another seed", "1 process, seed 1")):
                gaps = [abs(b - a) / max(abs(a), 1e-9) for a, b in zip(one, runs[other]["epoch_loss"])]
                runs[f"largest_relative_epoch_loss_gap: {key}"] = max(gaps)
            results[method] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores", "epochs": args.epochs,
               "global_batch": args.batch, "results": results}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(
        {m: {k: v for k, v in r.items() if isinstance(v, dict)} for m, r in results.items()},
        args.out.with_suffix(".png"),
    )
    for method, runs in results.items():
        gaps = {k.split(": ")[1]: f"{v:.2%}" for k, v in runs.items() if k.startswith("largest")}
        print(f"{method}: largest epoch-loss gap to 1 process, seed 0: {gaps}")


if __name__ == "__main__":
    main()
