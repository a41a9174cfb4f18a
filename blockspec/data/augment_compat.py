"""Albumentations 1.x spellings, translated to 2.x or refused with the 2.x form to write.

Albumentations 2 renamed many arguments but only *warns* about the old names and then uses
its defaults, so a copied 1.x snippet silently trains with a different augmentation. Each
rule here either maps the old arguments exactly (and says so in a note) or stops with the
new spelling; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from blockspec.errors import fail


@dataclass(frozen=True)
class _Rename:
    """Same value, new name."""

    old: str
    new: str

    def apply(self, args: dict[str, Any], where: str) -> str | None:
        if self.old not in args:
            return None
        _refuse_both(args, where, (self.old,), self.new)
        args[self.new] = args.pop(self.old)
        return f"{self.old} → {self.new}"


@dataclass(frozen=True)
class _Pair:
    """Two 1.x scalars become one 2.x pair; `first` may default to `second`, as 1.x min_* did."""

    first: str
    second: str
    new: str
    first_defaults_to_second: bool = False

    def apply(self, args: dict[str, Any], where: str) -> str | None:
        given = [name for name in (self.first, self.second) if name in args]
        if not given:
            return None
        _refuse_both(args, where, tuple(given), self.new)
        if self.second not in args or (
            self.first not in args and not self.first_defaults_to_second
        ):
            missing = self.second if self.second not in args else self.first
            raise fail(
                f"{where}.{given[0]}",
                f"albumentations 1.x argument; 2.x takes {self.new}: [{self.first}, "
                f"{self.second}], and {missing} is not given (its 1.x default varies by "
                f"release), so write {self.new} directly",
                args[given[0]],
            )
        second = args.pop(self.second)
        first = args.pop(self.first, second)
        args[self.new] = [first, second]
        return f"{', '.join(given)} → {self.new}=[{first}, {second}]"


@dataclass(frozen=True)
class _Gone:
    """No exact translation exists; say what to write instead."""

    old: str
    hint: str

    def apply(self, args: dict[str, Any], where: str) -> str | None:
        if self.old in args:
            raise fail(
                f"{where}.{self.old}",
                f"albumentations 1.x argument, removed in 2.x; {self.hint}",
                args[self.old],
            )
        return None


_Rule = _Rename | _Pair | _Gone

_FILL = (_Rename("value", "fill"), _Rename("mask_value", "fill_mask"))
_FILL_VALUE = (_Rename("fill_value", "fill"), _Rename("mask_fill_value", "fill_mask"))

_COMMON: tuple[_Rule, ...] = (
    _Gone("always_apply", "use p: 1.0 to apply the transform every time"),
)

# Transforms whose 2.x defaults differ from 1.x's for every argument group: once a spec writes
# 1.x arguments, the groups it leaves out would silently change meaning.
_WHOLE_WHEN_TRANSLATED = {"CoarseDropout": ("num_holes_range", "hole_height_range", "hole_width_range")}

_RULES: dict[str, tuple[_Rule, ...]] = {
    "CoarseDropout": (
        _Pair("min_holes", "max_holes", "num_holes_range", first_defaults_to_second=True),
        _Pair("min_height", "max_height", "hole_height_range", first_defaults_to_second=True),
        _Pair("min_width", "max_width", "hole_width_range", first_defaults_to_second=True),
        *_FILL_VALUE,
    ),
    "GridDropout": (
        _Pair("unit_size_min", "unit_size_max", "unit_size_range"),
        _Pair("holes_number_x", "holes_number_y", "holes_number_xy"),
        _Pair("shift_x", "shift_y", "shift_xy"),
        *_FILL_VALUE,
    ),
    "XYMasking": _FILL_VALUE,
    "ShiftScaleRotate": _FILL,
    "Rotate": _FILL,
    "SafeRotate": _FILL,
    "PadIfNeeded": _FILL,
    "OpticalDistortion": _FILL,
    "GridDistortion": _FILL,
    "ElasticTransform": (
        *_FILL,
        _Gone("alpha_affine", "add a separate Affine entry for the affine part"),
    ),
    "Affine": (
        _Rename("cval", "fill"),
        _Rename("cval_mask", "fill_mask"),
        _Rename("mode", "border_mode"),
    ),
    "Perspective": (
        _Rename("pad_val", "fill"),
        _Rename("mask_pad_val", "fill_mask"),
        _Rename("pad_mode", "border_mode"),
    ),
    "CropAndPad": (
        _Rename("pad_cval", "fill"),
        _Rename("pad_cval_mask", "fill_mask"),
        _Rename("pad_mode", "border_mode"),
    ),
    "RandomResizedCrop": (_Pair("height", "width", "size"),),
    "RandomSizedCrop": (_Pair("height", "width", "size"),),
    "ImageCompression": (_Pair("quality_lower", "quality_upper", "quality_range"),),
    "Downscale": (
        _Pair("scale_min", "scale_max", "scale_range"),
        _Gone(
            "interpolation", "use interpolation_pair: {downscale: <cv2 flag>, upscale: <cv2 flag>}"
        ),
    ),
    "RandomFog": (_Pair("fog_coef_lower", "fog_coef_upper", "fog_coef_range"),),
    "RandomRain": (_Pair("slant_lower", "slant_upper", "slant_range"),),
    "RandomSnow": (_Pair("snow_point_lower", "snow_point_upper", "snow_point_range"),),
    "RandomShadow": (_Pair("num_shadows_lower", "num_shadows_upper", "num_shadows_limit"),),
    "RandomSunFlare": (
        _Pair("num_flare_circles_lower", "num_flare_circles_upper", "num_flare_circles_range"),
    ),
    "GaussNoise": (
        _Gone(
            "var_limit",
            "use std_range: [low, high], the noise std as a fraction of 255 "
            "(std = sqrt(var) / 255)",
        ),
        _Gone("mean", "use mean_range: [low, high], as a fraction of 255"),
    ),
}

# Transforms that no longer exist, with what replaces them.
REMOVED: dict[str, str] = {
    "Cutout": "Cutout was removed in albumentations 2; use CoarseDropout: "
    "{num_holes_range: [n, n], "
    "hole_height_range: [h, h], hole_width_range: [w, w], fill: ...}",
    "JpegCompression": "JpegCompression was removed; "
    "use ImageCompression: {quality_range: [low, high]}",
    "Flip": "Flip was removed; use HorizontalFlip and/or VerticalFlip",
    "RandomBrightness": "RandomBrightness was removed; "
    "use RandomBrightnessContrast: {contrast_limit: 0}",
    "RandomContrast": "RandomContrast was removed; "
    "use RandomBrightnessContrast: {brightness_limit: 0}",
}


def translated_from(name: str, new: str) -> list[str]:
    """The 1.x argument names that transform `name` translates into its 2.x argument `new`."""
    rules = (*_COMMON, *_RULES.get(name, ()))
    return [old for rule in rules if getattr(rule, "new", None) == new
            for old in ((rule.old,) if isinstance(rule, _Rename) else (rule.first, rule.second))]


def translate_args(
    name: str, args: dict[str, Any], where: str
) -> tuple[dict[str, Any], str | None]:
    """2.x arguments for transform `name`, and a note on what was translated (None if nothing)."""
    out = dict(args)
    done = [note for rule in (*_COMMON, *_RULES.get(name, ())) if (note := rule.apply(out, where))]
    missing = [arg for arg in _WHOLE_WHEN_TRANSLATED.get(name, ()) if done and arg not in out]
    if missing:
        raise fail(
            where,
            f"albumentations 1.x arguments, translated, but nothing says {', '.join(missing)}: 2.x would "
            f"take its own default, not 1.x's (8 holes of 8×8 pixels), so write {', '.join(missing)} too",
            args,
        )
    note = f"{where}: translated albumentations 1.x arguments: {'; '.join(done)}" if done else None
    return out, note


# Transforms whose default border was the reflection BORDER_REFLECT_101 in albumentations 1.x
# and is the constant `fill` in 2.x: the same arguments warp with another border.
_BORDER_DEFAULT_CHANGED = (
    "ShiftScaleRotate", "Rotate", "SafeRotate", "PadIfNeeded", "GridDistortion", "OpticalDistortion", "ElasticTransform",
)


def changed_default_note(name: str, args: dict[str, Any], where: str) -> str | None:
    """A note where a spec relies on a default that albumentations 2.x changed silently."""
    if name not in _BORDER_DEFAULT_CHANGED or "border_mode" in args:
        return None
    return (
        f"{where}: without border_mode, albumentations 2.x fills the uncovered border with `fill` "
        "(default 0, black) where 1.x reflected the image (BORDER_REFLECT_101); write "
        "border_mode: 4 for 1.x's augmentation, or border_mode: 0 to keep 2.x's and drop this note"
    )


def _refuse_both(args: dict[str, Any], where: str, old: tuple[str, ...], new: str) -> None:
    if new in args:
        raise fail(
            f"{where}.{old[0]}",
            f"both the albumentations 1.x argument(s) {', '.join(old)} and the 2.x {new} "
            f"are given; keep only {new}",
            args[old[0]],
        )
