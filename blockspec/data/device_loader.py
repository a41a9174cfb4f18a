"""The batched path's loader: the data set held on the device as uint8 tensors, each batch
augmented there by `augment_batch` (the per-image path's DataLoader is in loader)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from blockspec.data.augment import mean_fill
from blockspec.data.batched import augment_batch
from blockspec.data.batched_plan import BatchedPlan
from blockspec.data.flip import AlternatingFlip
from blockspec.data.loader import epoch_sampler


class HeldImages:
    """What the run needs of a data set besides batches: its images (for plots), its size
    and, as the per-image path's data set has, its alternating flip if any."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, flips: AlternatingFlip | None) -> None:
        self.images, self.labels, self.flips = images, labels, flips

    def __len__(self) -> int:
        return len(self.images)


class DeviceLoader:
    """Batches straight from device-resident uint8 tensors, augmented as whole batches.

    Training order comes from `epoch_sampler` (so `shard` splits it over processes like the
    DataLoader path); augmentation draws from `generator`, which the run reseeds per epoch
    and per process. With `alternate_flip` the images are mirrored by `AlternatingFlip`
    first, `plan` holding the remaining transforms.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        device: torch.device,
        plan: BatchedPlan | None,
        mean: tuple[float, ...],
        shuffle: bool,
        seed: int,
        shard: tuple[int, int] = (0, 1),
        alternate_flip: bool = False,
    ) -> None:
        flips = AlternatingFlip(len(images), seed, device) if alternate_flip else None
        self.dataset = HeldImages(images, labels, flips)
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(device)
        self.batch_size, self.plan = batch_size, plan
        self.mean_fill = mean_fill(mean)
        self.generator = torch.Generator().manual_seed(seed)
        self.sampler = epoch_sampler(self.dataset, seed, shard) if shuffle else None
        # BatchNorm cannot train on one image
        self.drop_last = shuffle and self._images_per_epoch() % batch_size == 1

    def _images_per_epoch(self) -> int:
        """This process's share when shuffled (the sampler's length), else every image."""
        return len(self.sampler) if self.sampler is not None else len(self.labels)

    def __len__(self) -> int:
        count = self._images_per_epoch()
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.sampler is not None:
            order = torch.tensor([index for _, index in self.sampler], dtype=torch.long)
            if self.dataset.flips is not None:
                self.dataset.flips.epoch = self.sampler.epoch
        else:
            order = torch.arange(len(self.labels))
        order = order.to(self.images.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            rows = order[start : start + self.batch_size]
            images = self.images[rows]
            if self.dataset.flips is not None:
                mirrored = self.dataset.flips.mirrored(rows).view(-1, 1, 1, 1)
                images = torch.where(mirrored, images.flip(3), images)
            if self.plan is not None:
                images = augment_batch(images, self.plan, self.generator, self.mean_fill)
            yield images, self.labels[rows]
