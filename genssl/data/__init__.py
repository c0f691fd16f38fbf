"""Datasets as uint8 tensors, ground-truth style factors, and batched multi-view augmentation."""

from genssl.data.augment import MultiViewAugment, build_augment
from genssl.data.datasets import DATASETS, dataset_from_config, dataset_options, load_dataset
from genssl.data.image_folder import load_image_folder
from genssl.data.streaming import BatchStream, LazyImages, distributed_order
from genssl.data.styled import STYLE_KINDS, STYLE_RANGES, apply_style, style_split
from genssl.data.types import ImageDataset, ImageSplit

__all__ = [
    "BatchStream",
    "DATASETS",
    "ImageDataset",
    "ImageSplit",
    "LazyImages",
    "MultiViewAugment",
    "STYLE_KINDS",
    "STYLE_RANGES",
    "apply_style",
    "build_augment",
    "dataset_from_config",
    "dataset_options",
    "distributed_order",
    "load_dataset",
    "load_image_folder",
    "style_split",
]
