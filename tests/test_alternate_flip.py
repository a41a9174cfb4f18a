"""`data.alternate_flip`: each image's mirroring drawn once, then reversed every epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import metrics, run_cli
from tests.epoch_images import eight_pixel_spec, epoch_images, row_labelled_data
from tests.synthetic import tiny_spec_text, write_colour_folder

COUNT = 40
FLIP_THEN_HOLE = eight_pixel_spec(
    """  alternate_flip: ALTERNATE
  augment:
    - FLIP
    - CoarseDropout: {num_holes_range: [1, 1], hole_height_range: [3, 3], hole_width_range: [3, 3], fill: 0, p: 1.0}
OFF""",
    epochs=4,
)


def _spec(alternate: bool = True, flip: str = "HorizontalFlip: {p: 0.5}", off: str = "") -> str:
    return FLIP_THEN_HOLE.replace("ALTERNATE", str(alternate).lower()).replace("FLIP", flip).replace("OFF", off)


def _mirrored(text: str, loader_kind: str, epoch: int) -> np.ndarray:
    """Per source row, whether the epoch trained it mirrored; checks the hole came after the
    flip and that nothing else changed the image."""
    source = row_labelled_data(COUNT).train_images
    _, seen = epoch_images(text, loader_kind, epoch, COUNT)
    mirrored = np.zeros(COUNT, dtype=bool)
    for row, image in seen:
        holed = (image == 0).all(axis=2)
        assert holed.sum() == 9, (epoch, row)  # one 3×3 hole, wholly inside, on every image
        as_is = np.array_equal(image[~holed], source[row][~holed])
        mirrored[row] = np.array_equal(image[~holed], source[row][:, ::-1][~holed])
        assert as_is != mirrored[row], (epoch, row)
    return mirrored


@pytest.mark.parametrize("loader_kind", ["auto", "albumentations"])
def test_each_image_is_mirrored_every_other_epoch(loader_kind: str) -> None:
    first = _mirrored(_spec(), loader_kind, 1)
    assert 10 <= first.sum() <= 30  # a fair coin per image: 40 images, not all one way
    for epoch in (2, 3, 4):
        assert np.array_equal(_mirrored(_spec(), loader_kind, epoch), first ^ (epoch % 2 == 0)), epoch


def test_both_data_paths_mirror_the_same_images() -> None:
    """The draw depends on the seed and the image, not on the path that applies it."""
    assert np.array_equal(_mirrored(_spec(), "auto", 1), _mirrored(_spec(), "albumentations", 1))


def test_the_random_flip_repeats_an_orientation_in_consecutive_epochs() -> None:
    """What the alternating flip removes: without it, some images keep their orientation."""
    epochs = [_mirrored(_spec(alternate=False), "auto", epoch) for epoch in (1, 2)]
    assert (epochs[0] == epochs[1]).any()


@pytest.mark.parametrize("loader_kind", ["auto", "albumentations"])
def test_switching_the_flip_off_for_the_final_epochs_stops_the_alternation(loader_kind: str) -> None:
    text = _spec(off="  augment_off: {last_epochs: 1, transforms: [HorizontalFlip]}")
    assert _mirrored(text, loader_kind, 3).any()
    assert not _mirrored(text, loader_kind, 4).any()


@pytest.mark.parametrize(
    "flip",
    ["HorizontalFlip: {p: 0.3}", "VerticalFlip: {p: 0.5}", "HorizontalFlip: {p: 0.5, always_apply: true}"],
)
def test_a_spec_whose_first_transform_is_not_a_fair_horizontal_flip_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flip: str
) -> None:
    path = tmp_path / "alternate.yaml"
    path.write_text(_spec(flip=flip))
    code, _, err = run_cli(["check", str(path)], capsys)
    assert code == 2
    assert "alternate.yaml" in err and "data.alternate_flip" in err and "HorizontalFlip with p 0.5" in err, err


def test_a_run_with_it_says_so_and_records_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=1))
    out_dir = tmp_path / "run"
    argv = ["train", str(spec), "--set", "data.alternate_flip=true", "--out", str(out_dir), "--workers", "0"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0
    assert "batched tensor (cpu) augmentation, alternating flip)" in out
    assert "alternate_flip: true" in (out_dir / "spec.yaml").read_text()
    assert len(metrics(out_dir)) == 1


def test_the_path_and_its_note_follow_the_pipeline_the_flip_leaves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With alternate_flip the leading flip leaves the pipeline: a second flip later is the
    pipeline's only one (batched), and a refusal names the entry by its place in the file."""
    data = write_colour_folder(tmp_path / "data")

    def train(augment: str, *flags: str) -> tuple[int, str, str]:
        text = tiny_spec_text(data, epochs=1).replace(
            "    - HorizontalFlip: {p: 0.5}\n", f"{augment}").replace("data:\n", "data:\n  alternate_flip: true\n")
        spec = tmp_path / f"s{len(list(tmp_path.glob('*.yaml')))}.yaml"
        spec.write_text(text)
        return run_cli(["train", str(spec), "--out", str(tmp_path / spec.stem), "--workers", "0", *flags], capsys)

    code, stdout, err = train("    - HorizontalFlip: {p: 0.5}\n    - HorizontalFlip: {p: 0.2}\n")
    assert code == 0 and "batched tensor (cpu) augmentation" in stdout and "per image" not in stdout, err
    code, _, err = train("    - HorizontalFlip: {p: 0.5}\n    - Affine: {rotate: 5, interpolation: 0}\n", "--loader", "gpu")
    assert code == 2 and "data.augment[1].Affine.interpolation = 0: the batched warp is bilinear (1)" in err
