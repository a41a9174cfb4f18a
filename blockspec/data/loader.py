"""Reproducible batches: per-image augmentation on CPU, normalisation per batch on the device.

Batches leave the loader as uint8 (4x less to copy to the GPU than float32) and are turned
into normalised floats by `normalize_batch` where the model runs. Every random choice —
shuffling, augmentation in the main process or in each worker — derives from one seed.
"""

from __future__ import annotations

import atexit
import copy
import functools
import multiprocessing.util  # noqa: F401 (its exit hook registered before ours: ours runs first)
import random
import signal
import sys
import weakref
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass, replace

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

from blockspec.data.augment import seed_augment
from blockspec.data.flip import AlternatingFlip
from blockspec.data.imagedata import ImageData


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed every random draw of an epoch derives from, in process `rank` of a run."""
    return seed * 1_000_003 + epoch + rank * 2**40


@dataclass(frozen=True)
class FinalEpochs:
    """`data.augment_off` on the per-image path: from epoch `first` on, `augment` replaces the
    regular transforms, and the alternating flip stays on only if `flips`."""

    first: int
    augment: A.Compose | None
    flips: bool


class AugmentedDataset(Dataset):
    """uint8 NHWC images and labels; items are (uint8 CHW tensor, label), mirrored by
    `flips` (alternating flip) and then transformed by `augment`.

    A training item is asked for as (epoch, index) (`EpochSampler`): on an epoch's first item
    the data set seeds its augmentation from (`seed`, epoch, `rank`, worker) and applies
    `final`'s switch, in whichever process holds it. DataLoader workers thus persist from epoch
    to epoch while a resumed run still repeats each epoch exactly: started afresh, where they
    start an interpreter (Windows, macOS, Linux from Python 3.14), they took seconds an epoch."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        augment: A.Compose | None = None,
        flips: AlternatingFlip | None = None,
        *,
        seed: int = 0,
        rank: int = 0,
        final: FinalEpochs | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.augment = augment
        self.flips = flips
        self.seed, self.rank = seed, rank
        self.regular, self.final = augment, final
        self.epoch: int | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getstate__(self) -> dict:
        """Pickled for a spawned worker (Windows and macOS start workers so): images
        and labels go as shared-memory tensors, handles of a few bytes, not a copy of the data
        set through each worker's pipe (147 MB of CIFAR-10 a worker; a worker ended by
        Ctrl-C while starting left the main process blocked writing it). Moved there once, the
        data set then reading them there. Not on Linux, where workers fork and nothing is
        pickled; where they do not (Python 3.14's forkserver), a container's 64 MB /dev/shm
        could not hold a data set."""
        if sys.platform.startswith("linux"):
            return self.__dict__
        shared = self.__dict__.get("_shared")
        arrays = (self.images, self.labels)
        if shared is None or not all(map(np.may_share_memory, arrays, (tensor.numpy() for tensor in shared))):
            self._shared = tuple(torch.from_numpy(np.ascontiguousarray(array)).share_memory_() for array in arrays)
            self.images, self.labels = (tensor.numpy() for tensor in self._shared)  # read there from now on
        images, labels = self._shared
        return {**self.__dict__, "images": images, "labels": labels, "_shared": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({name: value.numpy() if isinstance(value, torch.Tensor) else value
                              for name, value in state.items()})

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (None, key)
        if epoch is not None and epoch != self.epoch:
            self._begin(epoch)
        image = self.images[index]
        if self.flips is not None and self.flips.mirrored(index):
            image = np.ascontiguousarray(image[:, ::-1])
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), int(
            self.labels[index]
        )

    def _begin(self, epoch: int) -> None:
        """The epoch's augmentation, flip and random streams; in a worker, a stream of its own."""
        self.epoch = epoch
        switched = self.final is not None and epoch >= self.final.first
        self.augment = self.final.augment if switched else self.regular
        if self.flips is not None:
            self.flips.epoch = epoch
            self.flips.active = not switched or self.final.flips
        value = epoch_seed(self.seed, epoch, self.rank)
        worker = get_worker_info()
        if worker is not None:  # the main process seeds its own globals (`seed_epoch`)
            value = int(np.random.SeedSequence((value, worker.id)).generate_state(1, np.uint64)[0])
            np.random.seed(value % 2**32)
            random.seed(value)
        if self.augment is not None:
            seed_augment(self.augment, value)


def normalize_batch(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [B, C, H, W] → float32 (x / 255 - mean) / std, computed on x's device."""
    m = channel_constant(tuple(255.0 * float(v) for v in mean), x.device)
    s = channel_constant(tuple(255.0 * float(v) for v in std), x.device)
    return (x.float() - m) / s


@functools.lru_cache(maxsize=64)
def channel_constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Per-channel values as a float32 [1, C, 1, 1] tensor on `device`, made once: building
    it from host numbers at every batch would copy to a GPU, and wait for it, every time."""
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, -1, 1, 1)


def make_loaders(
    data: ImageData,
    augment: A.Compose | None,
    batch_size: int,
    workers: int,
    seed: int,
    pin_memory: bool,
    *,
    shard: tuple[int, int] = (0, 1),
    alternate_flip: bool = False,
    final: FinalEpochs | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Shuffled, augmented train batches and ordered, unaugmented test batches.

    Every image of `data` is used (`ImageData.limited` cuts a data set to `--limit-train`
    and `--limit-test`). The last train batch is dropped only if it would hold one image, which BatchNorm cannot train on.
    `augment` and `final`'s are copied, so the caller's Composes keep their own random state. `shard` is
    (rank, world size): each process's share of every epoch's shuffle (see `epoch_sampler`).
    `alternate_flip`: the train set mirrors its images itself (`AlternatingFlip`), `augment`
    holding the remaining transforms; `final`: the last epochs' augmentation, if it changes.
    """
    if augment is not None:
        augment = copy.deepcopy(augment)
        seed_augment(augment, seed)
    if final is not None:
        final = replace(final, augment=copy.deepcopy(final.augment))
    flips = AlternatingFlip(len(data.train_images), seed) if alternate_flip else None
    train_set = AugmentedDataset(data.train_images, data.train_labels, augment, flips, seed=seed, rank=shard[0],
                                 final=final)
    test_set = AugmentedDataset(data.test_images, data.test_labels)
    common = {
        "batch_size": batch_size,
        "num_workers": workers,
        "pin_memory": pin_memory,
        # the training items carry their epoch, which seeds each worker's draws (`AugmentedDataset`)
        "persistent_workers": workers > 0,
        "worker_init_fn": _leave_sigterm if workers > 0 else None,
    }
    sampler = epoch_sampler(train_set, seed, shard)
    train = DataLoader(
        train_set,
        sampler=sampler,
        generator=torch.Generator().manual_seed(seed),
        drop_last=len(sampler) % batch_size == 1,
        **common,
    )
    test = DataLoader(
        test_set, shuffle=False, generator=torch.Generator().manual_seed(seed), **common
    )
    if workers > 0:
        _KEPT.update((train, test))
    return train, test


_KEPT: weakref.WeakSet[DataLoader] = weakref.WeakSet()  # the loaders whose workers persist


def is_worker_death(error: BaseException) -> bool:
    """torch's report of a DataLoader worker process that ended without finishing (killed by
    the system out of memory, or by a person), not an error raised in the worker's code. On
    POSIX torch raises it from its SIGCHLD handler, wherever the main process then is. Or the
    connection a batch's shared memory came through, reset by the worker's end before torch
    saw it had ended (the system closes a process's sockets before it can be reaped: under
    load, torch's check lost that race)."""
    if isinstance(error, RuntimeError):
        return str(error).startswith("DataLoader worker (pid")
    modules = set()
    trace = error.__traceback__
    while trace is not None:
        modules.add(trace.tb_frame.f_globals.get("__name__"))
        trace = trace.tb_next
    return isinstance(error, ConnectionError) and {"torch.utils.data.dataloader", "multiprocessing.connection"} <= modules


def release_workers(*loaders: object) -> None:
    """End the persistent workers of `loaders` (DataLoaders; any other is left as it is) now
    rather than when the loader is collected: idle, a worker still holds memory, and torch
    reports its death wherever the main process is. torch has no public call for it; this is
    the shutdown its iterator runs when collected (which unregisters the workers from torch's
    SIGCHLD handler even when the handler raises in it)."""
    for loader in loaders:
        iterator = getattr(loader, "_iterator", None)
        if isinstance(loader, DataLoader) and iterator is not None:
            loader._iterator = None
            try:
                iterator._shutdown_workers()
            except RuntimeError as error:  # one that ended meanwhile: ended anyway
                if not is_worker_death(error):
                    raise


def _release_at_exit() -> None:
    """multiprocessing's exit hook sends its daemon processes SIGTERM and waits for them
    without a limit; the workers ignore SIGTERM (`_leave_sigterm`), so a loader still reachable
    at exit (a traceback, a global) hung the interpreter. Registered after that hook (imported
    above), this one runs first."""
    release_workers(*list(_KEPT))


atexit.register(_release_at_exit)


class EpochSampler(DistributedSampler):
    """`DistributedSampler`'s indices, each as (epoch, index): the epoch reaches a data set
    wherever it runs, in a worker that `set_epoch` in the main process cannot reach."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch  # the epoch the permutation was drawn for, whatever set_epoch says later
        return ((epoch, index) for index in super().__iter__())


def epoch_sampler(dataset: Sized, seed: int, shard: tuple[int, int]) -> EpochSampler:
    """The training order: a permutation drawn from (seed, epoch) — the same in every
    process — of which process `rank` takes every `world`-th index, so the shares of an epoch
    partition the data and change from epoch to epoch. One process is the `world = 1` case.
    The caller moves it on with `set_epoch`."""
    rank, world = shard
    return EpochSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)


def _leave_sigterm(worker_id: int) -> None:
    """SIGTERM sent to the whole process group (systemd, SLURM's scancel, `kill -- -PGID`)
    would end a worker mid-batch and the run as an internal error; the main process takes it,
    stops after its step, and ends the workers as usual. (OpenCV threads are not touched here:
    calling `cv2.setNumThreads` in a forked child whose parent ran OpenCV's thread pool
    deadlocks, about 1 fork in 10; the package sets it once, in the parent, on import.)"""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
