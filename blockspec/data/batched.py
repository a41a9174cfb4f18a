"""Augmentation of whole batches as tensor operations, on whatever device holds the data.

The data set lives on the device as uint8; each batch is flipped, warped (one affine grid
sample for shift/scale/rotate) and cut out in a handful of kernels instead of one OpenCV
call per image. Each supported albumentations transform is matched in distribution:

* HorizontalFlip(p): mirror with probability p;
* Affine(scale, translate_percent or translate_px, rotate, keep_ratio, p, border_mode, fill)
  and its special case ShiftScaleRotate: scale U(x range) and U(y range) drawn apart unless
  keep_ratio (as albumentations does for both), then rotation U(rotate range) degrees about
  the centre, then translation U(percent range) of the width/height truncated to whole
  pixels or a whole number of pixels from the px range; bilinear, constant border (`fill`,
  saturated to 0–255 as OpenCV does) or either of OpenCV's reflections. Ranges are read
  from the albumentations transform itself, so every spelling of the arguments it accepts
  means the same here;
* CoarseDropout(num_holes_range, hole_height_range, hole_width_range, fill, p): that many
  holes of integer sizes drawn from the ranges (capped at the image's size, as
  albumentations caps them), placed wholly inside the image.

A flip is applied first; a spec that flips after warping is mirrored only when the warp's
distribution is itself mirror-symmetric (rotation and x shift ranges centred on 0), since
then the two orders draw the same images.

`plan_batched` returns None when any transform or argument has no equivalent here, and the
caller falls back to per-image albumentations; `batched_refusal` names the entry and argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from blockspec.data.augment import AugmentPlan, mean_fill
from blockspec.data.flip import AlternatingFlip
from blockspec.data.loader import channel_constant, epoch_sampler
from blockspec.errors import fail

_INTER_LINEAR = 1  # OpenCV's flag value
# OpenCV border flags → how the grid sample reproduces them: BORDER_REFLECT (fedcba|abcd)
# mirrors about the image's edge, BORDER_REFLECT_101 (edcb|abcd) about its edge pixels' centres
_BORDERS = {0: "constant", 2: "reflect", 4: "reflect101"}
_AFFINE_NAMES = ("Affine", "ShiftScaleRotate")
# fill_mask too: it fills holes in masks, which blockspec never passes
_CUTOUT_ARGS = {"num_holes_range", "hole_height_range", "hole_width_range", "fill", "fill_mask", "p"}


Range = tuple[float, float]


@dataclass(frozen=True)
class Affine:
    p: float
    shift: tuple[Range, Range]  # (x range, y range): fractions of the size, or pixels
    shift_in_pixels: bool
    scale: tuple[Range, Range]  # (x range, y range)
    keep_ratio: bool
    rotate: Range  # degrees
    border: str  # a value of _BORDERS
    fill: tuple[float, ...] | float | str


@dataclass(frozen=True)
class Cutout:
    p: float
    holes: tuple[int, int]
    height: tuple[int, int]
    width: tuple[int, int]
    fill: tuple[float, ...] | float | str


@dataclass(frozen=True)
class BatchedPlan:
    flip_p: float = 0.0
    affine: Affine | None = None
    cutout: Cutout | None = None


def _int_range(value: Any) -> tuple[int, int] | None:
    """A pixel range as whole numbers (albumentations reads a range whose upper end is 1 or
    more in pixels, and refuses fractional pixels before this is asked); None for fractions
    of the image size, which are not mirrored here."""
    low, high = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if float(high) < 1:
        return None
    return (int(low), int(high))


def plan_batched(augment: AugmentPlan) -> BatchedPlan | None:
    """The batched equivalent of checked augmentation steps, or None if there is none
    (`batched_refusal` says why)."""
    plan = _plan(augment)
    return plan if isinstance(plan, BatchedPlan) else None


def batched_refusal(augment: AugmentPlan) -> str | None:
    """Why the steps have no batched equivalent, naming the entry and argument; None if they have one."""
    plan = _plan(augment)
    return plan if isinstance(plan, str) else None


def plan_for_loader(augment: AugmentPlan, loader: str) -> BatchedPlan | None:
    """The batched plan `--loader` takes: the steps' own where they have one (`auto`), none
    for `albumentations`; `gpu` on steps without one is refused, naming what keeps them off."""
    plan = plan_batched(augment)
    if loader == "gpu" and plan is None:
        raise fail(
            "--loader",
            f"the spec's augmentation has no batched equivalent: {batched_refusal(augment)}; use --loader albumentations",
            "gpu",
        )
    return None if loader == "albumentations" else plan


def unbatched_note(augment: AugmentPlan) -> str | None:
    """What training (under `--loader auto`) and `check` say when the augmentation has no
    batched equivalent; None when it has one."""
    refusal = batched_refusal(augment)
    return None if refusal is None else f"augmentation runs per image in albumentations, not batched, since {refusal}"


def _plan(augment: AugmentPlan) -> BatchedPlan | str:
    path = "data.augment"
    flip_p, affine, cutout = 0.0, None, None
    seen: dict[str, int] = {}  # the first entry of each kind
    for index, (name, args), transform in zip(augment.positions, augment.steps, augment.built, strict=True):
        where = f"{path}[{index}].{name}"
        kind = "warp" if name in _AFFINE_NAMES else name
        if kind in seen:
            return f"{where}: a second {'Affine or ShiftScaleRotate' if kind == 'warp' else name} (the batched path applies one)"
        seen[kind] = index
        if name == "HorizontalFlip":
            flip_p = float(args.get("p", 0.5))
        elif kind == "warp":
            affine = _affine_plan(transform, args, where)
            if isinstance(affine, str):
                return affine
        elif name == "CoarseDropout":
            cutout = _cutout_plan(args, where)
            if isinstance(cutout, str):
                return cutout
        else:
            return f"{where}: {name} has no batched equivalent ({_SUPPORTED})"
    if affine is not None:
        warp = f"the warp at {path}[{seen['warp']}]"
        if cutout is not None and seen["warp"] > seen["CoarseDropout"]:
            return f"{path}[{seen['CoarseDropout']}].CoarseDropout comes before {warp} (a warped hole is no longer a hole)"
        if flip_p and seen["warp"] < seen["HorizontalFlip"] and not _mirror_symmetric(affine):
            return (f"{path}[{seen['HorizontalFlip']}].HorizontalFlip comes after {warp}, whose rotation or x shift "
                    "range is not centred on 0 (flipping after it draws other images than flipping before)")
    return BatchedPlan(flip_p, affine, cutout)


_SUPPORTED = "batched: HorizontalFlip, Affine or ShiftScaleRotate, CoarseDropout"


def _cutout_plan(args: dict[str, Any], where: str) -> Cutout | str:
    """The holes albumentations' CoarseDropout would cut, if mirrored here."""
    extra = sorted(set(args) - _CUTOUT_ARGS)
    if extra:
        return f"{where}.{extra[0]}: not mirrored by the batched path"
    defaults = {"num_holes_range": (1, 2), "hole_height_range": (0.1, 0.2), "hole_width_range": (0.1, 0.2)}
    ranges = {arg: _int_range(args.get(arg, default)) for arg, default in defaults.items()}
    for arg, bounds in ranges.items():
        if bounds is None:
            value = args[arg] if arg in args else f"{list(defaults[arg])} (its default)"
            return f"{where}.{arg} = {value}: fractions of the side; batched holes take sizes in pixels"
    fill = args.get("fill", 0)
    if isinstance(fill, str) and fill != "mean":
        return f"{where}.fill = {fill!r}: batched holes take a value, one per channel or 'mean'"
    return Cutout(float(args.get("p", 0.5)), ranges["num_holes_range"], ranges["hole_height_range"],
                  ranges["hole_width_range"], fill)


def _mirror_symmetric(affine: Affine) -> bool:
    """Whether mirroring a warped image is distributed as warping a mirrored one: a mirror
    turns a rotation by a into -a and an x shift by t into -t, and leaves scales alone."""
    (rotate_low, rotate_high), (shift_low, shift_high) = affine.rotate, affine.shift[0]
    return rotate_low == -rotate_high and shift_low == -shift_high


def _affine_plan(transform: Any, args: dict[str, Any], where: str) -> Affine | str:
    """The warp albumentations' Affine (which ShiftScaleRotate is) would draw, if mirrored here."""
    if transform.border_mode not in _BORDERS:
        return (f"{where}.border_mode = {transform.border_mode}: batched borders are 0 (constant), "
                "2 (reflect) and 4 (reflect 101)")
    if transform.interpolation != _INTER_LINEAR:
        return f"{where}.interpolation = {transform.interpolation}: the batched warp is bilinear (1)"
    for arg in ("fit_output", "balanced_scale"):
        if getattr(transform, arg):
            return f"{where}.{arg} = true: not mirrored by the batched path"
    if any(float(v) != 0.0 for axis in transform.shear.values() for v in axis):
        return f"{where}.shear: the batched warp does not shear"
    in_pixels = transform.translate_px is not None
    shift = transform.translate_px if in_pixels else transform.translate_percent

    # albumentations draws pixel shifts as randint(int(low), int(high)): bounds truncated
    bound = (lambda value: float(int(value))) if in_pixels else float

    def axes(ranges: dict[str, Any], read: Any = float) -> tuple[Range, Range]:
        return tuple((read(ranges[axis][0]), read(ranges[axis][1])) for axis in ("x", "y"))  # type: ignore[return-value]

    return Affine(
        p=float(transform.p),
        shift=axes(shift, bound),
        shift_in_pixels=in_pixels,
        scale=axes(transform.scale),
        keep_ratio=bool(transform.keep_ratio),
        rotate=(float(transform.rotate[0]), float(transform.rotate[1])),
        border=_BORDERS[transform.border_mode],
        fill=args.get("fill", 0),
    )


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
    and torch's pinned-memory cache keeps each buffer until its copy has run."""
    if device.type == "cuda":
        draws = draws.pin_memory()
    return draws.to(device, non_blocking=True)


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


class HeldImages:
    """What the run needs of a data set besides batches: its images (for plots), its size
    and, as the per-image path's data set has, its alternating flip if any."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, flips: AlternatingFlip | None) -> None:
        self.images, self.labels, self.augment, self.flips = images, labels, None, flips

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
            order = torch.tensor(list(self.sampler), dtype=torch.long)
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
