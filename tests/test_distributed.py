"""Two gloo processes × B/2 train exactly as one process × B, for every method (issue 14).

One spawn of 2 CPU processes runs every method config for a few SGD steps on the same global batches
as a single-process reference run here; each rank takes its half of every batch through
:func:`genssl.train.parallel.wrap` (DDP, BatchNorm over the global batch). Then:

- the ranks' mean loss is the reference loss and every parameter gradient is the reference's, at
  each step (float tolerance);
- after the steps the ranks' weights and buffers (EMA targets, DINO's centre, DirectPred's F̂,
  running statistics) are identical, and equal to the reference's;
- the same check with a gather whose backward does not all-reduce (the bug of lightly #1528/#1923)
  fails, so the equality above is not vacuous.

Random draws (the VAE's reparameterisation noise, MAE's masks) are made batch-aligned by
:class:`RowKeyedNoise`: image i's draws are the same whether it sits in a batch of 10 on one process
or of 5 on rank 1. Everything else (random Fourier features, seeded per step) is drawn as usual.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pyro
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra import compose, initialize_config_module

from genssl.cli.overrides import group_options, normalise_overrides
from genssl.data import build_augment
from genssl.distributed import SINGLE, Processes
from genssl.methods import build_method
from genssl.train import parallel

WORLD = 2
GLOBAL_BATCH = 10  # 5 per rank: a size no network width or patch count shares (RowKeyedNoise relies on it)
STEPS = 3
METHODS = group_options("method")
BROKEN = "simclr[gather without all-reduce]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RowKeyedNoise:
    """Patch torch's samplers so that draws along the batch dimension depend on the global row only.

    A draw whose shape has a dimension of ``local`` (or ``local × views``, image-major flattened views)
    rows is drawn at the global size from a generator seeded by the draw's ordinal, and this
    process's rows (from ``offset``) are returned. Other draws use torch's generator as usual."""

    def __init__(self, local: int, world_batch: int, offset: int, views: int) -> None:
        self.local, self.world_batch, self.offset, self.views, self.calls = local, world_batch, offset, views, 0
        self.saved: dict = {}

    def _keyed(self, draw, size, dtype, device):
        size = tuple(int(n) for n in (size[0] if len(size) == 1 and not isinstance(size[0], int) else size))
        for dim, n in enumerate(size):
            for k in (1, self.views):
                if n == self.local * k:
                    full = list(size)
                    full[dim] = self.world_batch * k
                    generator = torch.Generator().manual_seed(10_000 + self.calls)
                    self.calls += 1
                    x = draw(full, generator=generator, dtype=dtype or torch.get_default_dtype())
                    return x.narrow(dim, self.offset * k, self.local * k).contiguous().to(device)
        return None

    def __enter__(self) -> RowKeyedNoise:
        import torch.distributions.normal as normal_module

        rand, randn, standard_normal = torch.rand, torch.randn, normal_module._standard_normal
        self.saved = {"rand": rand, "randn": randn, "standard_normal": standard_normal}

        def keyed_rand(*size, generator=None, dtype=None, device=None, **kw):
            x = self._keyed(rand, size, dtype, device)
            return x if x is not None else rand(*size, generator=generator, dtype=dtype, device=device, **kw)

        def keyed_randn(*size, generator=None, dtype=None, device=None, **kw):
            x = self._keyed(randn, size, dtype, device)
            return x if x is not None else randn(*size, generator=generator, dtype=dtype, device=device, **kw)

        def keyed_standard_normal(shape, dtype, device):
            x = self._keyed(randn, (tuple(shape),), dtype, device)
            return x if x is not None else standard_normal(shape, dtype, device)

        torch.rand, torch.randn, normal_module._standard_normal = keyed_rand, keyed_randn, keyed_standard_normal
        return self

    def __exit__(self, *exc: object) -> None:
        import torch.distributions.normal as normal_module

        torch.rand, torch.randn = self.saved["rand"], self.saved["randn"]
        normal_module._standard_normal = self.saved["standard_normal"]


# DirectPred's predictor is U diag(√(s/max s) + ε) Uᵀ of the running correlation F̂. With fewer rows in a
# batch (10 images × 2 views) than projection dimensions, F̂ is rank-deficient, and the square root of
# its round-off eigenvalues (1e-8 to 1e-7 of the largest) turns the last-bit differences of a split sum into
# percent-level differences of W_p. Its projection here is narrower than the batch, so F̂ is full rank.
METHOD_OVERRIDES = {"directpred": ["guide.projector.out_dim=16"]}


def method_config(name: str):
    overrides = [f"method={name}", "data=digits", "trainer.sync_batchnorm=true", *METHOD_OVERRIDES.get(name, [])]
    with initialize_config_module("genssl.configs", version_base=None):
        return compose("config", overrides=normalise_overrides(overrides))


def train_steps(name: str, procs: Processes) -> dict:
    """STEPS SGD steps of method ``name`` on this process's part of fixed global batches."""
    method_name = name.split("[")[0]
    cfg = method_config(method_name)
    pyro.clear_param_store()
    torch.manual_seed(0)
    method = build_method(cfg, cfg.data.channels, cfg.data.image_size)
    shape = (12 * GLOBAL_BATCH, cfg.data.channels, cfg.data.image_size, cfg.data.image_size)
    images = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    augment = build_augment(cfg.data.augment, int(cfg.data.num_views), cfg.data.image_size)
    method.before_epoch(images, torch.Generator().manual_seed(2))  # DeepCluster's k-means (a no-op elsewhere)
    probe, _ = augment(images[:4], torch.Generator().manual_seed(3))
    with torch.no_grad():  # lazily created pyro.param parameters exist before the optimiser is built
        method.eval()
        method(probe)
    loss_module = parallel.wrap(method, cfg.trainer, procs, torch.device("cpu"), probe)
    extra = list(method.extra_parameters().values())
    parallel.broadcast_(extra, procs)
    params = dict(method.named_parameters())
    optimizer = torch.optim.SGD([p for p in params.values() if p.requires_grad] + extra, lr=1e-4)
    local = GLOBAL_BATCH // procs.world_size
    out: dict = {"losses": [], "grads": []}
    method.train()
    for step in range(STEPS):
        index = torch.arange(step * GLOBAL_BATCH, (step + 1) * GLOBAL_BATCH) % len(images)
        views, _ = augment(images[index], torch.Generator().manual_seed(100 + step))
        part = slice(procs.rank * local, (procs.rank + 1) * local)
        torch.manual_seed(200 + step)
        optimizer.zero_grad(set_to_none=True)
        with RowKeyedNoise(local, GLOBAL_BATCH, procs.rank * local, int(cfg.data.num_views)):
            loss = loss_module(views[part], index[part])
            loss.backward()
        parallel.average_gradients_(extra, procs)
        out["losses"].append(loss.item())
        out["grads"].append({k: p.grad.clone() for k, p in params.items() if p.grad is not None})
        optimizer.step()
        method.after_step((step + 1) / STEPS)
    out["state"] = {k: v.clone() for k, v in method.state_dict().items()}
    return out


def _break_gather() -> None:
    """The mutation: a gather whose backward hands each rank its own slice only (no all-reduce)."""
    import genssl.objectives.gather as gather_mod

    def backward(ctx, grad):
        return grad.narrow(ctx.dim, ctx.rank * ctx.size, ctx.size), None

    gather_mod._GatherWithGradient.backward = staticmethod(backward)


def worker(rank: int, port: int, out_dir: str, names: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    from genssl.distributed import setup

    procs = setup()
    results = {}
    for name in names:
        if name == BROKEN:
            _break_gather()
        results[name] = train_steps(name, procs)
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The reference (one process) and the two ranks' results for every method."""
    out = tmp_path_factory.mktemp("ddp")
    names = [*METHODS, BROKEN]
    mp.spawn(worker, args=(free_port(), str(out), names), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = {name: train_steps(name, SINGLE) for name in METHODS}
    finally:
        torch.set_num_threads(threads)
    return {"reference": reference, "ranks": ranks}


def close(a: torch.Tensor, b: torch.Tensor, floor: float, rtol: float = 2e-4) -> bool:
    """Equal up to float32 round-off: relative to the tensor's scale, and to ``floor`` (the scale of the
    step's largest gradient) for gradients that are zero up to round-off (a bias before a batch norm)."""
    if a.shape != b.shape:
        return False
    if not b.numel():
        return True
    return float((a.float() - b.float()).abs().max()) <= rtol * max(float(b.abs().max()), floor)


def mismatches(grads: dict, reference: dict) -> list[str]:
    floor = 1e-3 * max((float(g.abs().max()) for g in reference.values() if g.numel()), default=1.0)
    return [k for k in reference if k not in grads or not close(grads[k], reference[k], floor)] + [
        k for k in grads if k not in reference
    ]


@pytest.mark.parametrize("name", METHODS)
def test_two_ranks_give_one_process_loss_and_gradients(runs, name):
    ref, ranks = runs["reference"][name], [r[name] for r in runs["ranks"]]
    for step in range(STEPS):
        mean = sum(r["losses"][step] for r in ranks) / WORLD
        assert mean == pytest.approx(ref["losses"][step], rel=1e-4, abs=1e-5), f"step {step} loss"
        for rank, result in enumerate(ranks):
            bad = mismatches(result["grads"][step], ref["grads"][step])
            assert not bad, f"step {step}, rank {rank}: gradients differ from one process on B for {bad[:5]}"


@pytest.mark.parametrize("name", METHODS)
def test_ranks_stay_identical_and_follow_one_process(runs, name):
    ref, (first, second) = runs["reference"][name]["state"], [r[name]["state"] for r in runs["ranks"]]
    for key, value in first.items():
        other = second[key]
        assert torch.equal(value, other), f"{key} differs between the ranks after {STEPS} steps"
        assert close(value, ref[key], 1e-3, rtol=1e-3), f"{key} drifted from the one-process run"


def test_a_gather_without_gradient_all_reduce_is_caught(runs):
    """The mutation check: lightly #1528's gather (backward = own slice only) breaks the equality."""
    ref = runs["reference"]["simclr"]["grads"][0]
    broken = [r[BROKEN]["grads"][0] for r in runs["ranks"]]
    correct = [r["simclr"]["grads"][0] for r in runs["ranks"]]
    assert all(not mismatches(g, ref) for g in correct)
    assert all(mismatches(g, ref) for g in broken), "a non-all-reduced gather went unnoticed"
