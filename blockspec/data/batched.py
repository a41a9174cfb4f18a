"""Augmentation of whole batches as tensor operations, on whatever device holds the data.

Each batch is flipped, warped (one affine grid sample for shift/scale/rotate) and cut out in
a handful of kernels instead of one OpenCV call per image, as `BatchedPlan` (see
batched_plan, which reads it from the checked transforms) says. Each supported
albumentations transform is matched in distribution:

* HorizontalFlip(p): mirror with probability p;
* Affine(scale, translate_percent or translate_px, rotate, keep_ratio, p, border_mode, fill)
  and its special case ShiftScaleRotate: scale U(x range) and U(y range) drawn apart unless
  keep_ratio (as albumentations does for both), then rotation U(rotate range) degrees about
  the centre, then translation U(percent range) of the width/height truncated to whole
  pixels or a whole number of pixels from the px range; bilinear, constant border (`fill`,
  saturated to 0–255 as OpenCV does) or either of OpenCV's reflections;
* CoarseDropout(num_holes_range, hole_height_range, hole_width_range, fill, p): that many
  holes of integer sizes drawn from the ranges (capped at the image's size, as
  albumentations caps them), placed wholly inside the image.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from blockspec.data.batched_plan import Affine, BatchedPlan, Cutout, Range
from blockspec.data.loader import channel_constant


def _fill_values(fill: Any, channels: int) -> tuple[float, ...]:
    """One value per channel, as OpenCV reads a border colour: a scalar for every channel, a
    list's first values in order (0 for channels it lacks), saturated into uint8's 0–255.
    (CoarseDropout's stricter rules are albumentations': the run's dry run applies them.)"""
    values = list(fill) if isinstance(fill, (tuple, list)) else [fill] * channels
    values = (values + [0] * channels)[:channels]
    return tuple(min(max(float(v), 0.0), 255.0) for v in values)


def augment_batch(
    x: torch.Tensor, plan: BatchedPlan, generator: torch.Generator, mean_fill: tuple[float, ...]
) -> torch.Tensor:
    """uint8 or float [B, C, H, W] in 0–255 → augmented float in 0–255, same device.

    Random numbers come from `generator` (on the CPU, so runs repeat exactly on any device);
    they travel to the device without waiting for it (`to_device`), and the fill colours are
    cached there, so the host never stalls a GPU's queue.
    """
    batch = x.shape[0]
    device = x.device
    x = x.float()

    def uniform(low: float, high: float) -> torch.Tensor:
        return to_device(torch.rand(batch, generator=generator) * (high - low) + low, device)

    def chance(p: float) -> torch.Tensor:
        return to_device(torch.rand(batch, generator=generator) < p, device)

    if plan.flip_p:
        x = torch.where(chance(plan.flip_p).view(-1, 1, 1, 1), x.flip(3), x)
    if plan.affine is not None:
        x = _warp(x, plan.affine, uniform, chance, mean_fill)
    if plan.cutout is not None:
        x = _cut(x, plan.cutout, generator, chance, mean_fill)
    return x


def to_device(draws: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host-drawn numbers on `device`, the host not waiting for it. To a GPU they go through
    pinned memory: from pageable memory the driver may first wait for the stream's queue,
    and torch's pinned-memory cache keeps each buffer until its copy has run. Elsewhere the
    copy is waited for: an asynchronous copy to Apple's MPS from pageable memory freed at once
    can read it after it is reused (pytorch/pytorch#189690)."""
    if device.type != "cuda":
        return draws.to(device)
    return draws.pin_memory().to(device, non_blocking=True)


def _warp(
    x: torch.Tensor, affine: Affine, uniform: Any, chance: Any, mean_fill: tuple[float, ...]
) -> torch.Tensor:
    """One grid sample: output pixel → input pixel through the inverse of shift·rotate·scale."""
    batch, channels, height, width = x.shape
    angle = -uniform(*affine.rotate) * (math.pi / 180)  # OpenCV turns counter-clockwise
    scale_x = uniform(*affine.scale[0])
    shift_x, shift_y = (_shift(uniform, affine, axis, size) for axis, size in ((0, width), (1, height)))
    apply = chance(affine.p)
    scale_y = scale_x if affine.keep_ratio else _draw(uniform, affine.scale[1], batch, x.device)
    # inverse of rotate·scale, in grid units (which span 2 across each side of the image)
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = cos / scale_x, sin / scale_x * (height / width)
    c, d = -sin / scale_y * (width / height), cos / scale_y
    theta = torch.stack(
        [
            torch.stack([a, b, -(a * shift_x + b * shift_y)], 1),
            torch.stack([c, d, -(c * shift_x + d * shift_y)], 1),
        ],
        1,
    )
    identity = torch.eye(2, 3, device=x.device).expand(batch, 2, 3)
    theta = torch.where(apply.view(-1, 1, 1), theta, identity)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if affine.border == "reflect101":
        # the same pixel positions in align_corners=True units, whose reflection is about the
        # edge pixels' centres: pixel i sits at (2i + 1)/n - 1 in the first, 2i/(n - 1) - 1 in the second
        sizes = torch.tensor([width, height], dtype=grid.dtype, device=grid.device)
        grid = ((grid + 1) * sizes - 1) / (sizes - 1).clamp(min=1) - 1
    padding = "zeros" if affine.border == "constant" else "reflection"
    warped = F.grid_sample(
        x, grid, mode="bilinear", padding_mode=padding, align_corners=affine.border == "reflect101"
    )
    fill = _fill_values(mean_fill if affine.fill == "mean" else affine.fill, channels)
    if affine.border == "constant" and any(fill):
        inside = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="bilinear", align_corners=False)
        warped = warped + channel_constant(fill, x.device) * (1 - inside)
    return warped


def _draw(uniform: Any, bounds: Range, batch: int, device: torch.device) -> torch.Tensor:
    """U(bounds) per image; a fixed value takes no random draw, so adding a fixed axis leaves
    the random stream (and so a seeded run) as it was."""
    if bounds[0] == bounds[1]:
        return torch.full((batch,), bounds[0], device=device)
    return uniform(*bounds)


def _shift(uniform: Any, affine: Affine, axis: int, size: int) -> torch.Tensor:
    """One axis' translation in grid units: whole pixels, as albumentations truncates them."""
    low, high = affine.shift[axis]
    pixels = uniform(low, high + 1).floor() if affine.shift_in_pixels else torch.trunc(uniform(low, high) * size)
    return pixels * (2 / size)


def _cut(
    x: torch.Tensor, cutout: Cutout, generator: torch.Generator, chance: Any, mean_fill: tuple[float, ...]
) -> torch.Tensor:
    batch, channels, height, width = x.shape
    fill = mean_fill if cutout.fill == "mean" else cutout.fill
    fill_value = channel_constant(_fill_values(fill, channels), x.device)
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    apply = chance(cutout.p)
    counts = torch.randint(cutout.holes[0], cutout.holes[1] + 1, (batch,), generator=generator)
    counts = to_device(counts, x.device)
    # albumentations caps the largest size at the image's (the smallest stays as written:
    # the run's dry run has refused one larger than the image)
    tallest, widest = min(cutout.height[1], height), min(cutout.width[1], width)
    for hole in range(cutout.holes[1]):
        hole_h = torch.randint(cutout.height[0], tallest + 1, (batch,), generator=generator)
        hole_w = torch.randint(cutout.width[0], widest + 1, (batch,), generator=generator)
        top = (torch.rand(batch, generator=generator) * (height - hole_h + 1)).floor().long()
        left = (torch.rand(batch, generator=generator) * (width - hole_w + 1)).floor().long()
        top, left, hole_h, hole_w = (
            to_device(value, x.device).view(-1, 1, 1) for value in (top, left, hole_h, hole_w)
        )
        inside = (rows >= top) & (rows < top + hole_h) & (cols >= left) & (cols < left + hole_w)
        active = (apply & (counts > hole)).view(-1, 1, 1)
        x = torch.where((inside & active).unsqueeze(1), fill_value, x)
    return x
