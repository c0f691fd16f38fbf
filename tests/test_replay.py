"""The replayed lean loss (genssl.inference.replay) trains exactly as the eager one.

For every method, two copies from one seed take the same Adam steps on the same views and random
draws, one replaying its traced loss and one eager: the losses, weights and buffers must agree bit
for bit (Adam turns any rounding difference in a gradient that is zero in exact arithmetic, such as
a bias before BatchNorm, into a step of lr). The mechanism's own cases use small modules:
gradient-free regions, constants written in place, Python numbers that change, branches on tensor
values and state kept outside the buffers.
"""

from __future__ import annotations

import copy
import json

import pyro
import pytest
import torch
from conftest import TINY, run_cli
from test_lean_elbo import CASES, build
from torch import nn

from genssl.inference.replay import EAGER_CALLS, ReplayedLoss, _Interpreted

STEPS = EAGER_CALLS + 3  # eager calls, the traced and checked one, then replays


@pytest.fixture(autouse=True)
def no_validation():
    """The loop trains without Pyro's argument validation (its checks read values: those steps stay eager)."""
    with pyro.validation_enabled(False):
        yield


def train(method, views, index, steps=STEPS, autocast_dtype=None):
    """Adam steps on the same views and draws; with ``autocast_dtype``, each forward under autocast as
    the loop runs it (one autocast region per step)."""
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    device = views.device.type
    losses = []
    for step in range(steps):
        with torch.random.fork_rng(devices=[views.device] if device == "cuda" else []):
            torch.manual_seed(100 + step)
            with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = method(views, index)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.after_step(step / steps)
        losses.append(float(loss.detach()))
    return losses


def replayed_and_eager(method, views, index, autocast_dtype=None):
    """``method`` with the replay and an eager copy of it, both trained alike: (eager copy, both losses)."""
    method.train()
    assert method.enable_lean(views, index)
    eager = copy.deepcopy(method)
    method.enable_replay()
    assert eager.replay is None
    return (
        eager,
        train(method, views, index, autocast_dtype=autocast_dtype),
        train(eager, views, index, autocast_dtype=autocast_dtype),
    )


@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("overrides", CASES, ids=lambda o: "-".join(x.split("=")[1] for x in o))
def test_replayed_training_is_eager_training(overrides, autocast_dtype):
    """In float32 and under bfloat16 autocast (the trace holds the ops as called; autocast casts them
    on replay as it did when eager)."""
    method, views, index = build(overrides)
    eager, replayed_losses, eager_losses = replayed_and_eager(method, views, index, autocast_dtype)
    if method.extra_parameters():  # pyro.param state lives outside the modules: kept eager, and said so
        assert "pyro.param" in method.estimator and replayed_losses == eager_losses
        return
    if "model.prior=vmf_mixture" in overrides:  # its normaliser's Bessel function runs in NumPy: eager, and said so
        assert ".numpy()" in method.estimator and replayed_losses == eager_losses
        return
    assert method.replay.reason is None, method.estimator
    assert method.replay.replayed == STEPS - EAGER_CALLS, method.estimator
    assert replayed_losses == eager_losses  # the same operations in the same order: bit for bit
    for (name, a), (_, b) in zip(method.state_dict().items(), eager.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs after replayed training"


class Toy(nn.Module):
    """A loss with the hazards a trace must keep: a no-grad region, a buffer updated in place, a
    constant mask written in place, a random draw and a Python temperature."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3))
        self.register_buffer("running", torch.zeros(3))
        self.temperature = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x @ self.weight
        with torch.no_grad():
            target = z * 2.0  # no gradient through the target
            self.running.mul_(0.9).add_(0.1 * z.mean(0))
        mask = torch.ones(3).scatter_(0, torch.randint(0, 3, (1,)), 0.0)  # ones() must not be folded
        noise = torch.randn_like(z)
        return ((z - target) ** 2 * mask).sum() / self.temperature + (z * noise).mean()


def run(module, loss, x, calls):
    out = []
    for call in range(calls):
        torch.manual_seed(call)
        value = loss(x)
        (grad,) = torch.autograd.grad(value, module.weight)
        out.append((value.detach(), grad, module.running.clone()))
    return out


def test_replay_keeps_no_grad_regions_in_place_updates_and_draws():
    torch.manual_seed(0)
    module, x = Toy(), torch.randn(8, 4)
    twin = copy.deepcopy(module)
    replayed = ReplayedLoss(module, module)
    got, want = run(module, replayed, x, 8), run(twin, twin, x, 8)
    assert replayed.reason is None and replayed.replayed == 8 - EAGER_CALLS, replayed.status
    for (a, ga, ra), (b, gb, rb) in zip(got, want):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ga, gb)
        torch.testing.assert_close(ra, rb)


def test_a_copied_method_replays_its_own_tensors():
    method, views, index = build(["method=simclr"])
    method.train()
    assert method.enable_lean(views, index)
    method.enable_replay()
    train(method, views, index)
    copied = copy.deepcopy(method)
    assert copied.replay is not method.replay and copied.replay.wrapper.method is copied and not copied.replay.graphs
    with torch.no_grad():
        next(copied.parameters()).add_(1.0)  # the copy's weights move; a trace of the original's would miss it
    eager = copy.deepcopy(copied)
    eager.replay = None
    assert train(copied, views, index) == train(eager, views, index)
    assert copied.replay.replayed > 0 and copied.replay.reason is None


def test_a_changed_python_number_is_a_new_signature():
    torch.manual_seed(0)
    module, x = Toy(), torch.randn(8, 4)
    replayed = ReplayedLoss(module, module)
    run(module, replayed, x, EAGER_CALLS + 2)
    module.temperature = 0.25  # e.g. a schedule: the old trace would use 0.5
    twin = copy.deepcopy(module)
    got, want = run(module, replayed, x, EAGER_CALLS + 2), run(twin, twin, x, EAGER_CALLS + 2)
    for (a, ga, _), (b, gb, _) in zip(got, want):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ga, gb)
    assert len(replayed.graphs) == 2


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x @ self.weight).sum() > 0:  # a branch on a value: a trace would freeze one side
            return (x @ self.weight).exp().sum()
        return (x @ self.weight).sum()


class Stasher(Branchy):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last = (x @ self.weight).detach()  # state outside the buffers: a replay would never set it
        return self.last.sum() + self.weight.sum()


@pytest.mark.parametrize(("cls", "why"), [(Branchy, "tracer stopped"), (Stasher, "sets ['last']")])
def test_programs_a_trace_cannot_hold_stay_eager(cls, why):
    torch.manual_seed(0)
    module, x = cls(), torch.randn(5, 3)
    replayed = ReplayedLoss(module, module)
    values = [replayed(x) for _ in range(EAGER_CALLS + 3)]
    assert why in replayed.status and replayed.replayed == 0
    for value in values:
        torch.testing.assert_close(value, module(x))


def test_without_gradients_or_with_validation_the_loss_runs_eagerly():
    torch.manual_seed(0)
    module, x = Toy(), torch.randn(8, 4)
    replayed = ReplayedLoss(module, module)
    with pyro.validation_enabled(True):
        for _ in range(EAGER_CALLS + 3):
            replayed(x)
    assert "not replayed under argument validation" in replayed.status
    with torch.no_grad():
        for _ in range(EAGER_CALLS + 3):
            replayed(x)
    assert not replayed.graphs and replayed.reason is None


def test_each_autocast_policy_has_its_own_trace():
    """A trace made in float32 is not replayed under autocast, nor one made under bfloat16 in float32:
    the fake tensors carried the policy's dtypes. One autocast region around several calls (its cast
    cache filled by the eager ones) still gives a TorchScript trace, equal to eager."""
    torch.manual_seed(0)
    module, x = Toy(), torch.randn(8, 4)
    twin = copy.deepcopy(module)
    replayed = ReplayedLoss(module, module)
    calls, first_loss = EAGER_CALLS + 2, {}
    for policy in ("fp32", "bf16", "fp32", "bf16"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=policy == "bf16"):
            got, want = run(module, replayed, x, calls), run(twin, twin, x, calls)
        for (a, ga, ra), (b, gb, rb) in zip(got, want):
            assert torch.equal(a, b) and torch.equal(ga, gb) and torch.equal(ra, rb), policy
        first_loss.setdefault(policy, got[0][0])
    assert not torch.equal(first_loss["fp32"], first_loss["bf16"])  # autocast did change the arithmetic
    assert len(replayed.graphs) == 2 and replayed.reason is None
    assert replayed.replayed == 2 * (calls - EAGER_CALLS) + 2 * calls, replayed.status
    assert all(isinstance(graph, _Interpreted) for graph in replayed.graphs.values())  # not the Python fallback


@pytest.mark.parametrize("replay", ["true", "false"])
def test_the_run_records_which_loss_ran(tmp_path, replay):
    """Each epoch's record names the estimator; trainer.replay=false keeps the eager lean loss."""
    run_dir = tmp_path / replay
    result = run_cli(
        "genssl-train", "method=simclr", "data=digits", "net.encoder=mlp", "net.mlp_hidden=[32]",
        "trainer.max_epochs=1", "eval.enabled=false", f"trainer.replay={replay}", *TINY, f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    estimator = next(r for r in records if r["kind"] == "epoch")["estimator"]
    assert estimator.startswith("lean estimator")
    assert ("replayed (1 trace" in estimator) == (replay == "true"), estimator
