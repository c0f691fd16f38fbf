"""Published losses in genssl.reference against lightly (value and gradient), against
naive formulas where lightly has none, and the identities that link them to the estimators."""

from __future__ import annotations

import math

import pytest
import torch

from genssl import objectives as obj
from genssl import reference as published

lightly_loss = pytest.importorskip("lightly.loss")

D64 = torch.float64


def rand(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=D64)).requires_grad_(True)


def assert_value_and_grad(got_fn, want_fn, *inputs, rtol=1e-10, atol=1e-12):
    got, want = got_fn(*inputs), want_fn(*inputs)
    torch.testing.assert_close(got, want.reshape(got.shape), rtol=rtol, atol=atol)
    for a, b in zip(torch.autograd.grad(got, inputs), torch.autograd.grad(want.sum(), inputs)):
        torch.testing.assert_close(a, b, rtol=rtol * 10, atol=atol * 10)


# ---------------------------------------------------------------- against lightly


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_lightly(temperature):
    z1, z2 = rand(8, 5, seed=1), rand(8, 5, seed=2)
    ref = lightly_loss.NTXentLoss(temperature=temperature, gather_distributed=False)
    assert_value_and_grad(lambda a, b: published.nt_xent_loss(a, b, temperature), ref, z1, z2)


def test_vicreg_matches_lightly():
    z1, z2 = rand(10, 6, seed=3), rand(10, 6, seed=4, scale=0.5)
    assert_value_and_grad(published.vicreg_loss, lightly_loss.VICRegLoss(), z1, z2)


def test_barlow_twins_matches_lightly():
    z1, z2 = rand(12, 5, seed=5), rand(12, 5, seed=6)
    ref = lightly_loss.BarlowTwinsLoss(lambda_param=0.0051)
    assert_value_and_grad(published.barlow_twins_loss, ref, z1, z2)
    # same normalisation: lightly's default (λ = 0.005) is ours with λ = 0.005
    assert_value_and_grad(
        lambda a, b: published.barlow_twins_loss(a, b, lambda_=0.005), lightly_loss.BarlowTwinsLoss(), z1, z2
    )


def test_negative_cosine_similarity_and_byol_match_lightly():
    p, z = rand(7, 4, seed=7), rand(7, 4, seed=8)
    ref = lightly_loss.NegativeCosineSimilarity()
    assert_value_and_grad(published.negative_cosine_similarity, ref, p, z)
    assert_value_and_grad(published.byol_loss, lambda a, b: 2 + 2 * ref(a, b), p, z)
    pn, zn = [t / t.norm(dim=1, keepdim=True) for t in (p, z)]
    torch.testing.assert_close(published.byol_loss(p, z), ((pn - zn) ** 2).sum(1).mean())


def test_dino_matches_lightly_with_fixed_centre():
    k, b = 6, 5
    teacher = [rand(b, k, seed=10 + i) for i in range(2)]
    student = [rand(b, k, seed=20 + i) for i in range(4)]  # 2 global + 2 local crops
    centre = torch.randn(k, generator=torch.Generator().manual_seed(30), dtype=D64)
    ref = lightly_loss.DINOLoss(output_dim=k, teacher_temp=0.04, student_temp=0.1)
    t_temp = float(torch.tensor(0.04))  # lightly divides by a float32 tensor: match its rounding
    ref.center = centre.reshape(1, 1, k).clone()
    inputs = (*teacher, *student)
    assert_value_and_grad(
        lambda *x: published.dino_loss(x[:2], x[2:], centre, teacher_temp=t_temp, student_temp=0.1),
        lambda *x: ref(list(x[:2]), list(x[2:])),
        *inputs,
    )
    # lightly updated its buffer after its (single) call
    new_centre = published.dino_centre_update(centre, teacher, momentum=0.9)
    torch.testing.assert_close(ref.center.reshape(-1), new_centre)


@pytest.mark.parametrize("iterations,epsilon", [(3, 0.05), (5, 0.1)])
def test_swav_matches_lightly(iterations, epsilon):
    high = [rand(8, 4, seed=40 + i, scale=0.3) for i in range(2)]
    low = [rand(8, 4, seed=50 + i, scale=0.3) for i in range(2)]
    ref = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=iterations, sinkhorn_epsilon=epsilon)
    assert_value_and_grad(
        lambda *x: published.swav_loss(x[:2], x[2:], temperature=0.1, iterations=iterations, epsilon=epsilon),
        lambda *x: ref(list(x[:2]), list(x[2:])),
        *high,
        *low,
    )


def test_sinkhorn_matches_lightly():
    from lightly.loss.swav_loss import sinkhorn

    scores = rand(9, 5, seed=60).detach()
    for it in (0, 1, 3):
        torch.testing.assert_close(obj.sinkhorn_knopp(scores, it, 0.05), sinkhorn(scores, it, 0.05))


# ---------------------------------------------------------------- without a lightly counterpart


def test_spectral_contrastive_loss_naive():
    z1, z2 = rand(6, 3, seed=70), rand(6, 3, seed=71)

    def naive(a, b):
        pos = sum((a[i] * b[i]).sum() for i in range(6)) / 6
        neg = [((a[i] * b[j]).sum()) ** 2 for i in range(6) for j in range(6) if i != j]
        return -2 * pos + sum(neg) / len(neg)

    assert_value_and_grad(published.spectral_contrastive_loss, naive, z1, z2)


def test_umae_uniformity_naive():
    z = rand(5, 4, seed=72)

    def naive(x):
        u = [x[i] / x[i].norm() for i in range(5)]
        return sum(((u[i] * u[j]).sum()) ** 2 for i in range(5) for j in range(5)) / 25

    assert_value_and_grad(published.umae_uniformity, naive, z)


@pytest.mark.parametrize("num_features", [None, 64])
def test_ssl_hsic_loss_naive(num_features):
    n_img, m, d, c, gamma = 4, 2, 3, 1.2, 3.0
    z = rand(n_img, m, d, seed=73)
    gen_seed = 74

    def naive(x):
        flat = [x[i, v] / x[i, v].norm() for i in range(n_img) for v in range(m)]
        n = len(flat)
        if num_features is None:
            kern = lambda a, b: c / torch.sqrt(((a - b) ** 2).sum() + c * c)
            k = [[kern(flat[a], flat[b]) for b in range(n)] for a in range(n)]
            k2 = k
        else:
            g = torch.Generator().manual_seed(gen_seed)
            om = [
                torch.randn(num_features, 1, generator=g, dtype=D64)
                * torch.randn(num_features, d, generator=g, dtype=D64)
                for _ in range(2)
            ]
            kk = lambda o: [[torch.cos(o @ (flat[a] - flat[b]) / c).mean() for b in range(n)] for a in range(n)]
            k, k2 = kk(om[0]), kk(om[1])
        pos = [k[i * m + v][i * m + w] for i in range(n_img) for v in range(m) for w in range(m) if v != w]
        mean_all = sum(sum(row) for row in k) / n**2
        hsic_zy = sum(pos) / len(pos) - mean_all
        centre = lambda mat: [
            [
                mat[a][b] - sum(mat[a]) / n - sum(mat[r][b] for r in range(n)) / n + sum(sum(row) for row in mat) / n**2
                for b in range(n)
            ]
            for a in range(n)
        ]
        c1, c2 = centre(k), centre(k2)
        hsic_zz = sum(c1[a][b] * c2[b][a] for a in range(n) for b in range(n)) / n**2
        return -hsic_zy + gamma * torch.sqrt(hsic_zz)

    got = lambda x: published.ssl_hsic_loss(
        x, gamma=gamma, c=c, num_features=num_features, generator=torch.Generator().manual_seed(gen_seed)
    )
    assert_value_and_grad(got, naive, z, rtol=1e-9, atol=1e-11)


def test_rff_hsic_approximates_exact_hsic():
    # clustered data so that HSIC is well away from zero
    g = torch.Generator().manual_seed(75)
    centres = torch.randn(6, 5, generator=g, dtype=D64)
    z = (centres.repeat_interleave(20, 0) + 0.3 * torch.randn(120, 5, generator=g, dtype=D64)).reshape(60, 2, 5)
    flat = z.reshape(120, 5)
    k = obj.imq_kernel(flat, flat, 1.0)
    exact_zz, exact_zy = obj.hsic_exact(k, k), obj.identity_hsic_exact(k, 2)
    f1, f2 = (obj.imq_frequencies(5, 4096, generator=g, dtype=D64) for _ in range(2))
    phi1, phi2 = obj.random_fourier_features(flat, f1), obj.random_fourier_features(flat, f2)
    assert obj.hsic_features(phi1, phi2).item() == pytest.approx(exact_zz.item(), rel=0.05)
    assert obj.identity_hsic_features(phi1.reshape(60, 2, -1)).item() == pytest.approx(exact_zy.item(), rel=0.05)
    assert published.ssl_hsic_loss(z, num_features=4096, generator=g, normalise=False).item() == pytest.approx(
        published.ssl_hsic_loss(z, num_features=None, normalise=False).item(), rel=0.05
    )


# ---------------------------------------------------------------- identities linking the forms


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_info_nce_is_reconstruction_plus_vmf_kde_entropy(temperature):
    """NT-Xent = −mean(s_ii⁺/τ) + mean_i log Σ_{k≠i} exp(s_ik/τ), and with κ = 1/τ this is
    −(vMF reconstruction + leave-one-out vMF-KDE entropy of all 2B embeddings) + log(2B − 1),
    with or without the normaliser log C_d(κ) (it cancels between the two terms)."""
    b, d, kappa = 8, 6, 1 / temperature
    z1, z2 = rand(b, d, seed=80), rand(b, d, seed=81)
    loss = published.nt_xent_loss(z1, z2, temperature)
    u = torch.cat([z1, z2]) / torch.cat([z1, z2]).norm(dim=1, keepdim=True)
    s = u @ u.T
    pos = torch.cat([torch.diagonal(s, b), torch.diagonal(s, -b)])
    denominators = torch.stack(
        [torch.logsumexp(torch.cat([s[i, :i], s[i, i + 1 :]]) / temperature, 0) for i in range(2 * b)]
    )
    torch.testing.assert_close(loss, -(pos / temperature).mean() + denominators.mean())

    u_all = torch.cat([z1, z2])
    for with_c in (False, True):
        rec = obj.vmf_reconstruction(z1, z2, kappa, include_normaliser=with_c)
        ent = obj.vmf_kde_entropy(u_all, kappa, exclude_self=True, include_normaliser=with_c)
        # log C_d(κ) enters the reconstruction with + and the entropy with −: it cancels
        torch.testing.assert_close(loss, -(rec + ent) + math.log(2 * b - 1))
        g_loss = torch.autograd.grad(loss, (z1, z2), retain_graph=True)
        g_er = torch.autograd.grad(-(rec + ent), (z1, z2))
        for a, c in zip(g_loss, g_er):
            torch.testing.assert_close(a, c)


def test_mmae_taylor_expansion_relates_to_umae():
    """−log det(I + (μ/d)ẐᵀẐ) ≈ −(μ/d) tr(ẐᵀẐ) + (μ²/2d²) tr((ẐᵀẐ)²), tr((ẐᵀẐ)²) = Σ_ij (ẑ_iᵀẑ_j)²."""
    n, d = 32, 16
    z = rand(n, d, seed=82).detach()
    zn = z / z.norm(dim=1, keepdim=True)
    gram = zn.T @ zn
    torch.testing.assert_close(torch.trace(gram @ gram), ((zn @ zn.T) ** 2).sum())
    torch.testing.assert_close(((zn @ zn.T) ** 2).sum(), n * n * published.umae_uniformity(z))

    def rel_gap(mu):
        exact = published.mmae_coding_rate_loss(z, mu)
        taylor = -(mu / d) * n + mu**2 / (2 * d * d) * n * n * published.umae_uniformity(z)
        return (abs(exact - taylor) / abs(exact)).item()

    small, large = rel_gap(0.01), rel_gap(3.0)
    assert small < 1e-4
    assert large > 0.05 and large > 1000 * small
