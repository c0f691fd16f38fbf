"""Guide of DeepCluster: point embeddings scored against k-means centroids, and hard cluster labels.

DeepCluster is hard EM on a mixture over the content latent y: the E-step is a k-means run at the
start of every epoch on the current projections of the (un-augmented) training images; the M-step
trains the encoder so every view predicts its image's cluster. In Pyro terms the guide proposes

    q(scores_ij | x_ij) = δ(ẑ_ij Ĉᵀ)     (cosine scores of the projection against frozen centroids Ĉ)
    q(y_i)              = δ(k-means label of image i)

so the site "y" is a per-image local latent whose variational parameter is the epoch's assignment,
looked up by dataset index (as Pyro's per-datapoint guides index theirs by the subsample).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from genssl.data.augment import to_unit_float
from genssl.data.streaming import BatchStream
from genssl.errors import GensslError
from genssl.guides.base import EncoderGuide
from genssl.guides.delta_encoder import DeltaEncoderGuide, output_width
from genssl.objectives import spherical_kmeans


class CentroidScores(nn.Module):
    """s = ẑ Ĉᵀ against unit centroids Ĉ held as a buffer: set by k-means, never by the optimiser."""

    def __init__(self, dim: int, num_clusters: int) -> None:
        super().__init__()
        self.register_buffer("centroids", F.normalize(torch.randn(num_clusters, dim), dim=1))
        self.out_features = num_clusters

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=-1) @ self.centroids.T


class ClusterAssignmentGuide(EncoderGuide):
    """Online encoder + projector + frozen centroids; per-image cluster labels set by k-means each epoch."""

    uses_index = True
    config_keys = frozenset({"clusters"})

    def __init__(
        self,
        encoder: nn.Module,
        projector: nn.Module,
        num_clusters: int,
        kmeans_iterations: int = 10,
        batch_size: int = 1024,
    ) -> None:
        super().__init__()
        self.online = DeltaEncoderGuide(
            encoder, nn.Sequential(projector, CentroidScores(output_width(projector), num_clusters))
        )
        self.sites = {"scores": num_clusters}
        self.content_classes = num_clusters
        self.num_clusters, self.kmeans_iterations, self.batch_size = num_clusters, kmeans_iterations, batch_size
        # Set by k-means at every epoch start; checkpointed so a run stopped mid-epoch resumes with them.
        # Empty until the first epoch: its size N is the data's, unknown when the method is built.
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        # The labels' size is the data's: take the checkpoint's, whatever this module was built with.
        saved = state_dict.get(prefix + "labels")
        if saved is None:  # a checkpoint from before the labels were saved: k-means sets them at the epoch start
            state_dict[prefix + "labels"] = self.labels
        else:
            self.labels = torch.zeros_like(saved, device=self.labels.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_config(cls, cfg: DictConfig, encoder: nn.Module, projector: nn.Module) -> ClusterAssignmentGuide:
        """``guide.kind=clusters``: ``guide.clusters.num`` clusters, ``guide.clusters.iterations`` Lloyd rounds."""
        return cls(encoder, projector, cfg.clusters.num, cfg.clusters.iterations)

    def represent(self, images: torch.Tensor) -> torch.Tensor:
        return self.online.represent(images)

    @torch.no_grad()
    def before_epoch(
        self, images: torch.Tensor, generator: torch.Generator | None = None, progress: bool = False
    ) -> None:
        """E-step: k-means on the projections of uint8 ``images`` [N, C, H, W]; centroids and labels updated.

        Projections are computed as training steps see them (BatchNorm on batch statistics): at
        initialisation the running statistics map every image to nearly one direction, which would
        leave k-means nothing to separate. The running statistics are restored afterwards.
        """
        saved = {name: buffer.clone() for name, buffer in self.online.named_buffers()}
        was_training = self.training
        self.train()
        projector = self.online.projector[0]
        chunks = []
        stream = BatchStream.in_order(images, self.batch_size)  # image files decode in workers (image_folder)
        for _, batch in tqdm(stream, desc="k-means features", unit="batch", leave=False, disable=not progress):
            chunks.append(projector(self.online.encoder(to_unit_float(batch))).float())
        stream.close()
        for name, buffer in self.online.named_buffers():
            buffer.copy_(saved[name])
        self.train(was_training)
        centroids, labels = spherical_kmeans(torch.cat(chunks), self.num_clusters, self.kmeans_iterations, generator)
        self.online.projector[1].centroids.copy_(centroids)
        self.labels = labels

    def assignments(self, scores: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """y for a batch: the epoch's labels of images ``index``, else each image's nearest centroid."""
        if index is None:
            return scores[:, 0].argmax(-1)  # images outside the training set (checks, new data)
        if self.labels.numel() == 0:
            raise GensslError(
                "DeepCluster's cluster labels are assigned by before_epoch(images) at the start "
                "of each epoch; call it before training steps that pass dataset indices."
            )
        return self.labels[index]

    def propose(self, views: torch.Tensor, index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The sites "scores" [B, J, K] against the frozen centroids and "y" [B], each image's cluster."""
        scores = self.online.embed(views)
        return {"scores": scores, "y": self.assignments(scores.detach(), index)}

    def forward(self, views: torch.Tensor, index: torch.Tensor | None = None) -> None:
        scores = self.online.embed(views)
        with pyro.plate("images", views.shape[0]):
            pyro.sample("scores", dist.Delta(scores, event_dim=2))
            pyro.sample("y", dist.Delta(self.assignments(scores.detach(), index)))
