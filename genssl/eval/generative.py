"""What a decoder adds to the evaluation: a test ELBO and pictures of reconstructions, samples, traversals.

These apply to the generative methods: a :class:`PyroSSL` whose model is a
:class:`~genssl.models.GenerativeModel` (SimVAE, VAE, β-VAE); for every other method
:func:`write_generative_artefacts` returns None and writes nothing. The model answers for itself —
samples come from its own program (``Predictive``), the bound from its ``evidence_lower_bound`` — so a
prior of the user's own gets samples, traversals and an ELBO with no change here.

The test ELBO (:func:`test_elbo`) is a lower bound on the log-likelihood of *one* image, in nats per
image (summed over pixels and channels, pixels scaled to [0, 1]), averaged over the images:

    ELBO(x) = E_{q(z|x)}[log p(x | z)] − KL(q(z | x) ‖ p(z)),

with q the trained encoder and p(z) the model's marginal of one view's latent (see
:meth:`~genssl.models.SimVAE.evidence_lower_bound`): closed-form where the prior offers it (N(0, s²)
becomes N(0, (s² + σ²) I), a mixture of Gaussians the same mixture with every variance raised by σ²),
else Pyro's own ELBO on single views at β = 1, a looser bound. The flat prior is improper, so p(x) and
its bound do not exist: the ELBO is None. β only reweights the training objective; the bound is at β = 1.
SimVAE's training ELBO bounds the joint density of J views of an image, not a per-image quantity, so
it is not used.

With ``likelihood=bernoulli`` on grey levels the first term is the binary cross-entropy the training
uses, not the log-density of a continuous image; values compare runs on the same data and
likelihood only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genssl.data import ImageDataset
from genssl.data.augment import to_unit_float
from genssl.inference.pyro_ssl import PyroSSL
from genssl.models import GenerativeModel

CELL_TARGET = 96  # nearest-neighbour upscale so that a cell is about this many pixels wide
BORDER = 2  # pixels of border between cells (in the upscaled picture)
# White: stands out against the black backgrounds of the grey datasets and an untrained decoder's grey.
BORDER_LEVEL = 1.0
EVAL_IMAGES = 256  # test images for the ELBO and the traversal's latent statistics


def has_decoder(method: torch.nn.Module) -> bool:
    """Whether ``method`` is generative: a :class:`PyroSSL` whose model is a :class:`GenerativeModel`."""
    return isinstance(method, PyroSSL) and isinstance(method.model, GenerativeModel)


@contextmanager
def _evaluating(method: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients, restoring the training mode afterwards."""
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        method.train(was_training)


def test_elbo(
    method: PyroSSL, images: torch.Tensor, device: torch.device, batch_size: int = 256, num_samples: int = 1
) -> float | None:
    """Mean test ELBO in nats per image of uint8 ``images`` [N, C, H, W]; None when not defined.

    ``num_samples`` posterior samples per image estimate E_q[log p(x | z)]; averaged over a few
    hundred images, one sample already gives a small Monte Carlo error.
    """
    if not has_decoder(method):
        return None
    model: GenerativeModel = method.model
    total, count = 0.0, 0
    with _evaluating(method):
        for start in range(0, len(images), batch_size):
            x = to_unit_float(images[start : start + batch_size].to(device))
            bound = model.evidence_lower_bound(method.guide, x, num_samples)
            if bound is None:
                return None
            total += float(bound)
            count += len(x)
    return total / count


test_elbo.__test__ = False  # a library function, not a pytest test, wherever it is imported


def tile(cells: torch.Tensor, upscale: int | None = None, border: int = BORDER) -> np.ndarray:
    """Float cells [R, K, C, H, W] in [0, 1] → one uint8 RGB picture [H', W', 3].

    Each cell is upscaled by nearest neighbour (by default to about :data:`CELL_TARGET` pixels)
    and cells are separated by ``border`` grey pixels, with the same border around the picture.
    """
    rows, cols, channels, height, width = cells.shape
    if upscale is None:
        upscale = max(1, round(CELL_TARGET / height))
    cells = cells.detach().float().cpu().clamp(0.0, 1.0)
    if channels == 1:
        cells = cells.expand(rows, cols, 3, height, width)
    cells = cells.repeat_interleave(upscale, dim=3).repeat_interleave(upscale, dim=4)
    h, w = height * upscale, width * upscale
    canvas = torch.full((3, rows * (h + border) + border, cols * (w + border) + border), BORDER_LEVEL)
    for r in range(rows):
        for k in range(cols):
            top, left = border + r * (h + border), border + k * (w + border)
            canvas[:, top : top + h, left : left + w] = cells[r, k]
    return (canvas.permute(1, 2, 0) * 255.0).round().to(torch.uint8).numpy()


def reconstruction_grid(method: PyroSSL, images: torch.Tensor, device: torch.device) -> np.ndarray:
    """Originals (top row) over their reconstructions: the decoder mean at the posterior mean."""
    with _evaluating(method):
        x = to_unit_float(images.to(device))
        recon = method.model.decode_mean(method.guide.represent(x))
    return tile(torch.stack((x, recon)))


def prior_samples_grid(method: PyroSSL, n: int, device: torch.device, seed: int, cols: int = 8) -> np.ndarray | None:
    """Decoder means of ``n`` latents drawn from the model, in rows of ``cols``; None when the
    prior cannot be sampled (the improper flat prior). The picture depends on ``seed`` only: the
    draw uses its own RNG state and leaves the global one untouched."""
    model: GenerativeModel = method.model
    devices = [device] if torch.device(device).type == "cuda" else []
    with _evaluating(method), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        z = model.sample_view_latents(n)
        if z is None:
            return None
        means = model.decode_mean(z.to(device))
    rows = math.ceil(n / cols)
    pad = means.new_full((rows * cols - n, *means.shape[1:]), BORDER_LEVEL)
    return tile(torch.cat((means, pad)).view(rows, cols, *means.shape[1:]))


def top_variance_dims(
    method: PyroSSL, images: torch.Tensor, device: torch.device, k: int
) -> tuple[list[int], torch.Tensor]:
    """The ``k`` latent dimensions whose posterior means vary most over ``images``, and their std."""
    with _evaluating(method):
        means = method.guide.represent(to_unit_float(images.to(device)))
    std = means.std(dim=0)
    dims = std.argsort(descending=True)[:k]
    return dims.tolist(), std[dims]


def latent_traversal_grid(
    method: PyroSSL,
    image: torch.Tensor,
    device: torch.device,
    dims: Sequence[int],
    span: float = 2.0,
    steps: int = 9,
    scales: torch.Tensor | None = None,
) -> np.ndarray:
    """One row per dimension d in ``dims``: the decoder mean at μ + t·σ_d·e_d for t from −span to +span.

    μ is the posterior mean of ``image`` (uint8 [C, H, W]); σ_d is ``scales[i]`` (e.g. the spread
    of posterior means over a test set, from :func:`top_variance_dims`), or 1, the prior's unit.
    """
    dims = list(dims)
    sigma = torch.ones(len(dims)) if scales is None else torch.as_tensor(scales, dtype=torch.float32).cpu()
    offsets = torch.linspace(-span, span, steps)
    with _evaluating(method):
        mu = method.guide.represent(to_unit_float(image.unsqueeze(0).to(device)))[0]
        z = mu.expand(len(dims), steps, mu.shape[-1]).clone()
        for row, d in enumerate(dims):
            z[row, :, d] += (offsets * sigma[row]).to(z.device)
        means = method.model.decode_mean(z)
    return tile(means)


def save_png(picture: np.ndarray, path: Path) -> Path:
    """Write a uint8 RGB picture [H, W, 3] as PNG, creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture, mode="RGB").save(path)
    return path


def write_generative_artefacts(
    method: torch.nn.Module,
    dataset: ImageDataset,
    out_dir: Path,
    device: torch.device,
    seed: int = 0,
    num_images: int = EVAL_IMAGES,
    traversal_dims: int = 6,
) -> dict[str, float] | None:
    """Write ``reconstructions.png``, ``samples.png`` and ``traversals.png`` into ``out_dir`` and
    return ``{"elbo": nats per image}`` for a generative method; None (nothing written) otherwise.

    A seeded subset of ``num_images`` test images gives the ELBO and the traversal's latent
    statistics; the first 10 of them are reconstructed and the first is traversed. Without a
    defined ELBO (flat prior) the dict is empty, and ``samples.png`` is not written.
    """
    if not has_decoder(method):
        return None
    out_dir = Path(out_dir)
    test = dataset.test.images
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(test), generator=generator)[:num_images]
    images = test[index]
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)  # the Monte Carlo ELBO is reproducible and leaves the run's RNG alone
        elbo = test_elbo(method, images, device)
    save_png(reconstruction_grid(method, images[:10], device), out_dir / "reconstructions.png")
    samples = prior_samples_grid(method, 32, device, seed)
    if samples is not None:
        save_png(samples, out_dir / "samples.png")
    dims, spread = top_variance_dims(method, images, device, min(traversal_dims, method.model.latent_dim))
    save_png(latent_traversal_grid(method, images[0], device, dims, scales=spread), out_dir / "traversals.png")
    return {} if elbo is None else {"elbo": elbo}
