"""Which of the spec's checked transforms the batched path (`blockspec.data.batched`) can
apply, read from albumentations' own built transforms so that every spelling of their
arguments it accepts means the same here.

A flip is applied first; a spec that flips after warping is mirrored only when the warp's
distribution is itself mirror-symmetric (rotation and x shift ranges centred on 0), since
then the two orders draw the same images.

`plan_batched` returns None when any transform or argument has no equivalent there, and the
caller falls back to per-image albumentations; `batched_refusal` names the entry and argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blockspec.data.augment import AugmentPlan
from blockspec.errors import fail

_INTER_LINEAR = 1  # OpenCV's flag value
# OpenCV border flags → how the grid sample reproduces them: BORDER_REFLECT (fedcba|abcd)
# mirrors about the image's edge, BORDER_REFLECT_101 (edcb|abcd) about its edge pixels' centres
_BORDERS = {0: "constant", 2: "reflect", 4: "reflect101"}
_AFFINE_NAMES = ("Affine", "ShiftScaleRotate")
# fill_mask too: it fills holes in masks, which blockspec never passes
_CUTOUT_ARGS = {"num_holes_range", "hole_height_range", "hole_width_range", "fill", "fill_mask", "p"}
_SUPPORTED = "batched: HorizontalFlip, Affine or ShiftScaleRotate, CoarseDropout"


Range = tuple[float, float]


@dataclass(frozen=True)
class Affine:
    """The warp an Affine or ShiftScaleRotate draws, as ranges the batched warp samples from."""

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
    """The holes a CoarseDropout cuts, in whole pixels."""

    p: float
    holes: tuple[int, int]
    height: tuple[int, int]
    width: tuple[int, int]
    fill: tuple[float, ...] | float | str


@dataclass(frozen=True)
class BatchedPlan:
    """What `augment_batch` applies, in its fixed order: flip, warp, holes."""

    flip_p: float = 0.0
    affine: Affine | None = None
    cutout: Cutout | None = None


def plan_batched(augment: AugmentPlan) -> BatchedPlan | None:
    """The batched equivalent of checked augmentation steps, or None if there is none
    (`batched_refusal` says why)."""
    plan = _plan_or_refusal(augment)
    return plan if isinstance(plan, BatchedPlan) else None


def batched_refusal(augment: AugmentPlan) -> str | None:
    """Why the steps have no batched equivalent, naming the entry and argument; None if they have one."""
    plan = _plan_or_refusal(augment)
    return plan if isinstance(plan, str) else None


def plan_for_loader(augment: AugmentPlan, loader: str) -> BatchedPlan | None:
    """The batched plan `--loader` takes: the steps' own where they have one (`auto`), none
    for `albumentations`; `gpu` on steps without one is refused, naming what keeps them off."""
    plan = _plan_or_refusal(augment)
    if isinstance(plan, str) and loader == "gpu":
        raise fail(
            "--loader",
            f"the spec's augmentation has no batched equivalent: {plan}; use --loader albumentations",
            "gpu",
        )
    return plan if isinstance(plan, BatchedPlan) and loader != "albumentations" else None


UNBATCHED = "augmentation runs per image in albumentations, not batched"  # how each note of the other path begins


def unbatched_note(augment: AugmentPlan) -> str | None:
    """What training (under `--loader auto`) and `check` say when the augmentation has no
    batched equivalent; None when it has one."""
    refusal = batched_refusal(augment)
    return None if refusal is None else f"{UNBATCHED}, since {refusal}"


def _plan_or_refusal(augment: AugmentPlan) -> BatchedPlan | str:
    """The one walk over the steps the public functions share: the plan, or why there is none."""
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


def _int_range(value: Any) -> tuple[int, int] | None:
    """A pixel range as whole numbers (albumentations reads a range whose upper end is 1 or
    more in pixels, and refuses fractional pixels before this is asked); None for fractions
    of the image size, which are not mirrored here."""
    low, high = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if float(high) < 1:
        return None
    return (int(low), int(high))


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
