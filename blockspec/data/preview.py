"""A picture of what the augmentation does, to check it by eye before training on it: drawn
by the path training takes (batched tensor operations or per-image albumentations)."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import albumentations as A
import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed

from blockspec.data.augment import seed_augment
from blockspec.data.batched import augment_batch
from blockspec.data.batched_plan import BatchedPlan

# an image (H, W, C uint8) → that many augmented versions of it
Versions = Callable[[np.ndarray, int], list[np.ndarray]]


def albumentations_versions(augment: A.Compose, seed: int) -> Versions:
    """Versions drawn image by image by the Compose, from one stream seeded by `seed`."""
    augment = copy.deepcopy(augment)
    seed_augment(augment, seed)
    return lambda image, count: [augment(image=image)["image"] for _ in range(count)]


def batched_versions(plan: BatchedPlan, fill: tuple[int, ...], seed: int) -> Versions:
    """Versions drawn as the batched path draws a batch (the image repeated), rounded to uint8;
    `fill`: the colour `fill: mean` stands for."""
    generator = torch.Generator().manual_seed(seed)

    def versions(image: np.ndarray, count: int) -> list[np.ndarray]:
        batch = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).repeat(count, 1, 1, 1)
        augmented = augment_batch(batch, plan, generator, fill).round().clamp(0, 255).to(torch.uint8)
        return list(augmented.permute(0, 2, 3, 1).numpy())

    return versions


def augment_grid_png(images: np.ndarray, versions_of: Versions, n: int = 8, seed: int = 0, versions: int = 6) -> bytes:
    """A PNG, one row per image (n picked with `seed`): the original, then augmentations."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=min(n, len(images)), replace=False)
    figure = Figure(figsize=(1.3 * (versions + 1), 1.3 * len(picks)))
    axes = figure.subplots(len(picks), versions + 1, squeeze=False)
    for row, index in zip(axes, picks):
        shown = [images[index], *versions_of(images[index], versions)]
        for ax, image in zip(row, shown):
            gray = image.shape[2] == 1
            ax.imshow(
                image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255
            )
            ax.set_axis_off()
    for column, ax in enumerate(axes[0]):
        ax.set_title("original" if column == 0 else f"augmented {column}", fontsize=8)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    return png.getvalue()
