"""What a decoder adds to the evaluation: a test ELBO and pictures of reconstructions, samples, traversals.

These apply to the generative methods (SimVAE, VAE, β-VAE: a :class:`PyroSSL` whose model is a
:class:`~genssl.models.SimVAE`); for every other method :func:`write_generative_artefacts` returns
None and writes nothing.

The test ELBO (:func:`test_elbo`) is a lower bound on the log-likelihood of *one* image, in nats per
image (summed over pixels and channels, pixels scaled to [0, 1]), averaged over the images:

    ELBO(x) = E_{q(z|x)}[log p(x | z)] − KL(q(z | x) ‖ p(z)),

with q the trained encoder and p(z) the model's marginal of one view's latent:

- VAE / β-VAE: p(z) is the prior. β only reweights the training objective; the bound is at β = 1.
- SimVAE: p(z) = ∫ p(y) N(z; y, σ² I) dy, the single-view marginal. SimVAE's training ELBO is a
  bound on the joint density of J views of an image, which is not a per-image quantity, so it is
  not used. The marginal is closed-form for the built-in priors: N(0, s²) gives N(0, (s² + σ²) I)
  (KL analytic) and a mixture of Gaussians gives the same mixture with every variance increased by
  σ² (KL by Monte Carlo on the samples of the first term).
- The flat prior is improper, so p(x) and its bound do not exist: the ELBO is None.
- A prior of the user's own (no closed-form marginal known here) falls back to Pyro's own ELBO of
  the model and guide on single views (J = 1, β = 1): still a bound on log p(x), looser because
  the guide also proposes y.

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
import pyro
import pyro.distributions as dist
import torch
from PIL import Image
from torch.distributions import kl_divergence

from genssl.data import ImageDataset
from genssl.data.augment import to_unit_float
from genssl.inference.pyro_ssl import PyroSSL
from genssl.models import FlatPrior, MixturePrior, NormalPrior, SimVAE

CELL_TARGET = 96  # nearest-neighbour upscale so that a cell is about this many pixels wide
BORDER = 2  # pixels of border between cells (in the upscaled picture)
# White: stands out against the black backgrounds of the grey datasets and an untrained decoder's grey.
BORDER_LEVEL = 1.0
EVAL_IMAGES = 256  # test images for the ELBO and the traversal's latent statistics


def has_decoder(method: torch.nn.Module) -> bool:
    """Whether ``method`` is generative: a :class:`PyroSSL` whose model is a :class:`SimVAE`."""
    return isinstance(method, PyroSSL) and isinstance(method.model, SimVAE)


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


def _view_marginal(model: SimVAE, device: torch.device) -> dist.Distribution | None:
    """p(z) of one view for the built-in proper priors (see the module docstring); None otherwise."""
    prior, extra_var = model.prior, (model.view_var or 0.0)
    if isinstance(prior, NormalPrior):
        scale = math.sqrt(prior.scale**2 + extra_var)
        return dist.Normal(torch.zeros(model.latent_dim, device=device), scale).to_event(1)
    if isinstance(prior, MixturePrior):
        scales = (prior.scales**2 + extra_var).sqrt()
        components = dist.Normal(prior.means, scales).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=prior.logits), components)
    return None


def _elbo_closed_form(
    model: SimVAE, guide: torch.nn.Module, x: torch.Tensor, marginal: dist.Distribution, num_samples: int
) -> torch.Tensor:
    """Per-image ELBO [N] under the single-view marginal ``marginal`` (see the module docstring)."""
    loc, scale = guide.encode(x)
    q = dist.Normal(loc, scale).to_event(1)
    z = q.rsample((num_samples,))  # [S, N, L]
    expected_ll = model.log_likelihood(x.expand(num_samples, *x.shape), z).mean(0)
    if isinstance(marginal, dist.Independent):  # Normal: analytic
        kl = kl_divergence(q, marginal)
    else:
        kl = (q.log_prob(z) - marginal.log_prob(z)).mean(0)
    return expected_ll - kl


def _elbo_pyro(method: PyroSSL, x: torch.Tensor) -> torch.Tensor:
    """Mean per-image ELBO of the model's own Pyro objective on single views, at β = 1."""
    model, guide = method.model, method.guide
    saved = model.beta, guide.beta
    model.beta = guide.beta = 1.0
    try:
        # The model normalises its ELBO per view; with one view per image that is per image.
        return -method(x.unsqueeze(1))
    finally:
        model.beta, guide.beta = saved


def test_elbo(
    method: PyroSSL, images: torch.Tensor, device: torch.device, batch_size: int = 256, num_samples: int = 1
) -> float | None:
    """Mean test ELBO in nats per image of uint8 ``images`` [N, C, H, W]; None when not defined.

    ``num_samples`` posterior samples per image estimate E_q[log p(x | z)]; averaged over a few
    hundred images, one sample already gives a small Monte Carlo error.
    """
    if not has_decoder(method):
        return None
    model: SimVAE = method.model
    if isinstance(model.prior, FlatPrior):
        return None
    marginal = _view_marginal(model, device)
    total, count = 0.0, 0
    with _evaluating(method):
        for start in range(0, len(images), batch_size):
            x = to_unit_float(images[start : start + batch_size].to(device))
            if marginal is None:
                total += float(_elbo_pyro(method, x)) * len(x)
            else:
                total += float(_elbo_closed_form(model, method.guide, x, marginal, num_samples).sum())
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


def sample_prior_latents(model: SimVAE, n: int) -> torch.Tensor:
    """n view latents [n, L] from the model: y ~ p(y), then z | y ~ N(y, σ² I) (z = y for the VAE)."""
    with pyro.poutine.block(), pyro.plate("images", n):
        y = model.prior(n, model.latent_dim)
    if model.view_var is None:
        return y
    return y + math.sqrt(model.view_var) * torch.randn_like(y)


def prior_samples_grid(method: PyroSSL, n: int, device: torch.device, seed: int, cols: int = 8) -> np.ndarray | None:
    """Decoder means of ``n`` latents drawn from the model, in rows of ``cols``; None when the
    prior cannot be sampled (the improper flat prior). The picture depends on ``seed`` only: the
    draw uses its own RNG state and leaves the global one untouched."""
    if isinstance(method.model, SimVAE) and isinstance(method.model.prior, FlatPrior):
        return None
    model: SimVAE = method.model
    devices = [device] if torch.device(device).type == "cuda" else []
    with _evaluating(method), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        z = sample_prior_latents(model, n).to(device)
        means = model.decode_mean(z)
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
