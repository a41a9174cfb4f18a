"""The `data.augment` list: lookup, argument checks, 1.x translation, `fill: mean`, real effect."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from blockspec.data import build_augment, read_augment, seed_augment
from blockspec.errors import SpecError

MEAN = (0.4914, 0.4822, 0.4465)
MEAN_255 = (125, 123, 114)

TRIO = [
    {"HorizontalFlip": {"p": 0.5}},
    {"ShiftScaleRotate": {"shift_limit": 0.05, "scale_limit": 0.05, "rotate_limit": 15, "p": 0.5}},
    {
        "CoarseDropout": {
            "num_holes_range": [1, 1],
            "hole_height_range": [16, 16],
            "hole_width_range": [16, 16],
            "fill": "mean",
            "p": 0.5,
        }
    },
]
EXERCISE_1X = {
    "CoarseDropout": {
        "max_holes": 1,
        "max_height": 16,
        "max_width": 16,
        "min_holes": 1,
        "min_height": 16,
        "min_width": 16,
        "fill_value": 0.473363,
        "p": 0.5,
    }
}


def _error(entries: list, **kwargs) -> str:
    with pytest.raises(SpecError) as caught:
        build_augment(entries, MEAN, **kwargs)
    return str(caught.value)


def test_exercise_trio_builds() -> None:
    compose = build_augment(TRIO, MEAN, image_shape=(32, 32, 3))
    flip, ssr, dropout = compose.transforms
    assert isinstance(flip, A.HorizontalFlip) and isinstance(ssr, A.ShiftScaleRotate)
    assert ssr.rotate_limit == (-15, 15) and dropout.p == 0.5
    assert tuple(dropout.fill) == MEAN_255
    plan = read_augment(TRIO)
    assert plan.steps[2] == (
        "CoarseDropout",
        TRIO[2]["CoarseDropout"],
    )  # "mean" kept until data is known
    assert any(
        "ShiftScaleRotate" in note and "Affine" in note for note in plan.notes
    )  # advice, not an error


@pytest.mark.parametrize(
    "name",
    ["ShiftScaleRotate", "Rotate", "SafeRotate", "PadIfNeeded", "GridDistortion", "OpticalDistortion", "ElasticTransform"],
)
def test_a_border_default_that_changed_since_1x_is_pointed_out(name: str) -> None:
    """1.x reflected the border of these warps by default, 2.x fills it: the same arguments
    give other images, so the user is told, and a written border_mode ends the note."""
    [built] = build_augment([{name: {"p": 1.0}}], MEAN).transforms
    assert built.border_mode == cv2.BORDER_CONSTANT  # the 2.x default the note describes
    [note] = [n for n in read_augment([{name: {"p": 1.0}}]).notes if "border" in n]
    assert note.startswith(f"data.augment[0].{name}: without border_mode") and "BORDER_REFLECT_101" in note
    for mode in (0, 4):
        assert not [n for n in read_augment([{name: {"border_mode": mode}}]).notes if "border_mode" in n]
    assert not [n for n in read_augment([{"Affine": {"rotate": 10}}]).notes if "border_mode" in n]


def test_exercise_1x_coarse_dropout_is_translated() -> None:
    [dropout] = build_augment([EXERCISE_1X], MEAN).transforms
    assert dropout.num_holes_range == (1, 1)
    assert dropout.hole_height_range == (16, 16) and dropout.hole_width_range == (16, 16)
    assert dropout.fill == pytest.approx(0.473363) and dropout.p == 0.5
    notes = read_augment([EXERCISE_1X]).notes
    assert any(
        "max_holes" in n and "num_holes_range=[1, 1]" in n and "fill_value → fill" in n
        for n in notes
    )
    assert any("0–255" in n for n in notes)  # 0.47 on uint8 images is black: tell the user


def test_1x_min_defaults_to_max_as_in_1x() -> None:
    [(_, args)] = read_augment(
        [{"CoarseDropout": {"max_holes": 2, "max_height": 8, "max_width": 4}}]
    ).steps
    assert (
        args["num_holes_range"] == [2, 2]
        and args["hole_height_range"] == [8, 8]
        and args["hole_width_range"] == [4, 4]
    )


@pytest.mark.parametrize(
    ("entry", "where", "says"),
    [
        (
            {"CoarseDropout": {"max_holes": 1, "num_holes_range": [1, 1]}},
            "CoarseDropout.max_holes",
            "keep only num_holes_range",
        ),
        (
            {"CoarseDropout": {"fill_value": 0, "fill": 0}},
            "CoarseDropout.fill_value",
            "keep only fill",
        ),
        (
            {"CoarseDropout": {"min_holes": 1}},
            "CoarseDropout.min_holes",
            "write num_holes_range directly",
        ),
        ({"GaussNoise": {"var_limit": [10, 50]}}, "GaussNoise.var_limit", "std_range"),
        ({"HorizontalFlip": {"always_apply": True}}, "HorizontalFlip.always_apply", "p: 1.0"),
        ({"Cutout": {"num_holes": 1}}, "data.augment[0] = 'Cutout'", "use CoarseDropout"),
        (  # 2.x's default hole is 10-20 % of the side (3-6 px at 32), 1.x's 8 px
            {"CoarseDropout": {"max_holes": 1}},
            "data.augment[0].CoarseDropout = {'max_holes': 1}",
            "nothing says hole_height_range, hole_width_range",
        ),
        (  # 2.x's default is 1-2 holes, 1.x's 8
            {"CoarseDropout": {"max_height": 8, "max_width": 8}},
            "data.augment[0].CoarseDropout",
            "nothing says num_holes_range",
        ),
    ],
)
def test_1x_forms_without_exact_translation_are_refused(entry: dict, where: str, says: str) -> None:
    text = _error([entry])
    assert where in text and says in text


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"Affine": {"scale": 0.0}}, "data.augment[0].Affine.scale = 0.0: the x scale it draws from [0, 0] reaches 0"),
        ({"Affine": {"scale": {"x": 1.0, "y": [-0.5, 0.5]}}}, "Affine.scale = {'x': 1.0, 'y': [-0.5, 0.5]}: the y scale"),
        ({"ShiftScaleRotate": {"scale_limit": [-1.0, 0.1]}}, "ShiftScaleRotate.scale_limit = [-1.0, 0.1]: the x scale it "
                                                             "draws from [0, 1.1] reaches 0"),
    ],
)
def test_a_scale_range_reaching_0_is_refused(entry: dict, says: str) -> None:
    """It shrinks the image to a point: blank on albumentations' path, a division by 0 on the
    batched one (NaN images, then a NaN loss blamed on the learning rate)."""
    assert says in _error([entry])


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        # albumentations' checks across arguments report on the whole transform, with its own
        # internal arguments as the value
        ({"ShiftScaleRotate": {"shift_limit": 2}},
         "data.augment[0].ShiftScaleRotate.shift_limit = 2: All values in shift_limit_x must be within [-1, 1]"),
        ({"Affine": {"translate_percent": {"z": 0.1}}},
         "data.augment[0].Affine.translate_percent = {'z': 0.1}: unknown key 'z'; a per-axis range takes x and y"),
        ({"Affine": {"translate_percent": 0.1, "translate_px": 2}},
         "data.augment[0].Affine = {'translate_percent': 0.1, 'translate_px': 2}: Expected either translate_percent"),
        ({"Affine": {"shift_limit": 0.1}},
         "Affine.shift_limit = 0.1: not an argument of Affine; shift_limit is ShiftScaleRotate's; Affine's is translate_percent"),
        ({"Affine": {"border_mode": "reflect"}},
         "Affine.border_mode = 'reflect': Input should be 0, 1, 2, 3 or 4 (0 constant (fill), 1 replicate, 2 reflect, 3 wrap"),
        ({"Affine": {"interpolation": 9}}, "Input should be 0, 1, 2, 3 or 4 (0 nearest, 1 linear, 2 cubic, 3 area, 4 Lanczos)"),
    ],
)
def test_refusals_name_the_argument_as_written_and_what_its_numbers_mean(entry: dict, says: str) -> None:
    assert says in _error([entry])


@pytest.mark.parametrize(
    "entry", [{"ConstrainedCoarseDropout": {"num_holes_range": [2, 4], "p": 1.0}}, {"Lambda": {}}, {"NoOp": {}}, {"Affine": {}}]
)
def test_a_transform_that_changes_no_image_is_pointed_out(entry: dict) -> None:
    """ConstrainedCoarseDropout cuts only where a mask or boxes say, and blockspec passes
    neither: it trained as no augmentation at all, without a word."""
    name = next(iter(entry))
    assert f"data.augment[0].{name}: changed no image in 8 tries at p = 1 on each of 3 sizes, so it does nothing" in " ".join(
        read_augment([entry]).notes)


@pytest.mark.parametrize("name", ["ToGray", "ChannelShuffle", "ToSepia"])
def test_a_colour_only_transform_on_gray_data_is_pointed_out(name: str) -> None:
    """On one-channel images these change nothing, and albumentations says nothing (ToGray
    warns that the image is already gray, once per process)."""
    entries = [{"HorizontalFlip": {}}, {name: {"p": 0.5}}]
    assert read_augment(entries, channels=1).notes == [
        f"data.augment[1].{name}: changed no image of 1 channel (input.channels) in 8 tries at p = 1 on each of 3 "
        "sizes, though it changes colour images: it acts on colour alone, so it does nothing to this data"]
    assert not read_augment(entries).notes


def test_fractional_pixel_shifts_are_pointed_out_as_whole_pixels() -> None:
    [note] = read_augment([{"Affine": {"translate_px": [-3.5, 3.5]}}]).notes
    assert note == "data.augment[0].Affine.translate_px: shifts are whole pixels drawn between the bounds' integer parts: x -3…3, y -3…3"
    assert not read_augment([{"Affine": {"translate_px": [-3, 3]}}]).notes


@pytest.mark.parametrize(
    "entries",
    [
        [{"HorizontalFlip": {"p": 0.01}}, {"Affine": {"translate_px": [-1, 1]}}, {"RandomRotate90": {}}, {"ColorJitter": {}}],
        # a crop or pad to one size leaves an image of that size as it is: not a transform that does nothing
        [{"PadIfNeeded": {"min_height": 40, "min_width": 40, "border_mode": 4}}, {"RandomCrop": {"height": 32, "width": 32}}],
        [{"PadIfNeeded": {"min_height": 32, "min_width": 32, "border_mode": 0}}, {"RandomCrop": {"height": 28, "width": 28}}],
    ],
)
def test_transforms_that_change_images_get_no_such_note(entries: list) -> None:
    assert not [note for note in read_augment(entries).notes if "changed no image" in note]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"CoarseDropout": {"hole_height_range": [True, 4], "hole_width_range": [2, 4]}},
         "CoarseDropout.hole_height_range = [True, 4]: true/false is not a number"),
        ({"CoarseDropout": {"hole_height_range": [4, 4], "hole_width_range": [4, 4], "fill": 300}},
         "CoarseDropout.fill = 300: a hole's fill is a pixel value of uint8 images, 0–255"),
    ],
)
def test_numbers_no_uint8_image_can_use_are_refused(entry: dict, says: str) -> None:
    """albumentations takes them; the batched path crashed on the boolean (exit 70) and numpy
    refused the fill mid-training with its own words."""
    assert says in _error([entry])


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"CoarseDropout": {"min_holes": 3, "max_holes": 1, "max_height": 4, "max_width": 4}},
         "data.augment[0].CoarseDropout = {'max_holes': 1, 'min_holes': 3}: First value should be less than the second "
         "value, got (3, 1) instead (as num_holes_range, the 2.x translation of min_holes, max_holes)"),
        ({"Affine": {"cval": "grey"}}, "data.augment[0].Affine.cval = 'grey': Input should be"),
        ({"CoarseDropout": {"max_holes": 1, "max_height": 4, "max_width": 4, "fill_value": 300}},
         "data.augment[0].CoarseDropout.fill_value = 300: a hole's fill is a pixel value of uint8 images, 0–255 "
         "(or 'mean') (as fill, the 2.x translation of fill_value)"),
    ],
)
def test_a_problem_in_a_translated_1x_argument_is_named_as_written(entry: dict, says: str) -> None:
    """The 2.x name (num_holes_range, fill) is not in the file, and --set refuses it beside
    the 1.x one."""
    assert says in _error([entry])


def test_a_negative_scale_range_mirrors_and_builds() -> None:
    read_augment([{"Affine": {"scale": [-1.2, -0.8]}}])


@pytest.mark.parametrize(
    ("ranges", "where"),
    [
        ({"hole_height_range": [0.25, 1.0], "hole_width_range": [0.25, 1.0]}, "hole_height_range = [0.25, 1.0]"),
        ({"hole_height_range": [4, 8], "hole_width_range": [0.1, 0.3]}, "hole_width_range = [0.1, 0.3]"),
        ({"hole_height_range": [0.1, 0.3], "hole_width_range": [4, 8]}, "hole_width_range = [4, 8]"),
    ],
)
def test_hole_ranges_albumentations_would_read_in_another_unit_are_refused(ranges: dict, where: str) -> None:
    """Albumentations reads both ranges in pixels when the height's upper end is ≥ 1: these
    would give holes of 0-1 pixel, or none at all, without a word."""
    text = _error([{"CoarseDropout": ranges}])
    assert f"data.augment[0].CoarseDropout.{where}" in text and "write both in pixels, or both as fractions" in text


@pytest.mark.parametrize("side", [[8, 8], [0.25, 0.5]])
def test_hole_ranges_in_one_unit_build(side: list) -> None:
    [dropout] = build_augment([{"CoarseDropout": {"hole_height_range": side, "hole_width_range": side}}], MEAN).transforms
    assert list(dropout.hole_height_range) == side


def test_other_1x_renames() -> None:
    [ssr, crop] = build_augment(
        [
            {"ShiftScaleRotate": {"value": "mean", "border_mode": 0}},
            {"RandomResizedCrop": {"height": 32, "width": 32}},
        ],
        MEAN,
    ).transforms
    assert tuple(ssr.fill) == MEAN_255 and crop.size == (32, 32)


def test_fill_mean() -> None:
    [dropout] = build_augment([{"CoarseDropout": {"fill": "mean"}}], (0.5, 0.25, 1.0)).transforms
    assert tuple(dropout.fill) == (128, 64, 255)


def test_coarse_dropout_blanks_one_16x16_hole_with_the_mean() -> None:
    compose = build_augment([{"CoarseDropout": {**TRIO[2]["CoarseDropout"], "p": 1.0}}], MEAN)
    seed_augment(compose, 0)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image[np.all(image == MEAN_255, axis=2)] = 0  # no pixel may equal the fill by chance
    out = compose(image=image)["image"]
    filled = np.all(out == MEAN_255, axis=2)
    rows, cols = np.nonzero(filled)
    assert filled.sum() == 16 * 16
    assert rows.max() - rows.min() == 15 and cols.max() - cols.min() == 15
    np.testing.assert_array_equal(out[~filled], image[~filled])


def test_unknown_transform_suggests_names() -> None:
    text = _error([{"HorizontalFlip": {}}, {"HorizontalFlp": {"p": 0.5}}])
    assert "data.augment[1] = 'HorizontalFlp'" in text and "did you mean HorizontalFlip" in text
    assert "did you mean HorizontalFlip" in _error([{"horizontalflip": {}}])


@pytest.mark.parametrize(
    "name",
    [
        "Compose",
        "OneOf",
        "__builtins__",
        "core",
        "BasicTransform",
        "DualTransform",
        "CoarseDropout3D",
        "check_version",
    ],
)
def test_albumentations_attributes_that_are_not_image_transforms(name: str) -> None:
    assert f"data.augment[0] = '{name}'" in _error([{name: {}}])


@pytest.mark.parametrize("name", ["Normalize", "ToTensorV2", "ToFloat"])
def test_normalisation_is_blockspecs_job(name: str) -> None:
    assert "normalises each batch" in _error([{name: {}}])


def test_unknown_argument_lists_valid_ones() -> None:
    text = _error([{"CoarseDropout": {"num_holes": 1}}], path="spec.data.augment")
    assert "spec.data.augment[0].CoarseDropout.num_holes = 1" in text
    assert (
        "did you mean num_holes_range" in text
        and "hole_height_range, hole_width_range, fill, fill_mask, p" in text
    )


def test_values_checked_by_albumentations_schema() -> None:
    text = _error([{"CoarseDropout": {"num_holes_range": [3, 1]}}])
    assert "data.augment[0].CoarseDropout.num_holes_range" in text and "(3, 1)" in text
    assert "data.augment[0].HorizontalFlip.p = 2" in _error([{"HorizontalFlip": {"p": 2}}])
    assert "missing required argument(s): height, width" in _error([{"RandomCrop": {}}])


def test_a_value_no_union_member_accepts_is_one_line_at_the_argument() -> None:
    # Affine's translate_percent is a number, a pair or a per-axis mapping: pydantic refuses
    # 'abc' once per member and names each member in its location.
    text = _error([{"Affine": {"translate_percent": "abc"}}])
    assert text == (
        "data.augment[0].Affine.translate_percent = 'abc': Input should be a valid tuple, "
        "or a valid number, unable to parse string as a number, or a valid dictionary"
    )


def test_silent_adjustment_warning_becomes_error() -> None:
    text = _error([{"Blur": {"blur_limit": 4}}])  # albumentations would quietly use (3, 5)
    assert "data.augment[0].Blur" in text and "automatically adjusted" in text


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ("HorizontalFlip", "should be a list"),
        (["HorizontalFlip"], "one-key mapping"),
        ([{"HorizontalFlip": {}, "VerticalFlip": {}}], "one-key mapping"),
        ([{"HorizontalFlip": [0.5]}], "should be a mapping"),
    ],
)
def test_malformed_entries(entries: object, says: str) -> None:
    assert says in _error(entries)


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ([{"PadIfNeeded": {"min_height": 40, "min_width": 40}}, {"RandomCrop": {"height": 32, "width": 32, "p": 0.5}}],
         "with data.augment[1].RandomCrop skipped (p = 0.5), a 32×32×3 uint8 image becomes 40×40×3 uint8"),
        ([{"RandomScale": {"scale_limit": [0.0, 0.04], "p": 1.0}}],
         "a 32×32×3 uint8 image becomes 33×33×3 uint8"),
    ],
)
def test_a_size_kept_only_in_some_draws_is_refused(entries: list, says: str) -> None:
    """One try with every transform at p = 1 passed both; training then stacked images of two
    sizes into one batch and failed mid-run (exit 70), after a random number of steps."""
    assert f"data.augment: does not keep the images' shape: {says}" in _error(entries, image_shape=(32, 32, 3))


def test_a_transform_failing_in_some_draws_is_named_with_them() -> None:
    """The crop fits only when the optional pad applies: it was an internal error (exit 70)."""
    entries = [{"PadIfNeeded": {"min_height": 40, "min_width": 40, "p": 0.5}}, {"RandomCrop": {"height": 36, "width": 36}},
               {"Resize": {"height": 32, "width": 32}}]
    assert ("data.augment[1].RandomCrop: cannot be applied with data.augment[0].PadIfNeeded skipped (p = 0.5), to the "
            "32×32×3 image the list gives it: ") in _error(entries, image_shape=(32, 32, 3))


def test_more_than_eight_optional_size_changes_are_still_tried_skipped() -> None:
    """Only the first eight were: the crop after the pad, the usual culprit, comes last."""
    entries = [*[{"RandomResizedCrop": {"size": [32, 32], "p": 0.5}}] * 8,
               {"PadIfNeeded": {"min_height": 40, "min_width": 40}}, {"RandomCrop": {"height": 32, "width": 32, "p": 0.5}}]
    assert "with data.augment[9].RandomCrop skipped (p = 0.5), a 32×32×3 uint8 image becomes 40×40×3" in _error(
        entries, image_shape=(32, 32, 3))


def test_a_pad_kept_optional_before_a_crop_to_the_size_trains() -> None:
    entries = [{"PadIfNeeded": {"min_height": 40, "min_width": 40, "p": 0.5}}, {"RandomCrop": {"height": 32, "width": 32}}]
    assert len(build_augment(entries, MEAN, image_shape=(32, 32, 3)).transforms) == 2


@pytest.mark.parametrize(
    ("entry", "says"),
    [({"Affine": {"rotate": [float("nan"), 10]}}, "data.augment[0].Affine.rotate = [nan, 10]: must be finite numbers"),
     ({"Affine": {"rotate": [-15, "1e999"]}}, "data.augment[0].Affine.rotate = [-15, '1e999']: must be finite numbers"),
     ({"RandomBrightnessContrast": {"brightness_limit": "inf"}}, "brightness_limit = 'inf': must be finite numbers"),
     ({"Affine": {"translate_percent": {"x": [-0.1, 0.1], "z": 1}}},  # albumentations dropped the z silently
      "data.augment[0].Affine.translate_percent = {'x': [-0.1, 0.1], 'z': 1}: unknown key 'z'; a per-axis range takes x and y"),
     ({"CoarseDropout": {"num_holes_range": [1, 100_000_000]}},
      "data.augment[0].CoarseDropout.num_holes_range = [1, 100000000]: at most 1024 holes, the pixel count of a 32×32")],
)
def test_numbers_no_image_can_use_are_refused(entry: dict, says: str) -> None:
    """A NaN angle trained until the loss became NaN; a hundred million holes hung the check."""
    assert says in _error([entry], image_shape=(32, 32, 3))


@pytest.mark.parametrize(
    ("entry", "shape", "says"),
    [({"CoarseDropout": {"hole_height_range": [4, 4], "hole_width_range": [4, 4], "fill": [1, 2, 3, 4, 5]}}, (32, 32, 3),
      "data.augment[0].CoarseDropout.fill = [1, 2, 3, 4, 5]: one value a channel: the images have 3"),
     ({"CoarseDropout": {"hole_height_range": [4, 4], "hole_width_range": [4, 4], "fill": [255, 0, 0]}}, (16, 16, 1),
      "data.augment[0].CoarseDropout.fill = [255, 0, 0]: one value a channel: the images have 1"),
     ({"Affine": {"translate_percent": [-0.1, 0.1], "fill": [255, 0]}}, (32, 32, 3),
      "data.augment[0].Affine.fill = [255, 0]: one value a channel")],
)
def test_a_fill_of_another_channel_count_is_named_at_the_fill(entry: dict, shape: tuple, says: str) -> None:
    """albumentations' own error named the entry alone."""
    assert says in _error([entry], image_shape=shape)


def test_null_arguments_and_empty_list() -> None:
    assert read_augment([{"HorizontalFlip": None}]).steps == [("HorizontalFlip", {})]
    assert build_augment([], MEAN).transforms == []


def test_dry_run_catches_size_changes_and_missing_targets() -> None:
    assert "data.augment: does not keep the images' shape: a 32×32×3 uint8 image becomes 24×24×3 uint8" in _error(
        [{"RandomCrop": {"height": 24, "width": 24}}], image_shape=(32, 32, 3)
    )
    pad_then_crop = [
        {"PadIfNeeded": {"min_height": 40, "min_width": 40}},
        {"RandomCrop": {"height": 32, "width": 32}},
    ]
    assert len(build_augment(pad_then_crop, MEAN, image_shape=(32, 32, 3)).transforms) == 2
    assert "data.augment[0].BBoxSafeRandomCrop: cannot be applied" in _error(
        [{"BBoxSafeRandomCrop": {}}], image_shape=(32, 32, 3)
    )


def test_seeded_transforms_draw_independently() -> None:
    """One shared stream: two p=0.5 flips must not always fire together (Compose(seed=) does)."""
    compose = build_augment([{"HorizontalFlip": {"p": 0.5}}, {"VerticalFlip": {"p": 0.5}}], MEAN)
    seed_augment(compose, 0)
    image = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)
    outcomes = {compose(image=image)["image"].tobytes() for _ in range(40)}
    assert len(outcomes) == 4


def test_affines_1x_cval_and_mode_become_fill_and_border_mode() -> None:
    [affine] = build_augment([{"Affine": {"translate_px": 2, "cval": 7, "mode": 4}}], (0.5, 0.5, 0.5)).transforms
    assert affine.fill == 7 and affine.border_mode == 4 and affine.interpolation == 1  # 1: the default, linear


def test_a_bad_entry_inside_an_argument_list_is_named_by_its_index() -> None:
    with pytest.raises(SpecError, match=r"^data\.augment\[0\]\.Affine\.translate_px\[1\] = 'a': "):
        read_augment([{"Affine": {"translate_px": [-2, "a"]}}])
