"""Training throughput (augmented views per second) of a method's full step, and of augmentation alone.

    python bench/train_throughput.py method=simvae data=fashion_mnist --threads 1 --steps 30

Builds the method from the same Hydra configs as genssl-train, feeds synthetic uint8 batches of the
dataset's shape (no data loading), and times augment + ELBO + backward + Adam. The two timings
alternate within one process, so machine noise hits both alike; results print as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from hydra import compose, initialize_config_module

from genssl.cli.overrides import normalise_overrides
from genssl.data import build_augment
from genssl.methods import build_method
from genssl.runtime import autocast, epoch_generator, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="genssl-train overrides, e.g. method=vae")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides(args.overrides))
    device = resolve_device(cfg.trainer.device)
    d = cfg.data
    method = build_method(cfg, d.channels, d.image_size).to(device)
    augment = build_augment(d.augment, d.num_views, d.image_size).to(device)
    optimizer = torch.optim.Adam(method.parameters(), lr=cfg.trainer.optim.lr)
    batch = torch.randint(
        0, 256, (cfg.trainer.batch_size, d.channels, d.image_size, d.image_size), dtype=torch.uint8, device=device
    )
    generator = epoch_generator(cfg.seed, 0, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step() -> None:
        with torch.device(device):
            views, _ = augment(batch, generator)
            with autocast(device, cfg.trainer.precision):
                loss = method(views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def augment_only() -> None:
        with torch.device(device):
            augment(batch, generator)

    timings: dict[str, list[float]] = {"step": [], "augment": []}
    for i in range(args.warmup + args.steps):
        for name, fn in (("step", step), ("augment", augment_only)):
            sync()
            tick = time.perf_counter()
            fn()
            sync()
            if i >= args.warmup:
                timings[name].append(time.perf_counter() - tick)
    views = cfg.trainer.batch_size * d.num_views
    result = {
        "method": cfg.method.name,
        "data": d.name,
        "encoder": cfg.net.encoder,
        "batch_images": cfg.trainer.batch_size,
        "views_per_step": views,
        "device": str(device),
        "precision": str(cfg.trainer.precision),
        "threads": args.threads,
        "machine": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "step_views_per_s": views / statistics.median(timings["step"]),
        "augment_views_per_s": views / statistics.median(timings["augment"]),
        "augment_share_of_step": statistics.median(timings["augment"]) / statistics.median(timings["step"]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
