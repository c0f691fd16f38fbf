"""Datasets as uint8 tensors, ground-truth style factors, and batched multi-view augmentation."""
from genssl.data.augment import MultiViewAugment, build_augment
from genssl.data.datasets import DATASETS, dataset_options, load_dataset
from genssl.data.types import ImageDataset, ImageSplit

__all__ = [
    "DATASETS",
    "ImageDataset",
    "ImageSplit",
    "MultiViewAugment",
    "build_augment",
    "dataset_options",
    "load_dataset",
]
