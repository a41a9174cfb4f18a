"""The spec's `data.augment` list, checked completely and built into an albumentations Compose.

Each entry is `{TransformName: {argument: value}}`. Names resolve only to albumentations
image-transform classes (looked up in a table built from the module, never imported from
a string); argument names are checked against the transform's signature; albumentations
1.x spellings are translated or refused (see augment_compat); and any warning albumentations
raises while building, which would mean it changed or ignored something, becomes an error.
Trying the transforms on images is augment_probe's.
"""

from __future__ import annotations

import difflib
import inspect
import math
import random
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import albumentations as A
import numpy as np
from albumentations.core.transforms_interface import (
    BasicTransform,
    DualTransform,
    ImageOnlyTransform,
    Transform3D,
)
from pydantic import ValidationError

from blockspec.data.augment_compat import REMOVED, changed_default_note, translate_args, translated_from
from blockspec.data.augment_probe import does_nothing_note, dry_run
from blockspec.errors import Problem, SpecError, dotted_path, fail, validation_problems

_NORMALISES = (
    "blockspec converts images to tensors and normalises each batch with the data set's "
    "mean/std itself"
)
_STAYS_UINT8 = "blockspec keeps images uint8 until it normalises each batch itself"
_DONE_BY_BLOCKSPEC = {
    "Normalize": f"{_NORMALISES}; remove this entry",
    "ToTensorV2": f"{_NORMALISES}; remove this entry",
    "ToFloat": f"{_STAYS_UINT8}; remove this entry",
    "FromFloat": f"{_STAYS_UINT8}; remove this entry",
}
# Warnings that only advise (e.g. "ShiftScaleRotate ... use Affine instead") become notes;
# anything else albumentations warns about at construction means it altered the request.
_ADVISORY = re.compile(r"\b(instead|alias|slow)\b", re.IGNORECASE)
_ALTERED = re.compile(
    r"not valid|deprecat|ignor|adjust|default|invalid|unknown|removed", re.IGNORECASE
)
# ShiftScaleRotate's ranges and what Affine, which users move to, calls them
_SHIFT_SCALE_ROTATE_NAMES = {
    "shift_limit": "translate_percent (the same fractions of the size)",
    "rotate_limit": "rotate (degrees)",
    "scale_limit": "scale (1 + the limit: scale_limit 0.1 is scale [0.9, 1.1])",
}
# OpenCV's flag values, which albumentations takes as bare numbers
_OPENCV_FLAGS = {
    "border_mode": "0 constant (fill), 1 replicate, 2 reflect, 3 wrap, 4 reflect 101",
    "interpolation": "0 nearest, 1 linear, 2 cubic, 3 area, 4 Lanczos",
    "mask_interpolation": "0 nearest, 1 linear, 2 cubic, 3 area, 4 Lanczos",
}
_BASES = (BasicTransform, DualTransform, ImageOnlyTransform, Transform3D)
_PARAMETER_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _image_transforms() -> dict[str, type[BasicTransform]]:
    """Every concrete 2D-image transform class albumentations exports, by name."""
    found = {}
    for name in dir(A):
        candidate = getattr(A, name)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, BasicTransform)
            and candidate not in _BASES
            and not issubclass(candidate, Transform3D)
            and name not in _DONE_BY_BLOCKSPEC
        ):
            found[name] = candidate
    return found


TRANSFORMS = _image_transforms()


@dataclass(frozen=True)
class AugmentPlan:
    """Entries as (name, 2.x kwargs), `fill` possibly still "mean", plus notes for the user,
    and each transform as albumentations built it while checking (a `mean` fill as 0): its
    normalised arguments are what the batched path mirrors."""

    steps: list[tuple[str, dict[str, Any]]]
    notes: list[str]
    built: list[BasicTransform]
    positions: list[int]  # each step's index in the spec's list, which errors and notes name


def read_augment(
    entries: list[Any] | None,
    path: str = "data.augment",
    positions: Sequence[int] | None = None,
    channels: int = 3,
) -> AugmentPlan:
    """Check every entry fully (each transform is built once) without needing any data.
    `positions`: each entry's index in the spec's list, for errors, where `entries` leaves
    some out (the flip `alternate_flip` applies, those `augment_off` drops); `channels`: the
    input's, which a colour-only transform leaves as they are when there is one."""
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise fail(path, "should be a list of {TransformName: {argument: value}} entries", entries)
    steps: list[tuple[str, dict[str, Any]]] = []
    notes: list[str] = []
    built: list[BasicTransform] = []
    for index, entry in zip(positions or range(len(entries)), entries, strict=True):
        name, given = _split_entry(entry, f"{path}[{index}]")
        where = f"{path}[{index}].{name}"
        args, translated = translate_args(name, given, where)
        _check_arg_names(name, args, where)
        notes += [note for note in (translated, changed_default_note(name, args, where)) if note]
        try:
            _check_numbers(name, args, where)
            transform, advice = _construct(name, _resolve_fill(args, 0), where)
            _check_hole_units(transform, args, where)
            _check_scale(transform, args, where)
        except SpecError as error:
            raise _as_written(error, name, where, given) from None
        notes += advice
        notes += _fill_units_note(args, where)
        notes += _whole_pixels_note(transform, where)
        notes += does_nothing_note(transform, where, channels)
        steps.append((name, args))
        built.append(transform)
    return AugmentPlan(steps, notes, built, list(positions or range(len(steps))))


def build_augment(
    entries: list[Any] | None,
    mean: tuple[float, ...],
    path: str = "data.augment",
    image_shape: tuple[int, int, int] | None = None,
    positions: Sequence[int] | None = None,
    whole: str | None = None,
) -> A.Compose:
    """The Compose to apply to uint8 HWC images; `fill: mean` becomes `mean` (0–1) × 255.

    With `image_shape`, each transform is also tried once on such an image, so transforms that
    need boxes/masks, or a list that changes the image size, fail here rather than mid-training.
    `positions` as `read_augment`'s; `whole` names the list in errors about all of it
    (default `path`: the final epochs' list is `data.augment` less what `augment_off` drops).
    """
    plan = read_augment(entries, path, positions)
    fill = mean_fill(mean)
    wheres = [f"{path}[{index}].{name}" for index, (name, _) in zip(plan.positions, plan.steps, strict=True)]
    transforms = [
        _construct(name, _resolve_fill(args, fill), where)[0] for (name, args), where in zip(plan.steps, wheres, strict=True)
    ]
    if image_shape is not None:
        dry_run(transforms, wheres, image_shape, whole or path)
    return A.Compose(transforms)


def mean_fill(mean: tuple[float, ...]) -> tuple[int, ...]:
    """The uint8 colour a `fill: mean` hole or border gets: the data set's mean, rounded. Both
    data paths take it from here, so the per-image and batched paths fill alike."""
    return tuple(round(255 * value) for value in mean)


def seed_augment(augment: A.Compose, seed: int) -> None:
    """Make `augment` draw from one stream seeded by `seed`.

    `Compose(seed=...)` gives every transform its own generator with the *same* seed, so
    their draws coincide (two p=0.5 transforms would always fire together); a single shared
    stream keeps them independent and still reproducible.
    """
    augment.set_random_state(np.random.default_rng(seed), random.Random(seed))


def _split_entry(entry: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise fail(
            where,
            "each entry should be a one-key mapping such as {HorizontalFlip: {p: 0.5}}",
            entry,
        )
    [(name, args)] = entry.items()
    if not isinstance(name, str) or name not in TRANSFORMS:
        raise fail(where, _unknown_transform(name), name)
    if args is None:
        return name, {}
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        raise fail(
            f"{where}.{name}", "arguments should be a mapping {argument: value} (or empty)", args
        )
    return name, dict(args)


def _unknown_transform(name: Any) -> str:
    text = name if isinstance(name, str) else repr(name)  # YAML keys need not be strings
    if text in REMOVED:
        return REMOVED[text]
    if text in _DONE_BY_BLOCKSPEC:
        return _DONE_BY_BLOCKSPEC[text]
    if isinstance(getattr(A, text, None), type) and issubclass(getattr(A, text), A.BaseCompose):
        return (
            "is an albumentations composition; list the transforms themselves, "
            "blockspec applies them in order"
        )
    by_case = [known for known in TRANSFORMS if known.lower() == text.lower()]
    close = by_case or difflib.get_close_matches(text, TRANSFORMS, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"not an albumentations {A.__version__} image transform{hint}"


def _check_arg_names(name: str, args: dict[str, Any], where: str) -> None:
    parameters = inspect.signature(TRANSFORMS[name].__init__).parameters
    valid = [arg for arg, p in parameters.items() if arg != "self" and p.kind in _PARAMETER_KINDS]
    for arg, value in args.items():
        if arg not in valid:
            close = difflib.get_close_matches(arg, valid, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            if name == "Affine" and arg in _SHIFT_SCALE_ROTATE_NAMES:
                hint = f"{arg} is ShiftScaleRotate's; Affine's is {_SHIFT_SCALE_ROTATE_NAMES[arg]}. "
            raise fail(
                f"{where}.{arg}",
                f"not an argument of {name}; {hint}valid: {', '.join(valid)}",
                value,
            )
    missing = [
        arg
        for arg in valid
        if parameters[arg].default is inspect.Parameter.empty and arg not in args
    ]
    if missing:
        raise fail(where, f"missing required argument(s): {', '.join(missing)}", args)


def _as_written(error: SpecError, name: str, where: str, given: dict[str, Any]) -> SpecError:
    """A problem found in a 1.x argument's 2.x translation (`num_holes_range` from `min_holes`
    and `max_holes`) is named at what the spec holds: the 1.x argument(s) as written."""
    problems = []
    for problem in error.problems:
        arg = problem.path.removeprefix(f"{where}.").split(".")[0].split("[")[0]
        old = [key for key in translated_from(name, arg) if key in given]
        if problem.path == where or arg in given or not old:
            problems.append(problem)
            continue
        written = f"{where}.{old[0]}" if len(old) == 1 else where
        value = given[old[0]] if len(old) == 1 else {key: given[key] for key in old}
        problems.append(replace(problem, path=written, value=value,
                                message=f"{problem.message} (as {arg}, the 2.x translation of {', '.join(old)})"))
    return SpecError(problems, error.source)


def _check_numbers(name: str, args: dict[str, Any], where: str) -> None:
    """What albumentations takes but no image can use: a per-axis range's keys other than x and
    y, true/false inside a range (YAML's `true` is 1 to albumentations, and an error inside
    the batched path), non-finite numbers, and a hole's fill
    outside the 0–255 of the uint8 images blockspec augments (numpy refuses it mid-training;
    a warp's border fill is saturated, as OpenCV does, on both paths)."""
    for arg, value in args.items():
        per_axis = name == "Affine" and arg in ("scale", "translate_percent", "translate_px", "shear")
        unknown = [key for key in value if key not in ("x", "y")] if per_axis and isinstance(value, dict) else []
        if unknown:  # albumentations drops any other key without a word
            raise fail(f"{where}.{arg}", f"unknown key {unknown[0]!r}; a per-axis range takes x and y", value)
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, (list, tuple)) and any(isinstance(bound, bool) for bound in item):
                raise fail(f"{where}.{arg}", "true/false is not a number; write the range's numbers", value)
            numbers = item if isinstance(item, (list, tuple)) else [item]
            if any(not math.isfinite(number) for number in map(_as_number, numbers) if number is not None):
                raise fail(f"{where}.{arg}", "must be finite numbers (.nan and .inf draw no image)", value)
    fill = args.get("fill")
    values = fill if isinstance(fill, (list, tuple)) else [fill]
    holes = name.endswith("Dropout") or name == "XYMasking"
    if holes and any(isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= 255 for v in values):
        raise fail(f"{where}.fill", "a hole's fill is a pixel value of uint8 images, 0–255 (or 'mean')", fill)


def _as_number(value: Any) -> float | None:
    """A float, or a string Pydantic would read as one (`inf`, and `1e999`, which YAML 1.1
    leaves a string); None for anything else."""
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _construct(name: str, args: dict[str, Any], where: str) -> tuple[BasicTransform, list[str]]:
    """Build the transform, turning validation errors and altering warnings into SpecErrors."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            transform = TRANSFORMS[name](**args)
        except Exception as error:  # noqa: BLE001 - its own checks raise ValueError, TypeError, ...
            raise _construction_error(error, where, args) from None
    notes = []
    for warning in caught:
        text = str(warning.message)
        if _ALTERED.search(text) or not _ADVISORY.search(text):
            raise fail(where, f"albumentations would not build this as written: {text}", args)
        notes.append(f"{where}: albumentations advises: {text}")
    return transform, notes


def _construction_error(error: Exception, where: str, args: dict[str, Any]) -> SpecError:
    cause = error.__cause__ if isinstance(error.__cause__, ValidationError) else error
    if isinstance(cause, ValidationError):
        problems = validation_problems(cause, lambda loc: _within(where, dotted_path(loc)))
        problems = [_with_flag_names(_at_the_argument(problem, where, args), where) for problem in problems]
        return SpecError([_with_mean_fill(problem, where) for problem in problems])
    return fail(where, f"albumentations rejected these arguments: {error}", args)


def _at_the_argument(problem: Problem, where: str, args: dict[str, Any]) -> Problem:
    """albumentations' checks across arguments report on the whole transform, its internal
    arguments as the value: name the one argument of the user's the message names (itself or
    an axis of it, as shift_limit_x of shift_limit), else show the arguments as written."""
    if problem.path != where:
        return problem
    named = [arg for arg in args if re.search(rf"\b{re.escape(arg)}(_[xy])?\b", problem.message)]
    if len(named) == 1:
        return Problem(f"{where}.{named[0]}", problem.message, args[named[0]])
    return Problem(where, problem.message, args)


def _with_flag_names(problem: Problem, where: str) -> Problem:
    """albumentations lists OpenCV's flags as bare numbers: say what each is."""
    arg = problem.path.removeprefix(f"{where}.")
    if arg not in _OPENCV_FLAGS:
        return problem
    return replace(problem, message=f"{problem.message} ({_OPENCV_FLAGS[arg]})")


def _with_mean_fill(problem: Problem, where: str) -> Problem:
    """albumentations lists the fills it knows; blockspec adds `mean` (see `_resolve_fill`)."""
    if problem.path != f"{where}.fill":
        return problem
    return replace(problem, message=f"{problem.message}; or 'mean' (the data set's mean colour)")


def _check_hole_units(transform: BasicTransform, args: dict[str, Any], where: str) -> None:
    """CoarseDropout reads both hole ranges in pixels when the height range's upper end is 1
    or more, else both as fractions of the side: a range in the other unit would silently
    give holes of 0–1 pixels, or none."""
    if not isinstance(transform, A.CoarseDropout):
        return
    in_pixels = transform.hole_height_range[1] >= 1
    unit = "pixels (whole numbers)" if in_pixels else "fractions of the side (below 1)"
    for arg in ("hole_height_range", "hole_width_range"):
        low, high = getattr(transform, arg)
        if (high >= 1) != in_pixels or (in_pixels and not float(low).is_integer()):
            raise fail(
                f"{where}.{arg}",
                f"albumentations reads both hole ranges in hole_height_range's unit, here {unit}; "
                "write both in pixels, or both as fractions below 1",
                args.get(arg, [low, high]),
            )


def _check_scale(transform: BasicTransform, args: dict[str, Any], where: str) -> None:
    """A warp whose scale range reaches 0 shrinks the image to a point: albumentations draws a
    blank image and the batched path divides by 0. (A negative range mirrors the image.)"""
    if not isinstance(transform, A.Affine):
        return
    arg = "scale_limit" if isinstance(transform, A.ShiftScaleRotate) else "scale"
    for axis, (low, high) in transform.scale.items():
        if low <= 0 <= high:
            raise fail(
                f"{where}.{arg}",
                f"the {axis} scale it draws from [{low:g}, {high:g}] reaches 0, which shrinks the image to a point; "
                + ("keep scale_limit above -1" if arg == "scale_limit" else "keep the range above 0 (or below it, to mirror)"),
                args.get(arg, transform.scale),
            )


def _within(where: str, field: str) -> str:
    """A transform argument's path under the transform's own: `data.augment[0].Affine.scale`."""
    if not field:
        return where
    return f"{where}{field}" if field.startswith("[") else f"{where}.{field}"


def _resolve_fill(args: dict[str, Any], mean_fill: Any) -> dict[str, Any]:
    if args.get("fill") == "mean":
        return {**args, "fill": mean_fill}
    return args


def _fill_units_note(args: dict[str, Any], where: str) -> list[str]:
    """Flag fills written in 0–1 units: on uint8 images they are (nearly) black."""
    fill = args.get("fill")
    values = fill if isinstance(fill, (list, tuple)) else [fill]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    fractions = all(0 <= v <= 1 for v in numbers) and any(0 < v < 1 for v in numbers)
    if not numbers or len(numbers) != len(values) or not fractions:
        return []
    note = (
        f"{where}.fill: {fill!r} is in 0–255 pixel units on uint8 images, so it fills (nearly) "
        "black; write `fill: mean` for the data set mean"
    )
    return [note]


def _whole_pixels_note(transform: BasicTransform, where: str) -> list[str]:
    """albumentations draws pixel shifts as whole numbers between int(low) and int(high), so a
    fractional bound silently becomes its integer part."""
    shifts = getattr(transform, "translate_px", None) if isinstance(transform, A.Affine) else None
    if not shifts or all(float(bound).is_integer() for bounds in shifts.values() for bound in bounds):
        return []
    drawn = ", ".join(f"{axis} {int(low)}…{int(high)}" for axis, (low, high) in shifts.items())
    return [f"{where}.translate_px: shifts are whole pixels drawn between the bounds' integer parts: {drawn}"]
