"""Trace once, replay: the lean −ELBO's tensor work recorded on one step and re-run without Pyro.

Every step of :class:`~genssl.inference.lean_elbo.LeanELBO` runs the same Python: the guide and the
model under their effect handler, ``pyro.plate`` and the distributions built anew, the sites summed.
Only the tensor operations underneath change from step to step, and only in their values. So
:class:`ReplayedLoss` records those operations once, at the dispatcher level
(``make_fx`` on fake tensors, where Pyro, the nets and the terms are plain Python that the tracer
sees through), trims the record (dead code, no-op views, constant subexpressions), and replays it
through TorchScript's interpreter, which dispatches each operation without the Python around it.
Autograd, BatchNorm's running statistics, in-place buffer updates (DINO's centre, DirectPred's F̂)
and random draws (reparameterised samples) happen on replay as they did when traced.

A trace holds for one *signature*: the input and state shapes, the train/eval mode, gradient mode,
the autocast policy (on or off, and to which dtype, on the CPU and the inputs' device) and the Python
numbers held as module attributes (temperatures, momenta). Under autocast, ``make_fx`` records the
operations as called, before autocast's casts; TorchScript's trace of that graph, made under the same
policy, records the casts autocast made (each weight cast once, as autocast's cache does), and on replay
autocast finds its inputs already cast. A new
signature runs the eager lean loss; one met on three consecutive calls is traced, checked against the
eager loss on the same random draws (loss, every gradient, every buffer it moves) and replayed from
then on. Programs the tracer cannot follow (data-dependent Python branches, ``pyro.param`` state
outside the modules, several processes) keep the eager lean loss; ``reason`` says why. So do steps
with Pyro's argument validation on, whose checks read values.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.fx import GraphModule, Node
from torch.fx.experimental.proxy_tensor import make_fx

aten = torch.ops.aten
# Operations that return their input unchanged when the shape, dtype and strides already match.
_IDENTITY_WHEN_SAME = {
    aten.expand.default, aten.expand_as.default, aten.to.dtype, aten.to.device,
    aten.contiguous.default, aten.alias.default, aten.view.default, aten.reshape.default,
}  # fmt: skip
_GRAD_MODE = torch._C._set_grad_enabled
MAX_SIGNATURES = 4  # traces kept (train steps, and e.g. a last smaller batch)
EAGER_CALLS = 2  # calls with a new signature that run eagerly before it is traced: short runs never trace


class NotReplayable(Exception):
    """The programs cannot be replayed from a trace: the eager lean loss is used."""


class _Loss(nn.Module):
    """The lean loss of ``method`` as a module call, so ``functional_call`` can swap its tensors."""

    def __init__(self, method: nn.Module, loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.method = method
        self.__dict__["loss"] = loss  # not a submodule even when it is the module itself

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.loss(*args)


def _scalar_attributes(modules: list[nn.Module]) -> list[tuple[nn.Module, str]]:
    """(module, name) of every Python number a module holds: a trace freezes them."""
    return [(m, k) for m in modules for k, v in vars(m).items() if type(v) in (bool, int, float)]


@contextlib.contextmanager
def _undisturbed(state: list[torch.Tensor], args: tuple[torch.Tensor, ...]) -> Iterator[None]:
    """Run a trial evaluation: the random stream is forked and the buffers it moves are put back."""
    buffers = [t for t in state if not t.requires_grad]
    saved = [b.clone() for b in buffers]
    devices = [t.device for t in args if t.device.type == "cuda"][:1]
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)


class ReplayedLoss:
    """``loss(*args)`` of ``method`` (whose modules hold all its state), replayed from a checked trace."""

    def __init__(self, method: nn.Module, loss: Callable[..., torch.Tensor], rtol: float = 1e-4) -> None:
        self.wrapper = _Loss(method, loss)
        self.loss, self.rtol = loss, rtol
        self.modules = list(self.wrapper.modules())
        # Each distinct tensor once, under its first name (functional_call ties the other names to it),
        # read afresh on every call from the dict that holds it: a reassigned buffer is seen.
        self.names: list[str] = []
        self.slots: list[tuple[dict, str]] = []
        seen: set[int] = set()
        for prefix, module in self.wrapper.named_modules():
            for holder in (module._parameters, module._buffers):
                for key, tensor in holder.items():
                    if tensor is not None and id(tensor) not in seen:
                        seen.add(id(tensor))
                        self.names.append(f"{prefix}.{key}".lstrip("."))
                        self.slots.append((holder, key))
        self.scalars = _scalar_attributes(self.modules)
        self.graphs: dict[tuple, Callable[..., torch.Tensor]] = {}
        self.last_miss: tuple | None = None
        self.misses = 0  # consecutive calls with the signature last_miss
        self.reason: str | None = None  # set when replay is given up
        self.replayed = 0

    def __getstate__(self) -> dict[str, Any]:
        """Copied or pickled without its traces (they hold the original's tensors): a copy traces afresh."""
        return {**vars(self), "graphs": {}, "last_miss": None, "misses": 0, "replayed": 0}

    @property
    def status(self) -> str:
        if self.reason is not None:
            return f"eager (not replayed: {self.reason})"
        traces = f"{len(self.graphs)} trace{'s' * (len(self.graphs) != 1)}"
        if self.replayed == 0 and self.last_miss is not None and self.last_miss[1]:
            return f"eager (not replayed under argument validation; {traces})"
        return f"replayed ({traces}, {self.replayed} steps)"

    def signature(self, state: list[torch.Tensor], args: tuple[torch.Tensor, ...]) -> tuple:
        devices = {"cpu", *(t.device.type for t in args[:1])}
        return (
            torch.is_grad_enabled(),
            # With argument validation (checks on values, each step) it runs eagerly.
            torch.distributions.Distribution._validate_args,
            tuple((t.shape, t.dtype, t.device, t.requires_grad) for t in (*state, *args)),
            tuple(getattr(m, k) for m, k in self.scalars),
            # The fake tensors of the trace carried autocast's output dtypes (a torch.eye(n, dtype=z.dtype)
            # is recorded in bfloat16): a trace holds for the policy it was made under.
            tuple((d, torch.get_autocast_dtype(d)) for d in sorted(devices) if torch.is_autocast_enabled(d)),
        )

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if self.reason is not None:
            return self.loss(*args)
        state = [holder[key] for holder, key in self.slots]
        key = self.signature(state, args)
        graph = self.graphs.get(key)
        if graph is None:
            self.misses = self.misses + 1 if key == self.last_miss else 1
            self.last_miss = key
            if self.misses <= EAGER_CALLS or not key[0] or key[1]:  # new, no gradients or validation
                return self.loss(*args)
            try:
                graph = self._trace_and_check(state, args)
            except NotReplayable as why:
                self.reason = str(why)
                return self.loss(*args)
            if len(self.graphs) >= MAX_SIGNATURES:
                self.graphs.pop(next(iter(self.graphs)))
            self.graphs[key] = graph
        self.replayed += 1
        return graph(*state, *args)

    def _trace_and_check(self, state: list[torch.Tensor], args: tuple[torch.Tensor, ...]) -> Callable:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                raise NotReplayable("several processes (the gathers are collective calls)")
        count = len(state)

        def flat(*tensors: torch.Tensor) -> torch.Tensor:
            return functional_call(self.wrapper, dict(zip(self.names, tensors[:count])), tensors[count:])

        before = {id(m): dict(vars(m)) for m in self.modules}
        try:
            gm = make_fx(flat, tracing_mode="fake", pre_dispatch=True)(*state, *args)
        except Exception as err:  # noqa: BLE001 - whatever the tracer cannot follow, the eager loss can
            first_line = str(err).splitlines()[0][:200] if str(err) else ""
            raise NotReplayable(f"the tracer stopped at {type(err).__name__}: {first_line}") from None
        for m in self.modules:
            changed = [k for k, v in vars(m).items() if k not in before[id(m)] or before[id(m)][k] is not v]
            changed = [k for k in changed if not k.startswith("_") or k in ("_parameters", "_buffers")]
            if changed:
                raise NotReplayable(f"{type(m).__name__} sets {changed} during the loss (state outside its buffers)")
        for node in gm.graph.find_nodes(op="get_attr"):
            if getattr(gm, node.target).requires_grad:
                raise NotReplayable(f"a tensor requiring gradients outside the modules ({node.target}: a pyro.param?)")
        simplify(gm)
        graph = _compile(gm, state, args)
        self._check(graph, state, args)
        return graph

    def _check(self, graph: Callable, state: list[torch.Tensor], args: tuple[torch.Tensor, ...]) -> None:
        """The replay gives the eager loss, gradients and buffer updates on the same random draws."""
        trained = [t for t in state if t.requires_grad]
        buffers = [t for t in state if not t.requires_grad]
        results = []
        for fn in (self.loss, graph):
            with _undisturbed(state, args):
                torch.manual_seed(0)
                loss = fn(*args) if fn is self.loss else fn(*state, *args)
                grads = torch.autograd.grad(loss, trained, allow_unused=True) if loss.requires_grad else ()
                results.append((loss.detach(), grads, [b.clone() for b in buffers]))
        (eager_loss, eager_grads, eager_bufs), (loss, grads, bufs) = results
        if not _close(loss, eager_loss, self.rtol):
            raise NotReplayable(f"the replay gave −ELBO {float(loss):.6g}, the eager loss {float(eager_loss):.6g}")
        for which, a, b in (("gradient", grads, eager_grads), ("buffer", bufs, eager_bufs)):
            if len(a) != len(b) or not all(_close(x, y, self.rtol) for x, y in zip(a, b)):
                raise NotReplayable(f"the replay's {which}s differ from the eager loss's")


def _close(a: torch.Tensor | None, b: torch.Tensor | None, rtol: float) -> bool:
    if a is None or b is None:
        return (a is None or not a.any()) and (b is None or not b.any())
    scale = max(float(b.detach().abs().max()), 1.0) if b.numel() and b.is_floating_point() else 1.0
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=rtol, atol=rtol * scale)


def simplify(gm: GraphModule) -> None:
    """Trim a traced graph in place: regions without gradients become detached inputs (TorchScript
    does not record grad mode), no-op views and casts go, constant subexpressions are computed once."""
    graph = gm.graph
    _detach_no_grad_regions(graph)
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in _IDENTITY_WHEN_SAME and _same_layout(node, node.args[0]):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
        elif node.op == "call_function" and node.target is aten.detach_.default and not node.users:
            source = node.args[0]  # detach_ of a fresh copy of a constant that nothing reads
            if source.op == "call_function" and source.target is aten.lift_fresh_copy.default:
                graph.erase_node(node)
    graph.eliminate_dead_code()
    _fold_constants(gm)
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()


def _same_layout(node: Node, source: Any) -> bool:
    arguments = node.target._schema.arguments
    given = {**{a.name: v for a, v in zip(arguments, node.args)}, **node.kwargs}
    if given.get("copy", False):  # asked for a copy: the caller may write to it
        return False
    a, b = node.meta.get("val"), getattr(source, "meta", {}).get("val")
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return False
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and a.stride() == b.stride()


def _detach_no_grad_regions(graph: torch.fx.Graph) -> None:
    """Between ``_set_grad_enabled(False)`` and ``(True)``, read every tensor made outside through a
    detached alias: what is computed there then has no history, as under ``torch.no_grad``."""
    enabled, inside, aliases = True, set(), {}
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is _GRAD_MODE:
            enabled = bool(node.args[0])
            graph.erase_node(node)
            continue
        if enabled or node.op != "call_function":
            continue
        inside.add(node)

        def alias(arg: Any, node: Node = node) -> Any:
            if not isinstance(arg, Node) or arg in inside or not isinstance(arg.meta.get("val"), torch.Tensor):
                return arg
            if arg not in aliases:
                with graph.inserting_before(node):
                    aliases[arg] = graph.call_function(aten.detach.default, (arg,))
                    aliases[arg].meta["val"] = arg.meta["val"]
                inside.add(aliases[arg])
            return aliases[arg]

        node.args = torch.fx.node.map_arg(node.args, alias)
        node.kwargs = torch.fx.node.map_arg(node.kwargs, alias)
    if not enabled:
        raise NotReplayable("the programs leave gradients disabled")


def _written(graph: torch.fx.Graph) -> set[Node]:
    """Nodes whose tensors some operation writes in place, directly or through views of them."""
    written: set[Node] = set()
    for node in reversed(graph.nodes):
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        schema = node.target._schema
        for argument, value in zip(schema.arguments, node.args):
            if argument.alias_info is not None and argument.alias_info.is_write and isinstance(value, Node):
                written.add(value)
        is_view = any(r.alias_info is not None for r in schema.returns)
        if node in written and is_view and node.args and isinstance(node.args[0], Node):
            written.add(node.args[0])
    return written


def _fold_constants(gm: GraphModule) -> None:
    """Nodes that read no input, no random stream and write nothing (nor are written to later):
    computed now, kept as constants."""
    graph, constant, env = gm.graph, set(), {}
    written = _written(graph)
    for node in graph.nodes:
        if node in written:
            continue
        if node.op == "get_attr":
            constant.add(node)
            env[node] = getattr(gm, node.target)
            continue
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        schema, tags = node.target._schema, node.target.tags
        inputs = node.all_input_nodes
        if schema.is_mutable or torch.Tag.nondeterministic_seeded in tags or not all(n in constant for n in inputs):
            continue
        value = node.target(*torch.fx.node.map_arg(node.args, env.get), **torch.fx.node.map_arg(node.kwargs, env.get))
        if not isinstance(value, torch.Tensor):
            continue
        constant.add(node)
        env[node] = value
    for i, node in enumerate(n for n in list(graph.nodes) if n in constant and n.op == "call_function"):
        if not any(user not in constant for user in node.users):
            continue  # only read by other constants: dead once those are folded
        name = f"_folded_{i}"
        gm.register_buffer(name, env[node].detach())
        with graph.inserting_before(node):
            folded = graph.get_attr(name)
        folded.meta = dict(node.meta)
        node.replace_all_uses_with(folded)


class _Interpreted:
    """A TorchScript graph run by its interpreter without the graph executor's optimisations (its
    autodiff regroups the backward): the eager operations, dispatched from C++, bit for bit."""

    def __init__(self, scripted: torch.jit.ScriptModule) -> None:
        self.scripted = scripted

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        with torch.jit.optimized_execution(False):
            return self.scripted(*tensors)


def _compile(gm: GraphModule, state: list[torch.Tensor], args: tuple[torch.Tensor, ...]) -> Callable:
    """TorchScript's trace of the trimmed graph (:class:`_Interpreted`); the trace runs the graph
    once, so the buffers it moves and the random stream are put back."""
    try:
        with _undisturbed(state, args), _autocast_cache_cleared(), warnings.catch_warnings():
            # TorchScript is deprecated for new models; here it only runs an already-trimmed graph, checked below.
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
            return _Interpreted(torch.jit.trace(gm, (*state, *args), check_trace=False))
    except Exception:  # noqa: BLE001 - the Python replay of the graph is the fallback
        return gm


@contextlib.contextmanager
def _autocast_cache_cleared() -> Iterator[None]:
    """Under autocast, TorchScript records each weight's cast where the trace makes it; a cast already
    cached by earlier calls in the same autocast region would reach the trace as a constant. So the
    cache is emptied before the trace, and after it (its casts belong to the trace); the next call
    casts afresh."""
    torch.clear_autocast_cache()
    try:
        yield
    finally:
        torch.clear_autocast_cache()
