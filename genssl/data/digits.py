"""scikit-learn's bundled 8×8 handwritten digits (1,797 images): a dataset that is always there."""

from __future__ import annotations

import numpy as np
import torch

from genssl.data.types import ImageDataset, ImageSplit

# The split must not move with the run seed, or test accuracies of runs would not be comparable.
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits() -> ImageDataset:
    """1×8×8 digits, grey levels 0..16 scaled to 0..255; a fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images_t = torch.from_numpy(images).unsqueeze(1).contiguous()
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(labels)))
    num_test = int(round(TEST_FRACTION * len(labels)))
    everything = ImageSplit(images_t, labels)
    return ImageDataset(
        "digits",
        everything.select(order[num_test:]),
        everything.select(order[:num_test]),
        10,
        [str(d) for d in range(10)],
    )
