"""Small, learnable image data the tests write themselves: one colour per class plus noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (210, 210, 40)]


def write_colour_folder(root: Path, train_per_class: int = 24, test_per_class: int = 8, size: int = 16) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png, four classes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for index, colour in enumerate(COLOURS):
            folder = root / split / f"class{index}"
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(count):
                noise = rng.integers(-60, 60, size=(size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{number:04d}.png")
    return root


def tiny_spec_text(
    data_root: Path,
    epochs: int = 2,
    extra: str = "",
    scheduler: str = "{name: onecycle}",
    optimizer: str = "{name: sgd, lr: 0.05}",
) -> str:
    return f"""
name: tiny
input: {{channels: 3, size: 16}}
classes: 4
blocks:
  C1: [conv: {{out: 8}}, strided: {{out: 16}}]
  output: [gap: {{}}, fc: {{out: 4}}]
data:
  dataset: imagefolder
  root: {data_root}
  augment:
    - HorizontalFlip: {{p: 0.5}}
    - CoarseDropout: {{num_holes_range: [1, 1], hole_height_range: [4, 4], hole_width_range: [4, 4], fill: mean, p: 0.5}}
train:
  epochs: {epochs}
  batch_size: 16
  optimizer: {optimizer}
  scheduler: {scheduler}
{extra}
"""
