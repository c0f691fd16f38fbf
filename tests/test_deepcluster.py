"""DeepCluster and ER-DeepCluster: spherical k-means, the hard-EM guide, and −ELBO = published loss."""

from __future__ import annotations

import json
import math

import pyro
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, negative_elbo, run_cli

from genssl.errors import GensslError, ShapeError
from genssl.guides import ClusterAssignmentGuide
from genssl.inference.pyro_ssl import PyroSSL
from genssl.models import ViewModel
from genssl.models import clustering_terms as clustering
from genssl.nets import build_encoder
from genssl.nets.heads import projection_head
from genssl.objectives import prototype_entropy, spherical_kmeans
from genssl.reference import deepcluster_loss

B, K = 16, 6


def blobs(per_cluster: int = 50, k: int = 4, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight clusters around k orthogonal directions, with varied norms (k-means must ignore norms)."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.arange(k).repeat_interleave(per_cluster)
    x = torch.eye(d)[truth] + 0.05 * torch.randn(len(truth), d, generator=g)
    return x * (0.5 + 3 * torch.rand(len(truth), 1, generator=g)), truth


def test_kmeans_recovers_separated_directions():
    x, truth = blobs()
    centroids, labels = spherical_kmeans(x, 4, generator=torch.Generator().manual_seed(1))
    # Each found cluster is exactly one true cluster (labels agree up to a relabelling).
    pairs = set(zip(labels.tolist(), truth.tolist()))
    assert len(pairs) == 4 and len({a for a, _ in pairs}) == 4
    torch.testing.assert_close(centroids.norm(dim=1), torch.ones(4))
    for c in range(4):
        assert F.cosine_similarity(centroids[c], x[labels == c].mean(0), dim=0) > 0.99


def test_kmeans_is_seeded_and_keeps_every_cluster():
    x = torch.randn(60, 5)
    run = [spherical_kmeans(x, 20, 5, torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(run[0][0], run[1][0])
    assert torch.equal(run[0][1], run[1][1])
    # Duplicated points force empty clusters in Lloyd's step; they are re-seeded, not dropped.
    dup = torch.cat([torch.randn(3, 5)] * 10)
    _, labels = spherical_kmeans(torch.cat([dup, torch.randn(10, 5)]), 8, 5, torch.Generator().manual_seed(0))
    assert labels.unique().numel() >= 8 - 1  # at most one cluster can tie onto a duplicated point


def test_kmeans_rejects_more_clusters_than_points():
    with pytest.raises(ShapeError, match="cannot make 10 clusters of 4 points"):
        spherical_kmeans(torch.randn(4, 3), 10)


def check(ours, reference, wrt):
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        torch.autograd.grad(ours, wrt)[0], torch.autograd.grad(reference, wrt)[0], rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_deepcluster_is_deepcluster_loss(temperature):
    """−ELBO = L_DeepCluster + B log K: the uniform prior on y adds −log K per image."""
    scores, y = torch.randn(B, 2, K, requires_grad=True), torch.randint(K, (B,))
    ours = negative_elbo(clustering.deepcluster_terms(temperature), {"scores": scores}, y, content_classes=K)
    reference = deepcluster_loss([scores[:, 0], scores[:, 1]], y, temperature=temperature) + B * math.log(K)
    check(ours, reference, scores)


def test_deepcluster_er_adds_the_batch_entropy():
    """−ELBO = L_DeepCluster − ½Σ_j H(mean_b softmax(s_j/τ)) + B log K."""
    scores, y = torch.randn(B, 2, K, requires_grad=True), torch.randint(K, (B,))
    ours = negative_elbo(clustering.deepcluster_er_terms(0.1), {"scores": scores}, y, content_classes=K)
    entropy = 0.5 * sum(prototype_entropy(F.softmax(scores[:, j] / 0.1, 1)) for j in range(2))
    reference = deepcluster_loss([scores[:, 0], scores[:, 1]], y, temperature=0.1) - entropy + B * math.log(K)
    check(ours, reference, scores)


def test_deepcluster_loss_is_cross_entropy_by_hand():
    scores, y = torch.randn(B, K), torch.randint(K, (B,))
    by_hand = -torch.stack([(scores[b] / 0.1).log_softmax(0)[y[b]] for b in range(B)]).mean()
    torch.testing.assert_close(deepcluster_loss([scores], y, temperature=0.1), by_hand)


def deepcluster_method(er: bool = False) -> PyroSSL:
    encoder = build_encoder("mlp", 1, 8, 16)
    guide = ClusterAssignmentGuide(encoder, projection_head(encoder.out_features, 16, 8), K, kmeans_iterations=3)
    terms = clustering.deepcluster_er_terms() if er else clustering.deepcluster_terms()
    return PyroSSL(ViewModel(terms, {"scores": K}, content_classes=K), guide, elbo="trace")


def test_before_epoch_sets_centroids_and_labels_and_steps_use_them():
    torch.manual_seed(0)
    method = deepcluster_method()
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    views = torch.rand(4, 2, 1, 8, 8)
    with pytest.raises(GensslError, match="before_epoch"):
        method(views, torch.arange(4))
    method.train()
    bn = method.guide.online.projector[0][1]
    running = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    method.before_epoch(images, torch.Generator().manual_seed(0))
    assert method.training, "the E-step restores training mode"
    guide = method.guide
    assert guide.labels.shape == (40,) and guide.labels.max() < K
    prototypes = guide.online.projector[1].centroids
    assert all(p is not prototypes for p in method.parameters()), "centroids are set by k-means, not trained"
    # The centroids are the k-means solution on the training-mode projections of the images, and the
    # E-step leaves BatchNorm's running statistics where they were.
    assert torch.equal(bn.running_mean, running[0]) and torch.equal(bn.num_batches_tracked, running[1])
    with torch.no_grad():
        z = guide.online.projector[0](guide.online.encoder(images.float() / 255))
    centroids, labels = spherical_kmeans(z, K, 3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(prototypes, centroids)
    assert torch.equal(guide.labels, labels)
    # A step on images 5..8 predicts exactly their stored labels.
    index = torch.arange(5, 9)
    trace = pyro.poutine.trace(method.guide).get_trace(views, index)
    assert torch.equal(trace.nodes["y"]["value"], labels[index])
    assert torch.isfinite(method(views, index))


def test_without_index_each_image_takes_its_nearest_centroid():
    method = deepcluster_method(er=True)
    views = torch.rand(4, 2, 1, 8, 8)
    trace = pyro.poutine.trace(method.guide).get_trace(views)
    scores = trace.nodes["scores"]["value"]
    assert torch.equal(trace.nodes["y"]["value"], scores[:, 0].argmax(-1))
    assert torch.isfinite(method(views))


@pytest.mark.parametrize("name", ["deepcluster", "deepcluster_er"])
def test_deepcluster_trains_from_the_cli(tmp_path, name):
    result = run_cli(
        "genssl-train",
        f"method={name}",
        "data=digits",
        "trainer.max_epochs=2",
        "trainer.batch_size=64",
        "data.train_subset=512",
        "data.test_subset=256",
        "guide.clusters.num=20",
        f"hydra.run.dir={tmp_path}",
        *TINY,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train"]["epochs"] == 2 and 0.0 < metrics["content"]["linear"] <= 1.0
    epochs = [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "epoch"
    ]
    assert all(math.isfinite(e["loss"]) for e in epochs)
