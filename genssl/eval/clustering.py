"""Unsupervised content metric: does a Gaussian mixture on the features find the classes?"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch.nn import functional as F

from genssl.errors import ShapeError
from genssl.eval.probes import check_features, standardise
from genssl.eval.subsets import seeded_subset
from genssl.objectives.assignments import kmeans_plus_plus


def hungarian_accuracy(clusters: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Accuracy under the best one-to-one map of cluster ids to labels (Hungarian algorithm).

    With counts N[c, y] of points in cluster c with label y, the map maximises Σ N[c, π(c)];
    the accuracy is that sum over the number of points. Clusters left unmatched (more clusters than
    labels) count as errors, so the score is invariant to relabelling the clusters and nothing else.
    """
    clusters, labels = np.asarray(clusters), np.asarray(labels)
    if clusters.shape != labels.shape or clusters.ndim != 1:
        raise ShapeError(f"hungarian_accuracy needs two [N] arrays; got {clusters.shape} and {labels.shape}.")
    _, c = np.unique(clusters, return_inverse=True)
    _, y = np.unique(labels, return_inverse=True)
    counts = np.zeros((c.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(counts, (c, y), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def pca_project(train_x: torch.Tensor, *others: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
    """Project onto the top ``dim`` principal directions of ``train_x`` (centred by the train mean)."""
    mean = train_x.mean(0)
    centred = (train_x - mean).double()
    _, evecs = torch.linalg.eigh(centred.T @ centred / len(train_x))
    basis = evecs[:, -dim:].flip(1).to(train_x.dtype)  # eigh sorts ascending
    return tuple((t - mean) @ basis for t in (train_x, *others))


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, max_iter: int = 100) -> torch.Tensor:
    """Lloyd's k-means from a k-means++ seeding; returns the cluster index of every row of ``x``.

    The seeding (:func:`genssl.objectives.assignments.kmeans_plus_plus`, squared Euclidean) draws
    each next centre with probability ∝ squared distance to the nearest chosen one, from
    ``generator`` (CPU), so the result is a deterministic function of the seed. An emptied cluster
    keeps its previous centre.
    """
    centres = x[kmeans_plus_plus(x, k, generator, metric="sqeuclidean")]
    labels = torch.cdist(x, centres).argmin(1)
    for _ in range(max_iter):
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        new = torch.cdist(x, centres).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def _m_step(x: torch.Tensor, resp: torch.Tensor, reg_covar: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixture weights, means and regularised full covariances maximising the expected log-likelihood.

    Float64 throughout: in float32 the rounding of the large directions of a nearly degenerate
    component exceeds ``reg_covar`` and its covariance stops being positive definite.
    """
    x, resp = x.double(), resp.double()
    counts = resp.sum(0) + 10 * torch.finfo(torch.float64).eps  # as scikit-learn: no empty component
    means = resp.T @ x / counts[:, None]
    diff = x[None] - means[:, None]  # [K, N, D]
    covs = (diff * resp.T[:, :, None]).transpose(1, 2) @ diff / counts[:, None, None]
    covs = covs + reg_covar * torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
    return counts / len(x), means, covs


def _log_joint(x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor) -> torch.Tensor:
    """log π_k + log N(x_n; μ_k, Σ_k) for every point (float32 rows) and component, float64 ``[N, K]``."""
    (n, d), k = x.shape, len(means)
    chol = torch.linalg.cholesky(covs)  # float64: the covariances may be ill-conditioned
    eye = torch.eye(d, dtype=chol.dtype, device=x.device).expand(k, d, d)
    whiten = torch.linalg.solve_triangular(chol, eye, upper=False)  # L_k⁻¹: Mahalanobis = ‖L_k⁻¹(x − μ_k)‖²
    shift = (whiten @ means[:, :, None]).view(k * d).float()
    mahalanobis = (x @ whiten.reshape(k * d, d).T.float() - shift).view(n, k, d).pow(2).sum(2)  # [N, K]
    log_det = 2 * chol.diagonal(dim1=1, dim2=2).log().sum(1)
    return -0.5 * (d * math.log(2 * math.pi) + log_det + mahalanobis.double()) + weights.log()


def fit_gmm(
    x: torch.Tensor,
    k: int,
    seed: int = 0,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-4,
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], bool, float]:
    """Full-covariance Gaussian mixture by EM on ``x``'s device; returns (weights, means, covs), whether
    EM converged and the mean log-likelihood of ``x``.

    The same algorithm as scikit-learn's ``GaussianMixture(covariance_type="full", init_params="kmeans")``
    (k-means responsibilities, then E and M steps until the mean log-likelihood changes by less than
    ``tol``; ``reg_covar`` added to every covariance diagonal; of ``n_init`` seeded starts the most
    likely fit is kept), written as batched tensor operations: scikit-learn's per-component loops
    took 26 s for 100 iterations on 20k×32 points on this project's two contended CPU cores, several
    times longer than this, and cannot use a GPU. The E-step's [N, K, D] work is float32; the M-step
    and the covariance factorisations are float64.
    """
    x = x.float()
    best: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], bool, float] | None = None
    for start in range(n_init):
        labels = kmeans(x, k, torch.Generator().manual_seed(seed * 1009 + start))
        params = _m_step(x, F.one_hot(labels, k).float(), reg_covar)
        previous, converged = -math.inf, False
        for _ in range(max_iter):
            log_joint = _log_joint(x, *params)
            log_likelihood = torch.logsumexp(log_joint, 1, keepdim=True)
            params = _m_step(x, (log_joint - log_likelihood).exp().float(), reg_covar)
            mean_ll = log_likelihood.mean().item()
            if abs(mean_ll - previous) < tol:
                converged = True
                break
            previous = mean_ll
        mean_ll = torch.logsumexp(_log_joint(x, *params), 1).mean().item()
        if best is None or mean_ll > best[2]:
            best = (params, converged, mean_ll)
    assert best is not None, "n_init must be at least 1"
    return best


def gmm_clustering(
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    seed: int = 0,
    *,
    pca_dim: int = 32,
    max_train: int | None = 10000,
    n_init: int = 1,
    max_iter: int = 100,
    reg_covar: float = 1e-4,
) -> dict[str, float]:
    """Fit a ``num_classes``-component Gaussian mixture to train features, score its test clusters.

    Protocol: features are standardised with training statistics and projected onto the top
    ``pca_dim`` principal directions of train (variance kept, not whitened, so the k-means
    initialisation attends to the directions that vary most); a full-covariance mixture
    (:func:`fit_gmm`, seeded k-means start; ``n_init`` > 1 keeps the most likely of several starts,
    at that many times the cost) is fitted without labels on a seeded subset of at most
    ``max_train`` training rows; the most likely component of every test point is compared with its
    label. EM's local optima make the scores vary with the seed (by several points of accuracy on
    weakly clustered features), so compare methods over seeds. Full
    covariances because SSL feature clusters are elongated and correlated, which diagonal ones
    cannot follow; the PCA keeps each of them to 32·33/2 = 528 parameters, well determined by
    thousands of points, and the EM steps cheap. No label is used for any choice.

    Returns ``{"gmm_acc": Hungarian-matched accuracy, "nmi": normalised mutual information
    (arithmetic-mean normalisation), "ari": adjusted Rand index, "converged": 1.0 or 0.0}``.
    """
    check_features(train_x, None, test_x, test_y)
    train_x, test_x = standardise(train_x.float(), test_x.float(), clip=True)
    rows = seeded_subset(len(train_x), max_train, seed + 7, sort=False, device=train_x.device, none_if_all=True)
    if rows is not None:
        train_x = train_x[rows]
    dim = min(pca_dim, train_x.shape[1], len(train_x) - 1)
    train_z, test_z = pca_project(train_x, test_x, dim=dim)
    params, converged, _ = fit_gmm(train_z, num_classes, seed, n_init, max_iter, reg_covar=reg_covar)
    clusters = _log_joint(test_z.float(), *params).argmax(1).cpu().numpy()
    labels = test_y.cpu().numpy()
    return {
        "gmm_acc": hungarian_accuracy(clusters, labels),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "converged": float(converged),
    }
