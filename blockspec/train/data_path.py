"""Where a run's batches come from: the batched tensor path or per-image albumentations, the
per-epoch seeding that makes either repeat exactly after `--resume`, and the check that the
data set has the images and classes the spec expects."""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blockspec.data import (
    AugmentPlan,
    ImageData,
    build_augment,
    make_loaders,
    read_augment,
)
from blockspec.data.batched_plan import UNBATCHED, BatchedPlan, plan_batched, plan_for_loader, unbatched_note
from blockspec.data.device_loader import DeviceLoader
from blockspec.data.flip import split_flip
from blockspec.data.loader import FinalEpochs, epoch_seed
from blockspec.errors import fail
from blockspec.spec import Spec
from blockspec.train import distributed
from blockspec.train.device import DeviceInfo
from blockspec.train.options import RunOptions


@dataclass(frozen=True)
class RunLoaders:
    """The run's batches, the data path's name for the log, and the final epochs' augmentation;
    `unbatched` notes why the spec's augmentation has no batched equivalent, if it has none."""

    train: Any
    test: Any
    path: str
    switch: AugmentSwitch | None
    unbatched: str | None


@dataclass(frozen=True)
class AugmentSwitch:
    """`data.augment_off`: from epoch `first` on, the train loader applies `final` instead of
    `regular` (Composes on the albumentations path; batched plans, or None, on the other),
    and an alternating flip goes on only if `final_flips`."""

    first: int
    regular: Any
    final: Any
    final_flips: bool
    description: str

    def apply(self, loader: Any, epoch: int) -> None:
        """The batched path switches here, before the epoch; the per-image path's data set
        switches itself, by the epoch its items carry (`FinalEpochs`), in whichever worker."""
        if not isinstance(loader, DeviceLoader):
            return
        loader.plan = self.final if epoch >= self.first else self.regular
        if loader.dataset.flips is not None:
            loader.dataset.flips.active = epoch < self.first or self.final_flips


def make_run_loaders(
    spec: Spec, data: ImageData, options: RunOptions, info: DeviceInfo, ranks: distributed.Ranks
) -> RunLoaders:
    """Batched tensor augmentation on the device when the spec's transforms allow it
    (`--loader auto`), else per-image albumentations in DataLoader workers."""
    pipeline = training_pipeline(spec)
    plan = plan_for_loader(pipeline.augment, options.loader)
    crowded = _crowds_the_gpu(data, info) if plan is not None else None
    if plan is not None and ranks.active and distributed.any_rank(crowded is not None, ranks, info.device):
        crowded = crowded or "the data set would crowd another process's GPU"  # every process takes one path
    if crowded and options.loader == "gpu":
        raise fail("--loader", f"{crowded}; use --loader albumentations", "gpu")
    if crowded:
        plan = None
    # albumentations tries each transform once on an image of the data's shape whichever path
    # trains, so arguments it refuses (a fill for no channel count, a hole larger than the
    # image) stop both paths before training
    compose = pipeline.compose(data.mean, data.train_images.shape[1:])
    switch = _augment_switch(spec, data, plan, compose)
    train, test, path = _make_loaders(spec, data, plan, compose, pipeline.alternate, options, info, ranks, switch)
    note = f"{UNBATCHED}: {crowded}" if crowded else None
    return RunLoaders(train, test, path, switch, note or unbatched_note(pipeline.augment))


def _crowds_the_gpu(data: ImageData, info: DeviceInfo) -> str | None:
    """Why the batched path would not hold the data set on this GPU, or None: its images may
    take at most half the memory free (the network's training takes the rest); past that a
    4 GB GPU ran out of memory before the first step, blaming the batch size."""
    if not info.is_cuda:
        return None
    size = data.train_images.nbytes + data.test_images.nbytes
    free, _ = torch.cuda.mem_get_info(info.device)
    if size <= free / 2:
        return None
    return (f"the data set's images ({size / 2**30:,.2f} GiB as uint8) would take more than half of the "
            f"{free / 2**30:,.2f} GiB free on the GPU")


def first_switched_epoch(spec: Spec) -> int | None:
    """The first epoch trained under `data.augment_off` (None without it); the run and
    benchmarks/branch_run.py (which must branch before it) read it from here."""
    off = spec.data.augment_off
    return None if off is None else max(1, spec.train.epochs - off.last_epochs + 1)


def _augment_switch(spec: Spec, data: ImageData, plan: BatchedPlan | None, compose: Any) -> AugmentSwitch | None:
    """The final epochs' augmentation: data.augment less what `data.augment_off` names
    (everything when it names nothing), in the form the train loader's path applies: batched
    after `plan`, else an albumentations Compose after `compose`."""
    first = first_switched_epoch(spec)
    if first is None:
        return None
    names = spec.data.augment_off.transforms
    final = training_pipeline(spec, left_out=names)
    description = f"epochs {first}–{spec.train.epochs} without {', '.join(names) if names else 'augmentation'}"
    if plan is not None:
        return AugmentSwitch(first, plan, plan_batched(final.augment), final.alternate, description)
    final_compose = final.compose(data.mean, data.train_images.shape[1:])
    return AugmentSwitch(first, compose, final_compose, final.alternate, description)


@dataclass(frozen=True)
class Pipeline:
    """The augmentation a training loader applies: the entries, their positions in
    `data.augment` (errors and notes name those), whether the data set flips the images
    itself (`alternate_flip` takes the leading HorizontalFlip out of the pipeline), and the
    entries as checked."""

    entries: list[Any]
    positions: list[int]
    alternate: bool
    augment: AugmentPlan
    name: str = "data.augment"  # the list, as errors about all of it name it

    def compose(self, mean: tuple[float, ...], image_shape: tuple[int, int, int]) -> Any:
        """The albumentations Compose, each transform tried on an image of `image_shape`."""
        return build_augment(self.entries, mean, image_shape=image_shape, positions=self.positions, whole=self.name)


def training_pipeline(spec: Spec, left_out: Collection[str] | None = ()) -> Pipeline:
    """The pipeline training applies; `left_out`: transform names to drop (None: all), as
    `data.augment_off` drops them in the final epochs. `train`, `check` and `preview-augment`
    all plan from this one list."""
    numbered = [(position, entry) for position, entry in enumerate(spec.data.augment)
                if left_out is not None and next(iter(entry)) not in left_out]
    entries, flips = split_flip([entry for _, entry in numbered], spec.data.alternate_flip)
    positions = [position for position, _ in numbered][len(numbered) - len(entries):]
    name = f"data.augment without {', '.join(left_out)} (data.augment_off)" if left_out else "data.augment"
    return Pipeline(entries, positions, flips, read_augment(entries, positions=positions, channels=spec.input.channels), name)


def _make_loaders(
    spec: Spec, data: ImageData, plan: BatchedPlan | None, compose: Any, alternate: bool, options: RunOptions,
    info: DeviceInfo, ranks: distributed.Ranks, switch: AugmentSwitch | None,
) -> tuple[Any, Any, str]:
    """The batched path where `plan` is one, else `compose` per image in DataLoader workers;
    `alternate`: the data set flips the images itself; `switch`: the final epochs' change."""
    if plan is None:
        final = None if switch is None else FinalEpochs(switch.first, switch.final, switch.final_flips)
        train, test = make_loaders(
            data, compose, spec.train.batch_size, options.workers, spec.train.seed,
            info.pin_memory, shard=(ranks.rank, ranks.world), alternate_flip=alternate, final=final,
        )
        return train, test, "per-image albumentations"
    batch = spec.train.batch_size
    train = DeviceLoader(
        data.train_images, data.train_labels, batch, info.device,
        plan, data.mean, shuffle=True, seed=spec.train.seed, shard=(ranks.rank, ranks.world),
        alternate_flip=alternate,
    )
    test = DeviceLoader(
        data.test_images, data.test_labels, max(batch, 512), info.device,
        None, data.mean, shuffle=False, seed=0,
    )
    return train, test, f"batched tensor ({info.device.type})"


def seed_epoch(seed: int, epoch: int, loader: Any, rank: int = 0) -> None:
    """Every random draw of an epoch derives from (seed, epoch), so a resumed run repeats
    exactly what the uninterrupted one would have done. The order of the images is shared
    by all processes (each takes its share); augmentation draws differ per process (the
    per-image path's data set seeds its own, from the epoch its items carry)."""
    loader.sampler.set_epoch(epoch)
    value = epoch_seed(seed, epoch, rank)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)
    loader.generator.manual_seed(value)


def check_data_fits(spec: Spec, data: ImageData, trained: bool = False) -> None:
    """The data's image shape and class count are the spec's; `trained`: the spec's weights
    exist (eval), so the data must change, not the spec."""
    expected = (spec.input.channels, *spec.input.hw)
    remedy = "give data of the checkpoint's own shape" if trained else "change `input` (channels, size) or the data set"
    for split, images in (("train", data.train_images), ("test", data.test_images)):
        if not len(images):  # eval of a test set alone has no train images
            continue
        found = (images.shape[3], *images.shape[1:3])
        if expected != found:
            why = f" ({data.colour_note})" if expected[0] == 1 and found[0] == 3 and data.colour_note else ""
            raise fail(
                "input",
                f"the spec expects {'×'.join(map(str, expected))} images but the {split} images of data set "
                f"'{spec.data.dataset}' are {'×'.join(map(str, found))}{why}; {remedy}",
            )
    if spec.classes != len(data.classes):
        found = f"data set '{spec.data.dataset}' has {len(data.classes)} classes"
        remedy = (f"give data of the checkpoint's {spec.classes} classes" if trained
                  else f"set `classes` and the last layer's `out` to {len(data.classes)}")
        raise fail("classes", f"{found}; {remedy}", spec.classes)
