"""What a run's train loader yields in one epoch, image by image, on either data path."""

from __future__ import annotations

import numpy as np

from blockspec.data import ImageData
from blockspec.load import parse_spec
from blockspec.train.data_path import make_run_loaders, seed_epoch
from blockspec.train.device import pick_device
from blockspec.train.distributed import Ranks
from blockspec.train.options import RunOptions


def eight_pixel_spec(data: str, epochs: int) -> str:
    """A one-convolution spec for `row_labelled_data`'s 8×8 images, with the given `data:` body."""
    return f"""
name: epoch
input: {{channels: 3, size: 8}}
classes: 4
blocks:
  C1: [conv: {{out: 4}}]
  output: [gap: {{}}, fc: {{out: 4}}]
data:
{data}
train: {{epochs: {epochs}, batch_size: 8}}
"""


def row_labelled_data(count: int = 20) -> ImageData:
    """8×8 images without a zero pixel (so a hole shows) whose label is their row."""
    images = np.random.default_rng(0).integers(1, 256, size=(count, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64)
    return ImageData(images, labels, images[:4], labels[:4], tuple("abcd"), (0.5,) * 3, (0.25,) * 3)


def epoch_images(
    spec_text: str, loader_kind: str, epoch: int, count: int = 20
) -> tuple[str, list[tuple[int, np.ndarray]]]:
    """(the data path used, [(source row, HWC image as trained)]) for one epoch of a run of
    the spec on `row_labelled_data(count)`, its loaders made afresh as a resumed run makes them."""
    spec = parse_spec(spec_text, "epoch.yaml")
    data = row_labelled_data(count)
    options = RunOptions(workers=2 if loader_kind == "albumentations" else 0, loader=loader_kind)  # real worker processes
    loaders = make_run_loaders(spec, data, options, pick_device("cpu"), Ranks())
    if loaders.switch is not None:
        loaders.switch.apply(loaders.train, epoch)
    seed_epoch(0, epoch, loaders.train)
    seen = [
        (int(label), np.asarray(image).transpose(1, 2, 0))
        for images, labels in loaders.train
        for image, label in zip(images, labels, strict=True)
    ]
    assert sorted(row for row, _ in seen) == list(range(count))
    return loaders.path, seen
