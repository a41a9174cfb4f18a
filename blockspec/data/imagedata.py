"""The one in-memory form every data set is loaded into.

Whole data sets of small images fit in memory as uint8, so the loaders return plain arrays
and the training side never needs to know which file format they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from blockspec.errors import fail

_SUBSET_SEED = 0  # limits pick the same images whatever the run's seed, so runs stay comparable


@dataclass(frozen=True)
class ImageData:
    """Train and test images as uint8 NHWC arrays with int64 labels and train-set statistics."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # why images read in colour may have been meant as gray (a few colour files among gray
    # ones, or gray images saved in colour): said where a spec expects one channel
    colour_note: str = ""

    def limited(self, train: int | None = None, test: int | None = None) -> ImageData:
        """The data set cut to `train` and `test` images (None: all), as `--limit-train` and
        `--limit-test` ask: N images chosen by a fixed permutation, not simply the first N,
        which in a class-sorted image folder would be a single class. Classes and statistics
        stay the full set's, so a limited run normalises as the full one does."""
        train_rows = _subset_rows(len(self.train_labels), train, "--limit-train")
        test_rows = _subset_rows(len(self.test_labels), test, "--limit-test")
        return replace(self, train_images=self.train_images[train_rows], train_labels=self.train_labels[train_rows],
                       test_images=self.test_images[test_rows], test_labels=self.test_labels[test_rows])


def _subset_rows(count: int, limit: int | None, name: str) -> slice | np.ndarray:
    """All rows (a slice: no copy) or `limit` of them in order; `name` is blamed for a limit below 1."""
    if limit is not None and limit < 1:
        raise fail(name, "must be a positive number of images", limit)
    if limit is None or limit >= count:
        return slice(None)
    return np.sort(np.random.default_rng(_SUBSET_SEED).permutation(count)[:limit])


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std in [0, 1] units of uint8 NHWC images.

    A 256-bin histogram per channel gives exact sums without a float copy of the whole set
    (50k CIFAR images would need 1.5 GB as float64), counted a slice of images at a time:
    `np.bincount` widens its input to int64, eight times the pixels it is given.
    """
    levels = np.arange(256, dtype=np.float64)
    means, stds = [], []
    step = max(1, _STATS_PIXELS // max(1, images.shape[1] * images.shape[2]))  # images a slice
    for channel in range(images.shape[3]):
        counts = np.zeros(256, dtype=np.int64)
        for start in range(0, len(images), step):
            counts += np.bincount(images[start : start + step, ..., channel].ravel(), minlength=256)
        total = counts.sum()
        mean = (counts @ levels) / total
        var = (counts @ (levels - mean) ** 2) / total
        means.append(float(mean / 255.0))
        stds.append(float(np.sqrt(var) / 255.0))
    return tuple(means), tuple(stds)


_STATS_PIXELS = 2**24  # a slice's pixels: 128 MiB once widened
