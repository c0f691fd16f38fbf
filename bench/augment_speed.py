"""Augmentation throughput: genssl's batched multi-view augmentation against torchvision and kornia.

    python bench/augment_speed.py                         # 1 thread, every pipeline, 15 rounds
    python bench/augment_speed.py --threads 2 --rounds 30 --pipelines fashion
    python bench/augment_speed.py --compare-with HEAD~1   # also time genssl's augmentation at a git revision

Pipelines (parameters read from ``configs/data/augment/*.yaml``):

- ``fashion``: Fashion-MNIST-like 28-px grey uint8 images, the ``fashion`` config (random resized
  crop 0.6–1, horizontal flip).
- ``colour``: CIFAR-like 32-px RGB uint8 images, the ``colour`` config (crop, flip, colour jitter
  0.8/0.8/0.8/0.2 with p 0.8, random grey 0.2).
- ``simclr``: ``colour`` plus SimCLR's Gaussian blur (p 0.5, sigma 0.1–2, kernel 3 = 10 % of 32 px):
  the full colour SimCLR pipeline.

Every pipeline turns 256 images into 2 views each and is timed three ways:

- ``genssl``: :func:`genssl.data.build_augment` on the whole uint8 batch (float32 views out);
- ``torchvision``: ``torchvision.transforms.v2`` per-sample transforms equivalent to the same
  pipeline, called image by image and view by view as a DataLoader worker would, on uint8
  tensors, ending in ``ToDtype(float32, scale=True)`` and a ``torch.stack`` of the views (the
  collate); no worker processes, so this is per-process throughput;
- ``kornia``: ``kornia.augmentation``'s batched equivalents on the ``B·J`` float views.

The contenders alternate within every round, so machine noise hits them alike; figures are medians
over rounds. One JSON line per (pipeline, contender), then one line of ratios per pipeline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from genssl.data import build_augment

ROOT = Path(__file__).resolve().parents[1]
SIMCLR_BLUR = {"p": 0.5, "sigma": [0.1, 2.0], "kernel_size": 3}
PIPELINES = {
    # name: (config file, channels, side, extra options)
    "fashion": ("fashion", 1, 28, {}),
    "colour": ("colour", 3, 32, {}),
    "simclr": ("colour", 3, 32, {"blur": SIMCLR_BLUR}),
}


def pipeline_config(name: str) -> tuple[dict, int, int]:
    file, channels, side, extra = PIPELINES[name]
    cfg = yaml.safe_load((ROOT / "configs" / "data" / "augment" / f"{file}.yaml").read_text())
    cfg.update(extra)
    return cfg, channels, side


def torchvision_transform(cfg: dict, side: int):
    from torchvision.transforms import v2

    steps = []
    if cfg.get("crop"):
        crop = cfg["crop"]
        steps.append(v2.RandomResizedCrop(side, scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"])))
    if cfg.get("hflip"):
        steps.append(v2.RandomHorizontalFlip(cfg["hflip"]))
    if cfg.get("vflip"):
        steps.append(v2.RandomVerticalFlip(cfg["vflip"]))
    if cfg.get("rotation"):
        steps.append(v2.RandomApply([v2.RandomRotation(cfg["rotation"]["degrees"])], p=cfg["rotation"]["p"]))
    if cfg.get("color_jitter"):
        j = cfg["color_jitter"]
        jitter = v2.ColorJitter(j["brightness"], j["contrast"], j["saturation"], j["hue"])
        steps.append(v2.RandomApply([jitter], p=j["p"]))
    if cfg.get("grayscale"):
        steps.append(v2.RandomGrayscale(cfg["grayscale"]))
    if cfg.get("blur"):
        b = cfg["blur"]
        steps.append(v2.RandomApply([v2.GaussianBlur(b["kernel_size"], sigma=tuple(b["sigma"]))], p=b["p"]))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def kornia_transform(cfg: dict, side: int):
    import kornia.augmentation as K

    steps = []
    if cfg.get("crop"):
        crop = cfg["crop"]
        steps.append(K.RandomResizedCrop((side, side), scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"])))
    if cfg.get("hflip"):
        steps.append(K.RandomHorizontalFlip(p=cfg["hflip"]))
    if cfg.get("vflip"):
        steps.append(K.RandomVerticalFlip(p=cfg["vflip"]))
    if cfg.get("rotation"):
        steps.append(K.RandomRotation(cfg["rotation"]["degrees"], p=cfg["rotation"]["p"]))
    if cfg.get("color_jitter"):
        j = cfg["color_jitter"]
        steps.append(K.ColorJitter(j["brightness"], j["contrast"], j["saturation"], j["hue"], p=j["p"]))
    if cfg.get("grayscale"):
        steps.append(K.RandomGrayscale(p=cfg["grayscale"]))
    if cfg.get("blur"):
        b = cfg["blur"]
        k = b["kernel_size"]
        steps.append(K.RandomGaussianBlur((k, k), tuple(b["sigma"]), p=b["p"]))
    return K.AugmentationSequential(*steps)


def genssl_at_revision(rev: str):
    """genssl's MultiViewAugment class as it was at git revision ``rev`` (augment.py + colour.py)."""
    folder = Path(tempfile.mkdtemp(prefix="genssl_augment_"))
    modules = {}
    for name in ("colour", "augment"):
        source = subprocess.run(
            ["git", "show", f"{rev}:genssl/data/{name}.py"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
        path = folder / f"old_{name}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"_old_genssl_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        modules[name] = module
    modules["augment"].colour = modules["colour"]  # the old augment calls the old colour functions
    return modules["augment"].build_augment


def contenders_for(name: str, b: int, j: int, skip: list[str], old_build) -> dict:
    """The pipeline's contenders: name -> a function that augments the batch once."""
    cfg, channels, side = pipeline_config(name)
    images = torch.randint(
        0, 256, (b, channels, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    augment = build_augment(cfg, j, side)
    generator = torch.Generator().manual_seed(0)
    contenders = {"genssl": lambda: augment(images, generator)}
    if old_build is not None:
        old = old_build(cfg, j, side)
        old_generator = torch.Generator().manual_seed(0)
        contenders["genssl_old"] = lambda: old(images, old_generator)
    if "torchvision" not in skip:
        tv = torchvision_transform(cfg, side)
        per_image = list(images)  # a dataset's __getitem__ hands out one [C, H, W] tensor
        # Each view transformed on its own, then collated as a DataLoader would.
        contenders["torchvision"] = lambda: torch.stack([torch.stack([tv(img) for _ in range(j)]) for img in per_image])
    if "kornia" not in skip:
        ko = kornia_transform(cfg, side)

        def kornia_batch():
            x = images.float().div_(255.0).unsqueeze(1).expand(b, j, channels, side, side)
            with torch.no_grad():
                return ko(x.reshape(b * j, channels, side, side)).view(b, j, channels, side, side)

        contenders["kornia"] = kornia_batch
    return contenders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=list(PIPELINES))
    parser.add_argument("--skip", nargs="*", default=[], choices=["torchvision", "kornia"])
    parser.add_argument("--compare-with", default=None, help="a git revision whose genssl augmentation to time too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    old_build = genssl_at_revision(args.compare_with) if args.compare_with else None
    b, j = args.images, args.views
    header = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    for name in args.pipelines:
        contenders = contenders_for(name, b, j, args.skip, old_build)
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for fn in contenders.values():  # warm-up
            fn()
        for _ in range(args.rounds):
            for key, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        header["load_avg_1m"] = round(os.getloadavg()[0], 2)  # after the pipeline's rounds
        rates = {}
        for key, ts in times.items():
            rates[key] = b * j / statistics.median(ts)
            print(json.dumps({"pipeline": name, "impl": key, "views_per_s": round(rates[key]), **header}))
        ratios = {f"genssl/{k}": round(rates["genssl"] / rates[k], 2) for k in rates if k != "genssl"}
        print(json.dumps({"pipeline": name, "ratios": ratios, "rounds": args.rounds, **header}), flush=True)


if __name__ == "__main__":
    main()
