"""Each estimator in genssl.objectives against a naive implementation (loops / direct formulas):
values and gradients, in float64 on small random inputs."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, special, stats

from genssl import objectives as obj
from genssl.errors import ConfigError, ShapeError

D64 = torch.float64


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=D64).requires_grad_(True)


def assert_value_and_grad(fn, naive, *inputs: torch.Tensor, rtol: float = 1e-9, atol: float = 1e-10) -> None:
    """fn(*inputs) == naive(*inputs), and so are their gradients w.r.t. every input."""
    got, want = fn(*inputs), naive(*inputs)
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol)
    w = torch.randn(got.shape, dtype=got.dtype, generator=torch.Generator().manual_seed(9))
    g_got = torch.autograd.grad((got * w).sum(), inputs)
    g_want = torch.autograd.grad((want * w).sum(), inputs)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=rtol * 100, atol=atol * 100)


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).sum())


def mp_log_vmf_normaliser(d: int, kappa: float) -> float:
    mpmath.mp.dps = 50
    nu = mpmath.mpf(d) / 2 - 1
    c = kappa**nu / ((2 * mpmath.pi) ** (mpmath.mpf(d) / 2) * mpmath.besseli(nu, kappa))
    return float(mpmath.log(c))


# ---------------------------------------------------------------- special functions


@pytest.mark.parametrize("nu", [0.0, 0.5, 3.5, 29.5, 30.0, 63.0, 1023.0])
@pytest.mark.parametrize("x", [1e-4, 0.3, 10.0, 250.0, 5e4])
def test_log_bessel_iv_matches_mpmath(nu, x):
    mpmath.mp.dps = 50
    want = float(mpmath.log(mpmath.besseli(nu, x)))
    assert obj.log_bessel_iv(nu, x) == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize(
    "d,kappa", [(2, 1.0), (3, 10.0), (16, 0.01), (128, 10.0), (2048, 10.0), (2048, 1e3), (512, 30.0)]
)
def test_log_vmf_normaliser_large_dimension(d, kappa):
    got = obj.log_vmf_normaliser(d, kappa)
    assert math.isfinite(got)
    assert got == pytest.approx(mp_log_vmf_normaliser(d, kappa), rel=1e-10)


def test_log_vmf_normaliser_closed_forms():
    # S^2: C_3(κ) = κ / (4π sinh κ); S^1: C_2(κ) = 1 / (2π I_0(κ)).
    for k in (0.1, 1.0, 10.0, 50.0):
        assert obj.log_vmf_normaliser(3, k) == pytest.approx(
            math.log(k) - math.log(4 * math.pi) - (k + math.log1p(-math.exp(-2 * k)) - math.log(2))
        )
        assert obj.log_vmf_normaliser(2, k) == pytest.approx(-math.log(2 * math.pi) - math.log(special.ive(0, k)) - k)
    # small κ: uniform density on S^{d-1}, 1 / area = Γ(d/2) / (2 π^{d/2})
    d = 10
    assert obj.log_vmf_normaliser(d, 1e-9) == pytest.approx(
        special.gammaln(d / 2) - math.log(2) - d / 2 * math.log(math.pi), abs=1e-8
    )


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="kappa"):
        obj.log_vmf_normaliser(8, 0.0)
    with pytest.raises(ConfigError, match="dim"):
        obj.log_vmf_normaliser(1, 1.0)
    with pytest.raises(ConfigError, match="'mean' or 'plugin'"):
        obj.vmf_kde_entropy(rand(4, 3), estimator="median")
    with pytest.raises(ConfigError, match="alpha"):
        obj.matrix_renyi_entropy(torch.eye(3), alpha=0.0)
    with pytest.raises(ConfigError, match="reduction"):
        obj.vmf_reconstruction(rand(4, 3), rand(4, 3), reduction="max")
    with pytest.raises(ConfigError, match="iterations"):
        obj.sinkhorn_knopp(rand(4, 3), iterations=-1)
    with pytest.raises(ShapeError):
        obj.vmf_kde_entropy(rand(4, 3, 2))


# ---------------------------------------------------------------- entropy


def naive_kde_log_density(z, kappa, exclude_self, with_normaliser):
    n, d = z.shape
    zs = [unit(z[i]) for i in range(n)]
    out = []
    for i in range(n):
        terms = [torch.exp(kappa * (zs[i] * zs[j]).sum()) for j in range(n) if j != i or not exclude_self]
        log_p = torch.log(sum(terms) / len(terms))
        out.append(log_p + (mp_log_vmf_normaliser(d, kappa) if with_normaliser else 0.0))
    return torch.stack(out)


@pytest.mark.parametrize("exclude_self", [False, True])
@pytest.mark.parametrize("with_normaliser", [False, True])
def test_vmf_kde_log_density(exclude_self, with_normaliser):
    z = rand(7, 5)
    assert_value_and_grad(
        lambda x: obj.vmf_kde_log_density(x, 4.0, exclude_self=exclude_self, include_normaliser=with_normaliser),
        lambda x: naive_kde_log_density(x, 4.0, exclude_self, with_normaliser),
        z,
    )


@pytest.mark.parametrize("exclude_self", [False, True])
def test_vmf_kde_entropy_mean_and_plugin(exclude_self):
    z = rand(6, 4, seed=1)

    def naive_mean(x):
        return -naive_kde_log_density(x, 10.0, exclude_self, True).mean()

    def naive_plugin(x):
        log_p = naive_kde_log_density(x, 10.0, exclude_self, True)
        p = torch.exp(log_p)
        return -sum(p[i] / p.sum() * log_p[i] for i in range(len(p)))

    assert_value_and_grad(lambda x: obj.vmf_kde_entropy(x, 10.0, exclude_self=exclude_self), naive_mean, z)
    assert_value_and_grad(
        lambda x: obj.vmf_kde_entropy(x, 10.0, estimator="plugin", exclude_self=exclude_self), naive_plugin, z
    )


def test_vmf_kde_large_dimension_is_finite():
    z = rand(8, 2048, seed=2)
    h = obj.vmf_kde_entropy(z, 10.0)
    (g,) = torch.autograd.grad(h, z)
    assert torch.isfinite(h) and torch.isfinite(g).all()


def test_prototype_entropy():
    p = torch.softmax(rand(9, 5, seed=3), dim=1)
    logits = p.detach().log().requires_grad_(True)

    def naive(lg):
        probs = torch.softmax(lg, dim=1)
        p_bar = [sum(probs[i, c] for i in range(probs.shape[0])) / probs.shape[0] for c in range(5)]
        return -sum(pc * torch.log(pc) for pc in p_bar)

    assert_value_and_grad(lambda lg: obj.prototype_entropy(torch.softmax(lg, 1), eps=0.0), naive, logits)


def test_gaussian_logdet_entropy():
    z = rand(12, 4, seed=4)
    for unbiased in (True, False):

        def naive(x, unbiased=unbiased):
            n, d = x.shape
            mean = sum(x[i] for i in range(n)) / n
            cov = sum(torch.outer(x[i] - mean, x[i] - mean) for i in range(n)) / (n - 1 if unbiased else n)
            return 0.5 * torch.logdet(2 * math.pi * math.e * cov + 1e-3 * torch.eye(d, dtype=D64))

        assert_value_and_grad(lambda x: obj.gaussian_logdet_entropy(x, eps=1e-3, unbiased=unbiased), naive, z)


# ---------------------------------------------------------------- matrix information


def naive_renyi(k, alpha):
    lam, vec = torch.linalg.eigh(k / k.shape[0])
    if alpha == 1.0:  # −tr(A log A) with log A = V diag(log λ) Vᵀ
        log_a = vec @ torch.diag(torch.log(lam)) @ vec.T
        return -torch.trace(k / k.shape[0] @ log_a)
    return torch.log((lam**alpha).sum()) / (1 - alpha)


def full_rank_gram(seed):
    return rand(6, 9, seed=seed)  # n < d: K full rank, distinct eigenvalues


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_matrix_renyi_entropy(alpha):
    z = full_rank_gram(5)
    assert_value_and_grad(
        lambda x: obj.matrix_renyi_entropy(obj.gram_matrix(x), alpha),
        lambda x: naive_renyi(obj.gram_matrix(x), alpha),
        z,
        rtol=1e-7,
    )


def test_matrix_renyi_entropy_alpha_one_is_the_limit():
    k = obj.gram_matrix(full_rank_gram(6)).detach()
    h1 = obj.matrix_renyi_entropy(k, 1.0)
    for a in (1 - 1e-5, 1 + 1e-5):
        assert obj.matrix_renyi_entropy(k, a).item() == pytest.approx(h1.item(), abs=1e-4)
    # α = 2 via ‖K‖_F²/n² equals the eigenvalue form
    assert obj.matrix_renyi_entropy(k, 2.0).item() == pytest.approx(naive_renyi(k, 2.0).item())


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_matrix_mutual_information_and_joint_entropy(alpha):
    z1, z2 = full_rank_gram(7), full_rank_gram(8)

    def naive_joint(a, b):
        k1, k2 = obj.gram_matrix(a), obj.gram_matrix(b)
        prod = torch.stack([torch.stack([k1[i, j] * k2[i, j] for j in range(6)]) for i in range(6)])
        return naive_renyi(prod, alpha)

    def naive_mi(a, b):
        return naive_renyi(obj.gram_matrix(a), alpha) + naive_renyi(obj.gram_matrix(b), alpha) - naive_joint(a, b)

    assert_value_and_grad(
        lambda a, b: obj.matrix_joint_entropy(obj.gram_matrix(a), obj.gram_matrix(b), alpha),
        naive_joint,
        z1,
        z2,
        rtol=1e-7,
    )
    assert_value_and_grad(
        lambda a, b: obj.matrix_mutual_information(obj.gram_matrix(a), obj.gram_matrix(b), alpha),
        naive_mi,
        z1,
        z2,
        rtol=1e-7,
    )


@pytest.mark.parametrize("n,d", [(5, 8), (9, 4)])
def test_total_coding_rate(n, d):
    z = rand(n, d, seed=n)

    def naive(x):
        zn = torch.stack([unit(x[i]) for i in range(n)])
        return torch.logdet(torch.eye(d, dtype=D64) + 0.7 / d * zn.T @ zn)

    assert_value_and_grad(lambda x: obj.total_coding_rate(x, 0.7), naive, z)


@pytest.mark.parametrize("n,d", [(5, 8), (9, 4)])
def test_gram_mean_square(n, d):
    z = rand(n, d, seed=n + 1)

    def naive(x):
        zn = [unit(x[i]) for i in range(n)]
        return sum((zn[i] @ zn[j]) ** 2 for i in range(n) for j in range(n)) / n**2

    assert_value_and_grad(obj.gram_mean_square, naive, z)
    k = obj.gram_matrix(z).detach()
    torch.testing.assert_close(obj.gram_mean_square(z), torch.exp(-obj.matrix_renyi_entropy(k, 2.0)))
    collapsed = torch.ones(n, d, dtype=D64)
    torch.testing.assert_close(obj.gram_mean_square(collapsed), torch.tensor(1.0, dtype=D64))
    raw = obj.gram_mean_square(z, normalise=False)
    torch.testing.assert_close(raw, (z @ z.T).pow(2).mean())


# ---------------------------------------------------------------- kernels


def test_imq_kernel_and_hsic_exact():
    x, y = rand(5, 3, seed=10), rand(4, 3, seed=11)
    naive_k = lambda a, b: torch.stack(
        [
            torch.stack([0.8 / torch.sqrt(((a[i] - b[j]) ** 2).sum() + 0.64) for j in range(len(b))])
            for i in range(len(a))
        ]
    )
    assert_value_and_grad(lambda a, b: obj.imq_kernel(a, b, 0.8), naive_k, x, y)

    def naive_hsic(a, b):
        k, l = naive_k(a, a), a.new_ones(()) * (b @ b.T)
        h = torch.eye(5, dtype=D64) - torch.ones(5, 5, dtype=D64) / 5
        return torch.trace(k @ h @ l @ h) / 25

    b = rand(5, 2, seed=12)
    assert_value_and_grad(lambda a, c: obj.hsic_exact(obj.imq_kernel(a, a, 0.8), c @ c.T), naive_hsic, x, b)


@pytest.mark.parametrize("n,f1,f2", [(10, 6, 4), (4, 12, 10)])  # feature path; Gram path
def test_hsic_features_equals_exact_on_explicit_grams(n, f1, f2):
    phi, psi = rand(n, f1, seed=13), rand(n, f2, seed=14)
    assert_value_and_grad(obj.hsic_features, lambda a, b: obj.hsic_exact(a @ a.T, b @ b.T), phi, psi)


def test_identity_hsic():
    n_img, m = 4, 3
    z = rand(n_img * m, 3, seed=15)

    def naive(x):
        k = obj.imq_kernel(x, x, 1.3)
        pos = [k[i * m + v, i * m + w] for i in range(n_img) for v in range(m) for w in range(m) if v != w]
        return sum(pos) / len(pos) - k.sum() / k.numel()

    assert_value_and_grad(lambda x: obj.identity_hsic_exact(obj.imq_kernel(x, x, 1.3), m), naive, z)
    # relation to the V-statistic with the one-hot label Gram (docstring formula)
    k = obj.imq_kernel(z, z, 1.3).detach()
    labels = F.one_hot(torch.arange(n_img).repeat_interleave(m)).to(D64)
    n = n_img * m
    p = obj.identity_hsic_exact(k, m) + k.mean()
    p = p * n * (m - 1)
    want = (p + torch.diagonal(k).sum()) / n**2 - m / n * k.mean()
    torch.testing.assert_close(obj.hsic_exact(k, labels @ labels.T), want)
    # feature form equals the exact form on the explicit Gram matrix
    phi = rand(n_img, m, 5, seed=16)
    assert_value_and_grad(
        obj.identity_hsic_features, lambda f: obj.identity_hsic_exact(f.reshape(n, 5) @ f.reshape(n, 5).T, m), phi
    )


def test_imq_scale_mixture_identity():
    # c/√(r²+c²) = E_t[exp(−t r²)], t ~ Gamma(shape ½, rate c²), by quadrature
    for c in (0.5, 1.0, 3.0):
        for r in (0.0, 0.3, 1.0, 4.0):
            val, _ = integrate.quad(
                lambda t: stats.gamma.pdf(t, a=0.5, scale=1 / c**2) * math.exp(-t * r * r), 0, np.inf
            )
            assert val == pytest.approx(c / math.sqrt(r * r + c * c), rel=1e-7)


@pytest.mark.parametrize("d,c", [(3, 1.0), (8, 2.0)])
def test_imq_frequency_radius_follows_bessel_k_density(d, c):
    # radial density of ‖ω‖ for IMQ scale c: ∝ (c r)^{(d−1)/2} K_{(d−1)/2}(c r)
    g = torch.Generator().manual_seed(17)
    radius = (obj.imq_frequencies(d, 4000, generator=g, dtype=D64).norm(dim=1) / c).numpy()
    nu = (d - 1) / 2
    dens = lambda r: (c * r) ** nu * special.kv(nu, c * r)
    total, _ = integrate.quad(dens, 0, np.inf)
    cdf = np.vectorize(lambda r: integrate.quad(dens, 0, r)[0] / total)
    assert stats.kstest(radius, cdf).pvalue > 1e-3


def test_random_fourier_features_approximate_imq():
    x = rand(6, 4, seed=18).detach()
    freqs = obj.imq_frequencies(4, 20000, generator=torch.Generator().manual_seed(19), dtype=D64)
    phi = obj.random_fourier_features(x, freqs, 1.5)
    assert phi.shape == (6, 40000)
    torch.testing.assert_close(phi @ phi.T, obj.imq_kernel(x, x, 1.5), atol=0.02, rtol=0)


def test_imq_scale_objective():
    x, y = rand(5, 3, seed=20).detach(), rand(6, 3, seed=21).detach()
    c = torch.tensor(0.9, dtype=D64, requires_grad=True)

    def naive(scale):
        sq = torch.stack([torch.stack([((x[i] - y[j]) ** 2).sum() for j in range(6)]) for i in range(5)])
        total = (scale / torch.sqrt(sq + scale**2)).sum()
        (g,) = torch.autograd.grad(total, scale, create_graph=True)
        return torch.log(g.abs() / 30)

    assert_value_and_grad(lambda s: obj.imq_scale_objective(x, y, s), naive, c)


# ---------------------------------------------------------------- assignments, redundancy, reconstruction


def test_sinkhorn_knopp():
    scores = rand(8, 5, seed=22)

    def naive(s, iterations=3, eps=0.05):  # the SwAV paper's algorithm in linear space
        q = torch.exp(s / eps).T
        q = q / q.sum()
        k, b = q.shape
        for _ in range(iterations):
            q = q / q.sum(dim=1, keepdim=True) / k
            q = q / q.sum(dim=0, keepdim=True) / b
        return (q * b).T

    assert_value_and_grad(obj.sinkhorn_knopp, naive, scores)
    q = obj.sinkhorn_knopp(scores.detach(), 100, 0.5)
    torch.testing.assert_close(q.sum(1), torch.ones(8, dtype=D64))
    torch.testing.assert_close(q.sum(0), torch.full((5,), 8 / 5, dtype=D64), atol=1e-6, rtol=0)


def test_vicreg_terms():
    z1, z2 = rand(7, 4, seed=23), rand(7, 4, seed=24)
    n, d = 7, 4

    def var(x):
        col = [x[:, j] for j in range(d)]
        stds = [torch.sqrt(((c - c.mean()) ** 2).sum() / (n - 1) + 1e-4) for c in col]
        return sum(torch.relu(1.0 - s) for s in stds) / d

    def cov(x):
        m = x.mean(0)
        c = lambda i, j: sum((x[b, i] - m[i]) * (x[b, j] - m[j]) for b in range(n)) / (n - 1)
        return sum(c(i, j) ** 2 for i in range(d) for j in range(d) if i != j) / d

    assert_value_and_grad(obj.vicreg_variance, var, z1 * 0.5)
    assert_value_and_grad(obj.vicreg_covariance, cov, z1)
    assert_value_and_grad(
        obj.vicreg_invariance,
        lambda a, b: sum((a[i, j] - b[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d),
        z1,
        z2,
    )


def test_batch_standardise_and_cross_correlation():
    z1, z2 = rand(9, 3, seed=25), rand(9, 3, seed=26)
    bn = lambda x: F.batch_norm(x, None, None, training=True, eps=1e-5)
    assert_value_and_grad(obj.batch_standardise, bn, z1)
    naive = lambda a, b: torch.stack(
        [torch.stack([sum(bn(a)[k, i] * bn(b)[k, j] for k in range(9)) / 9 for j in range(3)]) for i in range(3)]
    )
    assert_value_and_grad(obj.cross_correlation, naive, z1, z2)


def test_vmf_reconstruction():
    z1, z2 = rand(5, 6, seed=27), rand(5, 6, seed=28)
    naive = lambda a, b: torch.stack([3.0 * (unit(a[i]) * unit(b[i])).sum() for i in range(5)])
    assert_value_and_grad(lambda a, b: obj.vmf_reconstruction(a, b, 3.0, reduction="none"), naive, z1, z2)
    assert_value_and_grad(
        lambda a, b: obj.vmf_reconstruction(a, b, 3.0, include_normaliser=True),
        lambda a, b: naive(a, b).mean() + mp_log_vmf_normaliser(6, 3.0),
        z1,
        z2,
    )


def test_symmetric_cross_entropy():
    l1, l2 = rand(4, 6, seed=29), rand(4, 6, seed=30)

    def naive(a, b):
        p, q = torch.softmax(a, 1), torch.softmax(b, 1)
        rows = [
            -0.5 * sum(p[i, c] * torch.log(q[i, c]) + q[i, c] * torch.log(p[i, c]) for c in range(6)) for i in range(4)
        ]
        return sum(rows) / 4

    assert_value_and_grad(
        lambda a, b: obj.symmetric_cross_entropy(torch.softmax(a, 1), torch.softmax(b, 1), eps=0.0), naive, l1, l2
    )
