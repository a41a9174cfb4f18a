"""Data sets, augmentation and batching for blockspec."""

import os

# albumentations asks PyPI for a newer release on import (seconds offline); opt out unless the
# user chose otherwise. Set here so it precedes every import of albumentations in this package.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402

# OpenCV's thread pool does not survive fork(): once the parent has run any cv2 operation
# with threads (the augmentation dry run does), DataLoader workers deadlock in their first
# cv2 call. Single-threaded OpenCV in every process avoids that; images here are tiny.
cv2.setNumThreads(1)

from blockspec.data.augment import (  # noqa: E402
    TRANSFORMS,
    AugmentPlan,
    build_augment,
    read_augment,
    seed_augment,
)
from blockspec.data.datasets import DATASETS, load_dataset  # noqa: E402
from blockspec.data.imagedata import ImageData  # noqa: E402
from blockspec.data.loader import AugmentedDataset, make_loaders, normalize_batch  # noqa: E402

__all__ = [
    "DATASETS",
    "TRANSFORMS",
    "AugmentPlan",
    "AugmentedDataset",
    "ImageData",
    "build_augment",
    "load_dataset",
    "make_loaders",
    "normalize_batch",
    "read_augment",
    "seed_augment",
]

