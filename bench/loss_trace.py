"""The losses of the first training steps of a few methods, for checking that a change keeps them.

    python bench/loss_trace.py --out /tmp/before.json            # on the old commit
    python bench/loss_trace.py --out /tmp/after.json --compare /tmp/before.json

Each method trains ``--steps`` steps on digits (seed 0, one thread, no evaluation) through
``genssl-train``, logging every step; the script reads the losses back from ``metrics.jsonl``.
With ``--compare`` it exits non-zero unless every loss is bit-identical to the earlier file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ("simvae", "simclr", "byol", "dino", "deepcluster", "mae")


def trace(method: str, steps: int, workdir: Path) -> list[float]:
    run_dir = workdir / method
    genssl_train = Path(sys.executable).parent / "genssl-train"
    command = [
        str(genssl_train),
        f"method={method}",
        "data=digits",
        "seed=0",
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=100",
        "trainer.log_every=1",
        "trainer.num_threads=1",
        "trainer.progress=false",
        "trainer.batch_size=64",
        "eval.enabled=false",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r.get("kind") == "step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        losses = {m: trace(m, args.steps, Path(tmp)) for m in args.methods}
    args.out.write_text(json.dumps(losses, indent=1) + "\n")
    if args.compare is None:
        return
    before = json.loads(args.compare.read_text())
    differ = [m for m in args.methods if before.get(m) != losses[m]]
    for m in args.methods:
        print(f"{m:12s} {'identical' if m not in differ else 'DIFFERENT'} over {len(losses[m])} steps")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
