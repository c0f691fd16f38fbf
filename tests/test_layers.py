"""The package's import rule: layers import only downward, and no module imports itself back in a circle.

    errors  →  runtime, runfiles, ramps, prior_contract, distributed  →  data, nets, objectives  →  models, guides
            →  inference  →  methods  →  train, eval, report  →  cli

A package may import its own modules and any lower layer's, never a sibling of its own layer or a
higher one. ``genssl.cli`` (the console entry points) is the only code that imports both ``train`` and
``eval``. ``genssl.reference`` (the published losses, kept to test the terms against) is imported by
no production module. Imports inside functions count: they are how circles used to be hidden.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# genssl's packages and where their source lives (models/ and guides/ install into the namespace).
SOURCES = {"genssl": REPO / "genssl", "genssl.models": REPO / "models", "genssl.guides": REPO / "guides"}
LAYERS = [
    {"errors"},
    {"runtime", "runfiles", "ramps", "prior_contract", "distributed"},
    {"data", "nets", "objectives"},
    {"models", "guides"},
    {"inference"},
    {"methods"},
    {"train", "eval", "report"},
    {"cli"},
]
LAYER_OF = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def modules() -> dict[str, Path]:
    """Every genssl module name → its file."""
    found = {}
    for prefix, root in SOURCES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if prefix == "genssl" and parts and parts[0] in ("models", "guides", "configs"):
                continue
            found[name] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The genssl modules ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in out if m == "genssl" or m.startswith("genssl.")}


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = {name: imports(name, path) for name, path in modules().items()}
KNOWN = set(GRAPH)


def resolve(module: str) -> str | None:
    """The module file an imported name lives in (``genssl.a.b.func`` → ``genssl.a.b``)."""
    while module and module not in KNOWN:
        module = module.rpartition(".")[0]
    return module or None


def test_every_package_has_a_layer():
    packages = {top_package(m) for m in KNOWN} - {""}
    assert packages - set(LAYER_OF) - {"reference"} == set()


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_go_downward_only(name):
    own = top_package(name)
    if own == "reference" or own == "":
        return
    for imported in sorted(GRAPH[name]):
        target = top_package(imported)
        if target in ("", own):
            continue
        assert target != "reference", f"{name} imports the reference losses ({imported}): only tests may"
        assert LAYER_OF[target] < LAYER_OF[own], (
            f"{name} (layer {LAYER_OF[own]}: {own}) imports {imported} (layer {LAYER_OF[target]}: {target})"
        )


def test_no_import_circles():
    edges = {name: {r for r in map(resolve, targets) if r and r != name} for name, targets in GRAPH.items()}

    # A package's __init__ re-exports its own modules; the circle rule is about modules, so an
    # __init__ importing its children (and children importing through it) is not a circle.
    def children(package: str, module: str) -> bool:
        return module.startswith(package + ".")

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if children(nxt, node) or children(node, nxt):
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
