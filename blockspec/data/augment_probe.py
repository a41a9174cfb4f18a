"""Augmentation entries tried on synthetic images, since albumentations builds some transforms
it cannot apply: one that changes no image is noted, and a list that fails on the data's
shape or changes it in some draw is refused before training rather than mid-way through it.
"""

from __future__ import annotations

import copy
import itertools
import warnings

import albumentations as A
import numpy as np
from albumentations.core.transforms_interface import BasicTransform

from blockspec.errors import fail

_NOOP_TRIES = 8
_PROBE_SHAPES = ((32, 32, 3), (8, 8, 3), (45, 37, 3))  # small enough for any pad to change


def _at_p_1(transform: BasicTransform) -> BasicTransform:
    """A copy that always applies, to try the transform with."""
    probe = copy.deepcopy(transform)
    probe.p = 1.0
    return probe


def does_nothing_note(transform: BasicTransform, where: str, channels: int) -> list[str]:
    """A transform that would change no training image: albumentations says nothing."""
    tries = f"in {_NOOP_TRIES} tries at p = 1 on each of {len(_PROBE_SHAPES)} sizes"
    if _changes_nothing(transform, 3):
        return [f"{where}: changed no image {tries}, so it does nothing as written (blockspec passes images alone: a "
                "transform that needs masks, boxes or a function, such as ConstrainedCoarseDropout or Lambda, leaves "
                "them as they are)"]
    if channels != 3 and _changes_nothing(transform, channels):
        return [f"{where}: changed no image of {channels} channel{'s' * (channels > 1)} (input.channels) {tries}, "
                "though it changes colour images: it acts on colour alone, so it does nothing to this data"]
    return []


def _changes_nothing(transform: BasicTransform, channels: int) -> bool:
    """Whether the transform, applied at p = 1 to random images of `channels` channels and three
    sizes, left each unchanged every time (seeded, so the answer is fixed). ConstrainedCoarseDropout
    without a mask, a Lambda without functions and NoOp do; crops and pads change one of the
    sizes at least (a crop to 32×32 leaves a 32×32 image as it is), and a transform that
    cannot take an image of some size is left to the dry run on the data's own shape."""
    probe = _at_p_1(transform)
    probe.set_random_seed(0)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstrainedCoarseDropout warns at every call
        try:
            for height, width, _ in _PROBE_SHAPES:
                image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
                if not all(np.array_equal(probe(image=image)["image"], image) for _ in range(_NOOP_TRIES)):
                    return False
        except Exception:  # noqa: BLE001 - not this check's to report
            return False
    return True


def dry_run(
    transforms: list[BasicTransform], wheres: list[str], shape: tuple[int, int, int], path: str
) -> None:
    """Apply each transform once, at p = 1 and seeded, to a random image of the data's shape,
    then the whole list as training may draw it; `wheres` are the entries' field paths, `path`
    the list's name (the final epochs' list is `data.augment` less what `augment_off` drops)."""
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    within = _within_list(path)
    for transform, where in zip(transforms, wheres, strict=True):
        _check_holes_fit(transform, image.shape, where)
        _check_fill_channels(transform, image.shape, where)
        probe = _at_p_1(transform)
        probe.set_random_seed(0)
        try:
            image = probe(image=image)["image"]
        except Exception as error:  # noqa: BLE001 - whatever it raises, the cause is this entry
            raise fail(where, f"cannot be applied to a {_shape(shape)} image{within}: {error}") from None
    _check_size_in_every_draw(transforms, wheres, shape, path)


def _within_list(path: str) -> str:
    """Which list an entry's error is in, where it is not all of `data.augment` (the final
    epochs' list, `data.augment` less what `augment_off` drops)."""
    return "" if path == "data.augment" else f" (in {path})"


_SIZE_DRAWS = 6
_ALL_PATTERNS_UP_TO = 8  # optional size-changing transforms; beyond, every one or two of them skipped


def _check_size_in_every_draw(
    transforms: list[BasicTransform], wheres: list[str], shape: tuple[int, int, int], path: str
) -> None:
    """The list must give the input's shape and dtype whichever of its transforms apply (each
    with its p) and whatever sizes they draw: a crop with p = 0.5 after a pad, or a RandomScale,
    passes one try at p = 1 and then fails mid-training when a batch stacks two sizes. Every
    pattern of the size-changing transforms with p < 1 applied or skipped (with more than
    eight, each one and each two of them skipped), in seeded draws."""
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    probes = [_at_p_1(transform) for transform in transforms]
    optional = [index for index, (transform, probe) in enumerate(zip(transforms, probes, strict=True))
                if transform.p < 1 and _may_resize(probe, image)]
    most = len(optional) if len(optional) <= _ALL_PATTERNS_UP_TO else 2
    for skipped in itertools.chain.from_iterable(itertools.combinations(optional, n) for n in range(most + 1)):
        skipping = ", ".join(f"{wheres[i]} skipped (p = {transforms[i].p:g})" for i in skipped)
        for draw in range(_SIZE_DRAWS):
            when = f"with {skipping}, " if skipped else "in one of its random draws, " if draw else ""
            result = image
            for index, probe in enumerate(probes):
                if index in skipped:
                    continue
                probe.set_random_seed(draw)
                try:
                    result = probe(image=result)["image"]
                except Exception as error:  # noqa: BLE001 - the cause is this entry, in this draw
                    raise fail(wheres[index], f"cannot be applied {when}to the {_shape(result.shape)} image the "
                                              f"list gives it{_within_list(path)}: {error}") from None
            if result.shape != shape or result.dtype != np.uint8:
                raise fail(path, f"does not keep the images' shape: {when}a {_shape(shape)} uint8 image becomes "
                                 f"{_shape(result.shape)} {result.dtype}; every draw must give the input's shape and "
                                 "dtype (a pad and a crop back to the size, or a Resize, each with p = 1)")


def _may_resize(probe: BasicTransform, image: np.ndarray) -> bool:
    """Whether the transform, at p = 1, gives another size than it gets, in seeded draws on
    the data's size and on the probe sizes (a crop to the input's size changes only others)."""
    rng = np.random.default_rng(1)
    inputs = [image, *(rng.integers(0, 256, (*side[:2], image.shape[2]), dtype=np.uint8) for side in _PROBE_SHAPES)]
    for draw, source in itertools.product(range(_SIZE_DRAWS), inputs):
        probe.set_random_seed(draw)
        try:
            if probe(image=source)["image"].shape != source.shape:
                return True
        except Exception:  # noqa: BLE001, S112 - a size it cannot take: not this check's to report
            continue
    return False


def _check_fill_channels(transform: BasicTransform, shape: tuple[int, ...], where: str) -> None:
    """A fill of several values has one a channel: albumentations' own error named the entry,
    not the argument or its value."""
    fill = getattr(transform, "fill", None)
    if isinstance(fill, (list, tuple)) and len(fill) not in (1, shape[2]):
        raise fail(f"{where}.fill", f"one value a channel: the images have {shape[2]} (or give one value for all)",
                   [int(value) if float(value).is_integer() else value for value in fill])


def _check_holes_fit(transform: BasicTransform, shape: tuple[int, ...], where: str) -> None:
    """CoarseDropout caps a hole range's upper end at the image's side but draws from its
    lower end, so a lower end beyond the side fails inside numpy ("low >= high")."""
    if not isinstance(transform, A.CoarseDropout):
        return
    most = transform.num_holes_range[1]
    if most > shape[0] * shape[1]:  # each hole at least a pixel; drawing a hundred million takes minutes
        raise fail(f"{where}.num_holes_range", f"at most {shape[0] * shape[1]} holes, the pixel count of a "
                   f"{shape[0]}×{shape[1]} image", list(transform.num_holes_range))
    if transform.hole_height_range[1] < 1:
        return  # fractions of the side always fit
    for arg, side, name in (("hole_height_range", shape[0], "height"), ("hole_width_range", shape[1], "width")):
        low, high = (int(bound) if float(bound).is_integer() else bound for bound in getattr(transform, arg))
        if low > side:
            raise fail(f"{where}.{arg}", f"holes of at least {low} px do not fit the images' {name} of {side} px; "
                       f"keep the range's lower end at most {side}", [low, high])


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)
