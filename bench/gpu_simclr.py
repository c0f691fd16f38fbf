"""SimCLR with a ResNet-18 (CIFAR stem) at batch 512 on 32-px images: seconds per 50,000-image epoch.

    python bench/gpu_simclr.py --steps 40                  # on a CUDA machine
    python bench/gpu_simclr.py --options trainer.compile=true trainer.channels_last=true trainer.precision=bf16

Synthetic CIFAR-shaped uint8 data resident on the device (timing only), genssl's own training step
(colour augmentation on the device, the lean ELBO, Adam). Steps are timed after warm-up with the
device synchronised only around the timed block; one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyro
import torch
from hydra import compose, initialize_config_module

from genssl.cli.overrides import normalise_overrides
from genssl.data.types import ImageDataset, ImageSplit
from genssl.methods import build_method
from genssl.runtime import epoch_generator
from genssl.train.loop import Trainer

EPOCH = 50_000
BATCH = 512


def time_epoch(options: list[str], steps: int, warmup: int) -> dict:
    overrides = ["method=simclr", "data=cifar10", "net.encoder=resnet18", f"trainer.batch_size={BATCH}",
                 "trainer.progress=false", "trainer.device=cuda", *options]  # fmt: skip
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides(overrides))
    device = torch.device("cuda")
    images = torch.randint(0, 256, (BATCH * 4, 3, 32, 32), dtype=torch.uint8)
    split = ImageSplit(images, torch.zeros(len(images), dtype=torch.long))
    method = build_method(cfg, 3, 32).to(device)
    trainer = Trainer(cfg, method, ImageDataset("synthetic", split, split, 10, list("0123456789")), device,
                      Path(tempfile.mkdtemp()))  # fmt: skip
    generator = epoch_generator(0, 0, device)
    method.train()
    batches = [torch.arange(BATCH, device=device) + BATCH * (i % 4) for i in range(steps + warmup)]
    with pyro.validation_enabled(False):
        for index in batches[:warmup]:
            trainer.step(index, generator)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for index in batches[warmup:]:
            trainer.step(index, generator)
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / steps
    return {"options": options, "ms_per_step": round(per_step * 1e3, 2),
            "seconds_per_50k_epoch": round(per_step * EPOCH / BATCH, 2), "estimator": method.estimator,
            "device": torch.cuda.get_device_name()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--options", nargs="*", default=None, help="one configuration of trainer overrides")
    args = parser.parse_args()
    configurations = [args.options] if args.options is not None else [
        [], ["trainer.precision=bf16"], ["trainer.precision=bf16", "trainer.channels_last=true"],
        ["trainer.precision=bf16", "trainer.channels_last=true", "trainer.compile=true"],
    ]  # fmt: skip
    for options in configurations:
        print(json.dumps(time_epoch(options, args.steps, args.warmup)), flush=True)


if __name__ == "__main__":
    main()
