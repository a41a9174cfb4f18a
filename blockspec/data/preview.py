"""A picture of what the augmentation does, to check it by eye before training on it."""

from __future__ import annotations

import copy
import io

import albumentations as A
import numpy as np
from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed

from blockspec.data.augment import seed_augment


def augment_grid_png(
    images: np.ndarray, augment: A.Compose, n: int = 8, seed: int = 0, versions: int = 6
) -> bytes:
    """A PNG, one row per image (n picked with `seed`): the original, then augmentations."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=min(n, len(images)), replace=False)
    augment = copy.deepcopy(augment)
    seed_augment(augment, seed)
    figure = Figure(figsize=(1.3 * (versions + 1), 1.3 * len(picks)))
    axes = figure.subplots(len(picks), versions + 1, squeeze=False)
    for row, index in zip(axes, picks):
        shown = [images[index]] + [augment(image=images[index])["image"] for _ in range(versions)]
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
