"""Alternating flip (`data.alternate_flip`; Jordan 2024, "94% on CIFAR-10 in 3.29 seconds").

A random HorizontalFlip(p=0.5) shows some images the same way round for several epochs in
a row. Alternating flip draws each image's orientation at random once and then reverses it
every epoch, so every image is seen both ways in every pair of epochs. Any single epoch is
still a fair coin per image, so the per-epoch distribution matches the random flip's.

Both data paths take the flip out of the augmentation list (it is its first entry) and let
the data set apply it by image index and epoch, before the remaining transforms.
"""

from __future__ import annotations

from typing import Any

import torch

FLIP = "HorizontalFlip"


class AlternatingFlip:
    """Which training images are mirrored in the current epoch (`epoch` set by the run)."""

    def __init__(self, count: int, seed: int, device: torch.device | str = "cpu") -> None:
        draws = torch.rand(count, generator=torch.Generator().manual_seed(seed))
        self.first = (draws < 0.5).to(device)
        self.epoch = 1
        self.active = True  # off during the final epochs when data.augment_off names the flip

    def mirrored(self, rows: torch.Tensor | int) -> torch.Tensor:
        """Whether each of `rows` (image indices) is mirrored now: its first draw, reversed
        in even epochs; never while inactive."""
        return (self.first[rows] ^ (self.epoch % 2 == 0)) & self.active


def split_flip(entries: list[Any], alternate: bool) -> tuple[list[Any], bool]:
    """The entries the transform pipeline applies, and whether the data set flips itself:
    with `alternate`, a leading HorizontalFlip (the spec checks it leads) leaves the list."""
    if alternate and entries and next(iter(entries[0])) == FLIP:
        return entries[1:], True
    return entries, False
