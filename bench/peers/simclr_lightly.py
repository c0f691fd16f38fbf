"""SimCLR on Fashion-MNIST, end to end: genssl's training loop against the way lightly's users write it.

    OMP_NUM_THREADS=2 python bench/peers/simclr_lightly.py --epochs 2 --threads 2 --workers 2

Both sides train the same conv encoder (genssl's, built twice from one seed, so the same initial
weights) with a 2-layer BatchNorm projection head to 128-d, NT-Xent at τ = 0.2, Adam at lr 1e-3,
batch 256 images × 2 views, and the same augmentation (random resized crop 0.6–1 of the area, ratio
3/4–4/3, horizontal flip p 0.5: genssl's ``fashion`` pipeline):

- **genssl**: ``Trainer.run_epoch`` of ``method=simclr`` (batched augmentation of the uint8 batch in
  the training process, the Pyro ELBO, Adam), exactly what ``genssl-train`` runs per epoch;
- **lightly-style**: a ``Dataset`` that applies ``torchvision.transforms.v2`` to uint8 tensors per
  sample in ``DataLoader`` workers (``--workers``), or with ``--pil`` the classic path of lightly's
  tutorials (PIL images, ``torchvision.transforms``, ``ToTensor``), then
  ``lightly.models.modules.SimCLRProjectionHead`` and ``lightly.loss.NTXentLoss``.

``--precision bf16 --channels-last`` runs both sides in bfloat16 autocast with channels-last
convolutions (genssl: ``trainer.precision=bf16 trainer.channels_last=true``; the lightly-style side:
``torch.autocast`` around the forward, the encoder and its inputs in channels-last order), which pays on
CPUs with AVX512-BF16 or AMX. ``--lightly-as-written`` keeps the lightly-style side in fp32 with the
default memory layout whatever ``--precision`` and ``--channels-last`` say, as lightly's examples are
written, so genssl's fast switches are measured against what its users run.

After each epoch pair, the lightly-style step is also timed without its data pipeline (copies of its
networks, one batch of views already in memory, a few steps): the images/s that a loop feeding this
network could reach at best here, whatever its data pipeline. Each side's share of it says where the
time goes.

Epochs alternate (genssl, lightly, genssl, ...) so machine noise falls on both alike. Images/s is
training images over the wall seconds of the epochs (data loading and augmentation included, worker
start-up excluded: the loader's workers persist and the first batch is fetched before the clock).
Afterwards each encoder, and the untrained one they started from, is scored by the same linear probe
(genssl's default ``fast`` preset: logistic regression, weight decay chosen on a tenth of train) and
kNN on the full test split. Prints one JSON object; ``--json`` saves it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pyro
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.transforms import v2

from genssl.cli.overrides import normalise_overrides
from genssl.data import dataset_from_config
from genssl.eval.features import extract_features
from genssl.eval.probes import knn_probe, linear_probe_whitened
from genssl.methods import build_method
from genssl.train.loggers import RunLogger
from genssl.train.loop import Trainer


class TwoViews(Dataset):
    """Fashion-MNIST images (uint8 [N, 1, 28, 28]) with two per-sample augmented float views each."""

    def __init__(self, images: torch.Tensor, transform: v2.Transform, pil: bool = False) -> None:
        self.images, self.transform, self.pil = images, transform, pil

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.pil:  # as torchvision's own datasets hand images to the transform
            image = Image.fromarray(image[0].numpy(), mode="L")
        return self.transform(image), self.transform(image)


def fashion_transform(crop: dict, hflip: float, size: int, pil: bool = False) -> v2.Transform:
    if pil:  # the classic pipeline of lightly's tutorials: PIL in, ToTensor out
        return T.Compose(
            [
                T.RandomResizedCrop(size, scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"])),
                T.RandomHorizontalFlip(hflip),
                T.ToTensor(),
            ]
        )
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=tuple(crop["scale"]), ratio=tuple(crop["ratio"]), antialias=True),
            v2.RandomHorizontalFlip(hflip),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


class LightlyStyleSimCLR:
    """The training loop of lightly's SimCLR example, over genssl's encoder."""

    def __init__(
        self,
        encoder: torch.nn.Module,
        feature_dim: int,
        images: torch.Tensor,
        cfg: DictConfig,
        workers: int,
        pil: bool = False,
        channels_last: bool = False,
        precision: str = "32",
    ) -> None:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.encoder = encoder
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder.to(memory_format=self.memory_format)
        self.precision = precision
        self.head = SimCLRProjectionHead(feature_dim, 512, 128, num_layers=2, batch_norm=True)
        self.criterion = NTXentLoss(temperature=float(cfg.model.terms.temperature))
        params = [*self.encoder.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=float(cfg.trainer.optim.lr), eps=float(cfg.trainer.optim.eps))
        augment = cfg.data.augment
        transform = fashion_transform(dict(augment.crop), float(augment.hflip), images.shape[-1], pil)
        self.loader = DataLoader(
            TwoViews(images, transform, pil),
            batch_size=int(cfg.trainer.batch_size),
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(int(cfg.seed)),
        )
        self.steps_per_epoch = len(self.loader)
        self.losses: list[float] = []

    def train_step(
        self, encoder: nn.Module, head: nn.Module, optimizer: torch.optim.Optimizer, x0: torch.Tensor, x1: torch.Tensor
    ) -> torch.Tensor:
        """One step of lightly's loop on a batch of two views; returns the loss, detached."""
        x0, x1 = x0.contiguous(memory_format=self.memory_format), x1.contiguous(memory_format=self.memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            z0, z1 = head(encoder(x0)), head(encoder(x1))
        loss = self.criterion(z0.float(), z1.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def step_ceiling(self, x0: torch.Tensor, x1: torch.Tensor, steps: int = 12, warmup: int = 3) -> float:
        """Images/s of this side's step on views already in memory, on copies (training is unaffected)."""
        encoder, head = copy.deepcopy(self.encoder).train(), copy.deepcopy(self.head).train()
        optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
        for _ in range(warmup):
            self.train_step(encoder, head, optimizer, x0, x1)
        start = time.perf_counter()
        for _ in range(steps):
            self.train_step(encoder, head, optimizer, x0, x1)
        return steps * len(x0) / (time.perf_counter() - start)

    def run_epoch(self) -> float:
        """One epoch; returns its wall seconds (the first batch's wait of the first epoch included)."""
        self.encoder.train()
        self.head.train()
        start = time.perf_counter()
        total = torch.zeros(())
        for x0, x1 in self.loader:
            total += self.train_step(self.encoder, self.head, self.optimizer, x0, x1)
        seconds = time.perf_counter() - start
        self.losses.append(total.item() / self.steps_per_epoch)
        return seconds


def content_scores(represent, dataset, cfg, device) -> dict[str, float]:
    ev = cfg.eval
    train_x = extract_features(represent, dataset.train.images, device, ev.batch_size, "train", False)
    test_x = extract_features(represent, dataset.test.images, device, ev.batch_size, "test", False)
    train_y, test_y = dataset.train.labels, dataset.test.labels
    linear = linear_probe_whitened(
        train_x,
        train_y,
        test_x,
        test_y,
        dataset.num_classes,
        list(ev.linear.weight_decays),
        float(ev.linear.val_fraction),
        int(ev.linear.whitened_max_iter),
        int(cfg.seed),
    )
    knn = knn_probe(train_x, train_y, test_x, test_y, dataset.num_classes, int(ev.knn.k))
    return {"linear": round(linear["accuracy"], 4), "knn": round(knn, 4)}


def encoder_represent(encoder: torch.nn.Module):
    def represent(x: torch.Tensor) -> torch.Tensor:
        encoder.eval()
        with torch.no_grad():
            return encoder(x)

    return represent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the lightly-style side")
    parser.add_argument("--pil", action="store_true", help="lightly-style side on PIL images (torchvision v1)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32", help="both sides")
    parser.add_argument("--channels-last", action="store_true", help="both sides: channels-last convolutions")
    parser.add_argument(
        "--lightly-as-written",
        action="store_true",
        help="the lightly-style side in fp32 and the default layout, as lightly's examples are written",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, default=None, help="train on a seeded subset (a quick check)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    overrides = [
        "method=simclr",
        "data=fashion_mnist",
        f"trainer.batch_size={args.batch}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.num_threads={args.threads}",
        f"seed={args.seed}",
        "trainer.progress=false",
        "logger=none",
        f"trainer.precision={args.precision}",
        f"trainer.channels_last={str(args.channels_last).lower()}",
    ]
    if args.subset:
        overrides.append(f"data.train_subset={args.subset}")
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides(overrides))
    dataset = dataset_from_config(cfg)
    side = dataset.image_size
    torch.manual_seed(args.seed)
    method = build_method(cfg, dataset.channels, side)
    untrained = copy.deepcopy(method.guide.base.encoder)
    lightly_side = LightlyStyleSimCLR(
        copy.deepcopy(untrained),
        int(cfg.net.feature_dim),
        dataset.train.images,
        cfg,
        args.workers,
        args.pil,
        args.channels_last and not args.lightly_as_written,
        "32" if args.lightly_as_written else args.precision,
    )
    # One batch of views for the loader-free step, made here so that the loader's streams are untouched.
    pairs = [lightly_side.loader.dataset[i] for i in range(args.batch)]
    ceiling_views = tuple(torch.stack(views) for views in zip(*pairs))
    run_dir = Path(tempfile.mkdtemp(prefix="peers_simclr_"))
    trainer = Trainer(cfg, method, dataset, device, run_dir)
    logger = RunLogger(run_dir, cfg.logger, cfg, enabled=False)
    genssl_s, lightly_s, ceiling = [], [], []
    with pyro.validation_enabled(False):  # as Trainer.fit runs the loop
        for epoch in range(args.epochs):
            start = time.perf_counter()
            trainer.run_epoch(logger)
            genssl_s.append(time.perf_counter() - start)
            lightly_s.append(lightly_side.run_epoch())
            ceiling.append(lightly_side.step_ceiling(*ceiling_views))
            print(
                f"epoch {epoch + 1}: genssl {genssl_s[-1]:.1f} s, lightly-style {lightly_s[-1]:.1f} s, "
                f"its step without the loader {ceiling[-1]:.0f} images/s",
                flush=True,
            )
    images = trainer.steps_per_epoch * trainer.batch_size
    genssl_rate = [images / s for s in genssl_s]
    lightly_rate = [lightly_side.steps_per_epoch * args.batch / s for s in lightly_s]
    scores = {
        "untrained": content_scores(encoder_represent(untrained), dataset, cfg, device),
        "genssl": content_scores(method.represent, dataset, cfg, device),
        "lightly_style": content_scores(encoder_represent(lightly_side.encoder), dataset, cfg, device),
    }
    result = {
        "epochs": args.epochs,
        "batch": args.batch,
        "threads": args.threads,
        "workers": args.workers,
        "lightly_style_input": "PIL + torchvision.transforms" if args.pil else "uint8 + transforms.v2",
        "precision": args.precision,
        "channels_last": args.channels_last,
        "lightly_style_as_written": args.lightly_as_written,
        "genssl_estimator": method.estimator,
        "genssl_images_per_s": [round(r, 1) for r in genssl_rate],
        "lightly_style_images_per_s": [round(r, 1) for r in lightly_rate],
        "ratio_total": round(sum(lightly_s) / sum(genssl_s), 3),
        "lightly_style_step_without_loader_images_per_s": [round(r, 1) for r in ceiling],
        "share_of_that_step": {
            "genssl": round(statistics.median(g / c for g, c in zip(genssl_rate, ceiling)), 3),
            "lightly_style": round(statistics.median(lt / c for lt, c in zip(lightly_rate, ceiling)), 3),
        },
        "ratio_median_epoch": round(statistics.median(g / lt for g, lt in zip(genssl_rate, lightly_rate)), 3),
        "lightly_style_epoch_loss": [round(v, 4) for v in lightly_side.losses],
        "scores": scores,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
