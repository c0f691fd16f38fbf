"""Pictures of each method's Pyro model with ``pyro.render_model``: its latents, plates and dependencies.

    python -m genssl.report.model_graphs --out docs/models simvae simclr byol dino

Each method is built from its config on digits-sized images and traced on four images; the PNGs
need Graphviz's ``dot`` (Debian package ``graphviz``); without it the ``.gv`` sources are written.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pyro
import torch
from hydra import compose, initialize_config_module

from genssl.data import build_augment
from genssl.methods import build_method


def model_graph(method_name: str, overrides: list[str] | None = None) -> object:
    """The graphviz Digraph of ``method_name``'s model (``pyro.render_model`` with distributions shown)."""
    with initialize_config_module("genssl.configs", version_base=None):
        cfg = compose("config", overrides=[f"method={method_name}", "data=digits", *(overrides or [])])
    method = build_method(cfg, cfg.data.channels, cfg.data.image_size).eval()
    augment = build_augment(cfg.data.augment, cfg.data.num_views, cfg.data.image_size)
    images = torch.randint(0, 256, (4, cfg.data.channels, cfg.data.image_size, cfg.data.image_size), dtype=torch.uint8)
    views, _ = augment(images, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return pyro.render_model(method.model, model_args=(views,), render_distributions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("methods", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("docs/models"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.methods:
        graph = model_graph(name)
        if shutil.which("dot"):
            graph.render(str(args.out / name), format="png", cleanup=True)
            print(args.out / f"{name}.png")
        else:
            (args.out / f"{name}.gv").write_text(graph.source)
            print(args.out / f"{name}.gv", "(install graphviz for PNGs)")


if __name__ == "__main__":
    main()
