"""Framework overhead of a genssl training step against a hand-written twin over the same modules.

    python bench/overhead.py --threads 1                      # tiny networks and the default conv step
    python bench/overhead.py --methods simclr --sizes tiny --rounds 30
    python bench/overhead.py --methods simvae --sizes official   # the official SimVAE MLP, L = 10, batch 64
    python bench/overhead.py --precision bf16                 # both sides under bfloat16 autocast

For each method the genssl step is the training loop's own (``Trainer.step``: augmentation, the Pyro
ELBO of the model/guide pair, backward, Adam, the method's after-step hooks); the twin does the same
augmentation, computes the published loss by hand from the same modules (encoder, heads, decoder,
EMA target), and takes the same Adam step and EMA updates. The two alternate in rounds within one
process, so machine noise hits both alike; the figures are medians over rounds. With tiny networks
compute is ~0 and the difference is the framework; at the default sizes the ratio is what a user
pays. The warm-up steps before the timing include the replay's one-off trace and check
(``trainer.replay``, genssl/inference/replay.py); ``estimator`` in the output says which loss ran.
Prints one JSON line per (method, size).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module

from genssl.cli.overrides import normalise_overrides
from genssl.data.types import ImageDataset, ImageSplit
from genssl.methods import build_method
from genssl.runtime import autocast, epoch_generator
from genssl.train.loop import Trainer

SIZES = {
    # Compute ~0: an 8-pixel image, one hidden layer of 32, projections of 16: what remains is the framework.
    "tiny": {
        "images": 16,
        "overrides": ["net.encoder=mlp", "net.mlp_hidden=[32]", "data.image_size=8", "net.feature_dim=32"],
        "discriminative": ["guide.projector.hidden_dim=32", "guide.projector.out_dim=16"],
        "generative": ["model.latent_dim=8"],
    },
    # The default conv encoder on 28-pixel images, 128 images × 2 views.
    "default": {"images": 128, "overrides": [], "discriminative": [], "generative": []},
    # The official SimVAE sizes: MLP 784-2000-500-500 (mirrored decoder), L = 10, 64 images × 2 views.
    "official": {
        "images": 64,
        "overrides": ["net.encoder=mlp"],
        "discriminative": [],
        "generative": ["model.latent_dim=10"],
    },
}
DEFAULT_SIZES = ["tiny", "default"]
EXTRA = {"dino": {"tiny": ["guide.prototypes.num=16"]}}


def build(name: str, size: str, threads: int, precision: str = "32") -> tuple[Trainer, dict]:
    spec = SIZES[size]
    family = "generative" if name in ("simvae", "vae") else "discriminative"
    overrides = [f"method={name}", "data=digits", "trainer.progress=false", f"trainer.num_threads={threads}"]
    overrides.append(f"trainer.precision={precision}")
    overrides += spec["overrides"] + spec[family] + EXTRA.get(name, {}).get(size, [])
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=normalise_overrides(overrides))
    torch.manual_seed(0)
    side = int(cfg.data.image_size)
    images = torch.randint(0, 256, (spec["images"] * 4, 1, side, side), dtype=torch.uint8)
    labels = torch.zeros(len(images), dtype=torch.long)
    split = ImageSplit(images, labels)
    dataset = ImageDataset("synthetic", split, split, 1, ["0"])
    cfg.trainer.batch_size = spec["images"]
    method = build_method(cfg, 1, side)
    trainer = Trainer(cfg, method, dataset, torch.device("cpu"), Path(tempfile.mkdtemp()))
    return trainer, {"cfg": cfg, "method": method}


# Hand-written twins: the published loss from the same modules, then the same optimiser step.


def simclr_loss(trainer: Trainer, views: torch.Tensor) -> torch.Tensor:
    guide = trainer.method.guide.base
    batch = views.shape[0]
    z = guide.projector(guide.encoder(views.transpose(0, 1).flatten(0, 1))).float()
    u = F.normalize(z, dim=1)
    logits = u @ u.T / float(trainer.cfg.model.terms.temperature)
    logits = logits.masked_fill(torch.eye(2 * batch, dtype=torch.bool), float("-inf"))
    positives = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)])
    return F.cross_entropy(logits, positives)


def byol_loss(trainer: Trainer, views: torch.Tensor) -> torch.Tensor:
    guide = trainer.method.guide.base
    batch = views.shape[0]
    flat = views.transpose(0, 1).flatten(0, 1)
    z = guide.online.projector(guide.online.encoder(flat)).float()
    p = guide.predictor(z)
    with torch.no_grad():
        branch = guide._target_branch
        t = branch["projector"](branch["encoder"](flat)).float()
    kappa = float(trainer.cfg.model.terms.kappa)
    cos = F.cosine_similarity
    return -kappa * 0.5 * (cos(p[:batch], t[batch:]).mean() + cos(p[batch:], t[:batch]).mean())


def dino_loss(trainer: Trainer, views: torch.Tensor) -> torch.Tensor:
    guide = trainer.method.guide.base
    batch = views.shape[0]
    flat = views.transpose(0, 1).flatten(0, 1)
    student = guide.online.projector(guide.online.encoder(flat)).float()
    with torch.no_grad():
        teacher = guide._modules["teacher"]
        scores = teacher["head"](teacher["encoder"](flat)).float()
        guide.batch_centre.copy_(scores.mean(0))
        probs = F.softmax((scores - guide.centre) / guide.teacher_temp, dim=-1)
    log_s = F.log_softmax(student / float(trainer.cfg.method.student_temp), dim=-1)
    t1, t2, s1, s2 = probs[:batch], probs[batch:], log_s[:batch], log_s[batch:]
    return -0.5 * ((t1 * s2).sum(-1).mean() + (t2 * s1).sum(-1).mean())


def simvae_loss(trainer: Trainer, views: torch.Tensor) -> torch.Tensor:
    guide, model = trainer.method.guide, trainer.method.model
    batch, num_views = views.shape[:2]
    loc, scale = guide.encode(views)
    y_scale = guide.content_log_scale.exp()
    y_loc = loc.mean(1)
    y = y_loc + y_scale * torch.randn_like(y_loc)
    z = loc + scale * torch.randn_like(loc)
    sigma = math.sqrt(model.view_var)
    kl_y = (-torch.log(y_scale) + 0.5 * (y_scale**2 + y_loc**2) - 0.5).sum()
    kl_z = (math.log(sigma) - torch.log(scale) + (scale**2 + (loc - y.unsqueeze(1)) ** 2) / (2 * sigma**2) - 0.5).sum()
    logits = model.decoder(z).float()
    log_lik = -F.binary_cross_entropy_with_logits(logits, views, reduction="sum")
    return (kl_y + kl_z - log_lik) / (batch * num_views)


TWINS: dict[str, Callable[[Trainer, torch.Tensor], torch.Tensor]] = {
    "simclr": simclr_loss,
    "byol": byol_loss,
    "dino": dino_loss,
    "simvae": simvae_loss,
}


def twin_step(trainer: Trainer, loss_fn: Callable, batch_index: torch.Tensor, generator: torch.Generator) -> float:
    views, _ = trainer.augment(trainer.images[batch_index], generator)
    with autocast(trainer.device, trainer.precision):  # as Trainer.step runs the loss
        loss = loss_fn(trainer, views)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()
    trainer.method.after_step(trainer.state.step / trainer.total_steps)
    return loss.item()


def measure(name: str, size: str, threads: int, rounds: int, steps: int, precision: str = "32") -> dict:
    trainer, _ = build(name, size, threads, precision)
    method = trainer.method
    method.train()
    generator = epoch_generator(0, 0, torch.device("cpu"))
    batch_index = torch.arange(trainer.batch_size)
    if name.startswith("deepcluster"):
        method.before_epoch(trainer.images, generator)

    def genssl() -> None:
        trainer.step(batch_index, generator)

    def twin() -> None:
        twin_step(trainer, TWINS[name], batch_index, generator)

    validation = pyro.validation_enabled(False)  # as Trainer.fit runs the loop
    validation.__enter__()
    for fn in (genssl, twin):
        for _ in range(5):
            fn()
    times: dict[str, list[float]] = {"genssl": [], "twin": []}
    for _ in range(rounds):
        for label, fn in (("genssl", genssl), ("twin", twin)):
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[label].append((time.perf_counter() - start) / steps * 1e3)
    validation.__exit__(None, None, None)
    genssl_ms, twin_ms = statistics.median(times["genssl"]), statistics.median(times["twin"])
    return {
        "method": name,
        "size": size,
        "genssl_ms": round(genssl_ms, 3),
        "hand_written_ms": round(twin_ms, 3),
        "overhead_ms": round(genssl_ms - twin_ms, 3),
        "ratio": round(genssl_ms / twin_ms, 3),
        "estimator": method.lean_check.split(" (")[0] + ("" if method.replay is None else f"; {method.replay.status}"),
        "precision": precision,
        "threads": threads,
        "machine": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=list(TWINS))
    parser.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES, choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=0, help="steps per round (0: 40 tiny, 4 default)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32", help="both sides (autocast)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for size in args.sizes:
        for name in args.methods:
            steps = args.steps or (40 if size == "tiny" else 4)
            print(json.dumps(measure(name, size, args.threads, args.rounds, steps, args.precision)), flush=True)


if __name__ == "__main__":
    main()
