"""`data.augment_off`: the final epochs train with some transforms (or all) switched off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import metrics, run_cli, without_timing
from tests.epoch_images import eight_pixel_spec, epoch_images, row_labelled_data
from tests.synthetic import tiny_spec_text, write_colour_folder

FLIP_AND_HOLE = eight_pixel_spec(
    """  augment:
    - HorizontalFlip: {p: 1.0}
    - CoarseDropout: {num_holes_range: [1, 1], hole_height_range: [3, 3], hole_width_range: [3, 3], fill: 0, p: 1.0}
  augment_off: OFF""",
    epochs=3,
)


def _epoch_images(off: str, loader_kind: str, epoch: int) -> tuple[str, list[tuple[int, np.ndarray]]]:
    return epoch_images(FLIP_AND_HOLE.replace("OFF", off), loader_kind, epoch)


@pytest.mark.parametrize("loader_kind", ["auto", "albumentations"])
def test_the_named_transform_stops_in_the_final_epochs_and_the_others_go_on(loader_kind: str) -> None:
    source = row_labelled_data().train_images
    for epoch, hole_expected in ((1, True), (2, True), (3, False)):
        path, seen = _epoch_images("{last_epochs: 1, transforms: [CoarseDropout]}", loader_kind, epoch)
        assert ("batched" in path) == (loader_kind == "auto")
        for row, image in seen:
            flipped = source[row][:, ::-1]
            holed = (image == 0).all(axis=2)
            assert holed.any() == hole_expected, (epoch, row)
            assert np.array_equal(image[~holed], flipped[~holed]), (epoch, row)  # the flip goes on


@pytest.mark.parametrize("loader_kind", ["auto", "albumentations"])
def test_without_a_list_every_transform_stops(loader_kind: str) -> None:
    source = row_labelled_data().train_images
    _, seen = _epoch_images("{last_epochs: 2}", loader_kind, 1)
    assert not any(np.array_equal(image, source[row]) for row, image in seen)
    for epoch in (2, 3):
        _, seen = _epoch_images("{last_epochs: 2}", loader_kind, epoch)
        assert all(np.array_equal(image, source[row]) for row, image in seen)


@pytest.mark.parametrize(
    ("off", "message"),
    [
        ("{last_epochs: 1, transforms: [Cutout]}", "transforms[0] = 'Cutout' is not in data.augment (its transforms: HorizontalFlip, CoarseDropout)"),
        ("{last_epochs: 0}", "data.augment_off.last_epochs = 0"),
        ("{last_epochs: 1, transforms: []}", "data.augment_off.transforms = []"),
        ("{transforms: [HorizontalFlip]}", "data.augment_off.last_epochs"),
        ("{last_epochs: 1, transform: [HorizontalFlip]}", "did you mean 'transforms'"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], off: str, message: str) -> None:
    path = tmp_path / "switch.yaml"
    path.write_text(FLIP_AND_HOLE.replace("OFF", off))
    code, _, err = run_cli(["check", str(path)], capsys)
    assert code == 2
    assert "switch.yaml" in err and message in err, err


def test_check_tries_the_list_the_final_epochs_train_with(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pad and a crop back to the size keep it; switching the crop off leaves the pad alone.
    `check` passed it and training refused it, blaming `data.augment`, whose full list is fine."""
    path = tmp_path / "pad.yaml"
    path.write_text(eight_pixel_spec("""  augment:
    - PadIfNeeded: {min_height: 12, min_width: 12}
    - RandomCrop: {height: 8, width: 8}
  augment_off: {last_epochs: 1, transforms: [RandomCrop]}""", epochs=3))
    code, _, err = run_cli(["check", str(path)], capsys)
    assert code == 2, err
    assert ("pad.yaml: data.augment without RandomCrop (data.augment_off): does not keep the images' shape: a 8×8×3 "
            "uint8 image becomes 12×12×3 uint8") in err


def test_a_run_changes_only_from_the_switch_epoch_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Against the same run without the switch: epochs before it are identical, the last differs."""
    data_root = write_colour_folder(tmp_path / "data")
    text = tiny_spec_text(data_root, epochs=3)
    plain, switched = tmp_path / "plain.yaml", tmp_path / "switched.yaml"
    plain.write_text(text)
    switched.write_text(text.replace("train:\n", "  augment_off: {last_epochs: 1, transforms: [CoarseDropout]}\ntrain:\n"))
    results = []
    for spec in (plain, switched):
        code, out, _ = run_cli(["train", str(spec), "--out", str(tmp_path / spec.stem), "--workers", "0"], capsys)
        assert code == 0
        results.append(without_timing(metrics(tmp_path / spec.stem)))
    assert "epochs 3–3 without CoarseDropout" in out
    assert results[0][:2] == results[1][:2]
    assert results[0][2] != results[1][2]
