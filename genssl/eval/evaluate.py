"""The end-of-training evaluation: frozen features, content probes, ``metrics.json``."""
from __future__ import annotations

import time
from typing import Any

import torch
from omegaconf import DictConfig

from genssl.data import ImageDataset
from genssl.eval.features import extract_features
from genssl.eval.probes import knn_probe, linear_probe, rank_me
from genssl.inference.pyro_ssl import PyroSSL


def evaluate(method: PyroSSL, dataset: ImageDataset, eval_cfg: DictConfig, device: torch.device,
             seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Content accuracies of the frozen representation: probes fitted (and tuned) on train, scored on test."""
    method.eval()
    start = time.perf_counter()
    train_x = extract_features(method.represent, dataset.train.images, device, eval_cfg.batch_size,
                               "train features", progress)
    test_x = extract_features(method.represent, dataset.test.images, device, eval_cfg.batch_size,
                              "test features", progress)
    train_y, test_y = dataset.train.labels.to(device), dataset.test.labels.to(device)
    linear = linear_probe(train_x, train_y, test_x, test_y, dataset.num_classes,
                          list(eval_cfg.linear.weight_decays), eval_cfg.linear.val_fraction,
                          eval_cfg.linear.max_iter, seed)
    content = {
        "linear": linear["accuracy"],
        "knn": knn_probe(train_x, train_y, test_x, test_y, dataset.num_classes, eval_cfg.knn.k),
    }
    return {"content": content, "rank_me": rank_me(test_x),
            "probes": {"linear_weight_decay": linear["weight_decay"], "linear_val_accuracy": linear["val_accuracy"],
                       "knn_k": eval_cfg.knn.k},
            "eval_seconds": time.perf_counter() - start}
