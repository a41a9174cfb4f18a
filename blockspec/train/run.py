"""A training run from start (or `--resume`) to finish, with its directory of artefacts.

Order of writes at each epoch end: best.pt, then last.pt (which carries the metric
history), then metrics/summary/curves rewritten from that history. A SIGKILL at any
moment therefore leaves a consistent last.pt, and resuming never loses or doubles an epoch.
"""

from __future__ import annotations

import math
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blockspec.analysis import trace
from blockspec.build import build_model
from blockspec.data import AugmentPlan, ImageData, build_augment, load_dataset, make_loaders, read_augment, seed_augment
from blockspec.data.batched import DeviceLoader, plan_batched
from blockspec.data.loader import subset_rows
from blockspec.errors import fail
from blockspec.load import parse_spec
from blockspec.spec import Spec
from blockspec.train.checkpoint import load_checkpoint, restore_rng, rng_state, save_atomic
from blockspec.train import distributed
from blockspec.train.device import DeviceInfo, pick_device
from blockspec.train.ema import make_ema
from blockspec.train.loop import Batches, EpochStats, evaluate, train_epoch
from blockspec.train.optim import (
    make_loss,
    make_optimizer,
    make_scheduler,
    momentum_summary,
    peak_lr,
    steps_per_batch,
)
from blockspec.train.plots import plot_confusion, plot_curves, plot_misclassified
from blockspec.train.tta import TTAViews
from blockspec.train.records import summarize_history, write_metrics, write_summary, write_text_atomic
from blockspec.train.rundir import (
    check_room_for_run,
    check_run_dir_free,
    checkpoint_dir,
    disk_errors_reported,
    prepare_run_dir,
)


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what to train (that is the spec)."""

    device: str = "auto"
    workers: int = 2
    loader: str = "auto"
    out: Path | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    resume: Path | None = None
    stop_at_target: bool = False  # time-to-accuracy runs: end after the first epoch at the target


class TrainingInterrupted(Exception):
    """Ctrl-C: last.pt holds the last complete epoch; the CLI exits with 130."""


def train(spec: Spec | None, options: RunOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train `spec` (or resume `options.resume`) and return the run summary."""
    checkpoint = load_checkpoint(options.resume) if options.resume else None
    if checkpoint is not None:
        spec = parse_spec(checkpoint["spec"], source=f"{options.resume} (spec inside)")
    assert spec is not None
    ranks = distributed.from_environment()
    if not ranks.main:
        log = _silent
    if checkpoint is None and options.out is not None:
        check_run_dir_free(options.out)
    info = pick_device(distributed.device_for(options.device, ranks), spec.train.amp, spec.train.channels_last)
    distributed.start(ranks, info.device)
    plan = read_augment(spec.data.augment)
    for note in plan.notes:
        log(f"note: {note}")
    data = load_dataset(spec.data.dataset, spec.data.root)
    check_data_fits(spec, data)
    train_loader, test_loader, path_used = make_run_loaders(spec, data, plan, options, info, ranks)
    if checkpoint is not None:
        run_dir = checkpoint_dir(options.resume)
    elif ranks.main:
        run_dir = prepare_run_dir(options.out, spec.name)
    else:
        run_dir = options.out or Path("runs") / spec.name  # never written by this rank
    session = Session(spec, info, len(train_loader), ranks)
    history: list[dict[str, Any]] = []
    if checkpoint is not None:
        session.restore(checkpoint)
        history = list(checkpoint["history"])
        log(f"resuming {run_dir} after epoch {checkpoint['epoch']}")
    elif ranks.main:
        write_text_atomic(run_dir / "spec.yaml", spec.to_yaml())
    analysis = trace(spec)
    log(
        f"{spec.name}: {analysis.total_params:,} parameters, receptive field "
        f"{analysis.receptive_field}, on {info.describe()}"
        + (f" × {ranks.world} processes (DDP)" if ranks.active else "")
        + f"; batch {spec.train.batch_size}, lr {peak_lr(spec):g}"
        + (f", {momentum}" if (momentum := momentum_summary(spec)) else "")
        + f"; {len(train_loader.dataset):,} train / "
        f"{len(test_loader.dataset):,} test images ({spec.data.dataset}, {path_used} "
        f"augmentation); run dir {run_dir}"
    )
    batches = Batches(info, data.mean, data.std)
    last_eval = None
    start = len(history) + 1
    if ranks.main and not (run_dir / "last.pt").exists():
        with disk_errors_reported(run_dir, "write the first checkpoint", None):
            session.save(run_dir / "last.pt", epoch=0, history=history)
        check_room_for_run(run_dir)
    try:
        for epoch in range(start, spec.train.epochs + 1):
            record, last_eval = session.run_epoch(epoch, train_loader, test_loader, batches)
            history.append(record)
            reached = options.stop_at_target and record["test_acc"] >= spec.train.target
            if not ranks.main:
                if reached:  # every rank evaluates the same summed accuracy, so all stop here
                    break
                continue
            with disk_errors_reported(run_dir, f"save epoch {epoch}", epoch - 1):
                if max(r["test_acc"] for r in history) == record["test_acc"]:
                    session.save_best(run_dir / "best.pt", epoch)
                session.save(run_dir / "last.pt", epoch=epoch, history=history)
            with disk_errors_reported(run_dir, f"write the metrics and plots of epoch {epoch}", epoch):
                write_metrics(run_dir, history)
                write_summary(run_dir, run_summary(spec, history, info))
                plot_curves(history, run_dir / "curves.png")
            log(epoch_line(record, spec.train.epochs))
            if reached:
                log(f"stopping: the target {spec.train.target:g}% is reached (--stop-at-target)")
                break
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted; {run_dir / 'last.pt'} holds epoch {len(history)}. "
            f"Resume with: blockspec train --resume {run_dir}"
        ) from None
    if last_eval is None:
        last_eval = evaluate(session.eval_model, test_loader, batches, session.loss_fn, TTAViews.of(spec.train))
    if not ranks.main:
        distributed.stop(ranks)
        return run_summary(spec, history, info)
    test_images = test_loader.dataset.images
    plot_misclassified(test_images, last_eval.labels, last_eval.predictions, data.classes, run_dir / "misclassified.png")
    plot_confusion(last_eval.labels, last_eval.predictions, data.classes, run_dir / "confusion.png")
    summary = run_summary(spec, history, info)
    write_summary(run_dir, summary)
    reached = summary["target_epoch"]
    log(
        f"best test accuracy {summary['best_test_acc']:.2f}% at epoch {summary['best_epoch']}; "
        + (f"target {spec.train.target:g}% first reached at epoch {reached}" if reached else f"target {spec.train.target:g}% not reached")
        + f"; artefacts in {run_dir}"
    )
    distributed.stop(ranks)
    return summary


class Session:
    """Model, optimizer, schedule, loss and EMA for one spec on one device."""

    def __init__(self, spec: Spec, info: DeviceInfo, steps_per_epoch: int, ranks: distributed.Ranks) -> None:
        self.spec, self.info, self.ranks = spec, info, ranks
        torch.manual_seed(spec.train.seed)
        model = build_model(spec).to(info.device)
        if info.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = make_optimizer(spec, model)
        self.scheduler = make_scheduler(spec, self.optimizer, steps_per_epoch)
        self.loss_fn = make_loss(spec)
        self.ema = make_ema(model, spec.train.ema) if spec.train.ema else None
        forward: torch.nn.Module = model
        if ranks.active:
            ids = [info.device.index] if info.is_cuda else None
            forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.forward = torch.compile(forward) if spec.train.compile and info.is_cuda else forward

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def after_step(self) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        if self.scheduler is not None and steps_per_batch(self.spec):
            self.scheduler.step()

    def run_epoch(self, epoch: int, train_loader: Any, test_loader: Any, batches: Batches) -> tuple[dict[str, Any], Any]:
        seed_epoch(self.spec.train.seed, epoch, train_loader, self.ranks.rank)
        stats = train_epoch(
            self.forward,
            train_loader,
            batches,
            self.optimizer,
            self.loss_fn,
            self.after_step,
            f"epoch {epoch}/{self.spec.train.epochs}",
            len(train_loader),
        )
        stats = self._over_ranks(stats)
        if not math.isfinite(stats.loss):
            raise fail(
                "train",
                f"the training loss became {stats.loss} in epoch {epoch}; the run stopped and "
                "last.pt keeps the last good epoch (lower the learning rate?)",
            )
        started = time.perf_counter()
        result = evaluate(self.eval_model, test_loader, batches, self.loss_fn, TTAViews.of(self.spec.train))
        if self.scheduler is not None and not steps_per_batch(self.spec):
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(result.acc)
            else:
                self.scheduler.step()
        record = {
            "epoch": epoch,
            "train_loss": round(stats.loss, 5),
            "train_acc": round(stats.acc, 3),
            "test_loss": round(result.loss, 5),
            "test_acc": round(result.acc, 3),
            "lr": stats.lr,
            "seconds": round(stats.seconds + time.perf_counter() - started, 3),
            "images_per_second": round(stats.images_per_second, 1),
            **memory_peaks(self.info),
        }
        return record, result

    def _over_ranks(self, stats: EpochStats) -> EpochStats:
        """Loss, accuracy and images of the whole step, not just this rank's share."""
        if not self.ranks.active:
            return stats
        loss_sum, correct, images = distributed.sum_over_ranks(
            [stats.loss * stats.images, stats.acc * stats.images / 100, stats.images],
            self.ranks,
            self.info.device,
        )
        return EpochStats(loss_sum / images, 100 * correct / images, int(images), stats.seconds, stats.lr)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "ema": self.ema.state_dict() if self.ema is not None else {},
        }

    def save(self, target: Path, epoch: int, history: list[dict[str, Any]]) -> None:
        save_atomic(
            {**self.state(), "spec": self.spec.to_yaml(), "epoch": epoch, "history": history, "rng": rng_state()},
            target,
        )

    def save_best(self, target: Path, epoch: int) -> None:
        """best.pt holds the weights that were evaluated (the EMA ones when EMA is on)."""
        save_atomic({"model": self.eval_model.state_dict(), "spec": self.spec.to_yaml(), "epoch": epoch}, target)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        restore_rng(checkpoint["rng"])


def make_run_loaders(
    spec: Spec, data: ImageData, augment: AugmentPlan, options: RunOptions, info: DeviceInfo, ranks: distributed.Ranks
) -> tuple[Any, Any, str]:
    """Batched tensor augmentation on the device when the spec's transforms allow it
    (`--loader auto`), else per-image albumentations in DataLoader workers."""
    plan = plan_batched(augment)
    if options.loader == "gpu" and plan is None:
        raise fail(
            "--loader",
            "the spec's augmentation has no batched equivalent (supported: HorizontalFlip, "
            "Affine or ShiftScaleRotate without shear, CoarseDropout with pixel sizes); "
            "use --loader albumentations",
            options.loader,
        )
    if options.loader == "albumentations" or plan is None:
        augment = build_augment(spec.data.augment, data.mean, image_shape=data.train_images.shape[1:])
        train, test = make_loaders(
            data, augment, spec.train.batch_size, options.workers, spec.train.seed,
            info.pin_memory, options.limit_train, options.limit_test, (ranks.rank, ranks.world),
        )
        return train, test, "per-image albumentations"
    train_rows = subset_rows(len(data.train_labels), options.limit_train, "--limit-train")
    test_rows = subset_rows(len(data.test_labels), options.limit_test, "--limit-test")
    batch = spec.train.batch_size
    train = DeviceLoader(
        data.train_images[train_rows], data.train_labels[train_rows], batch, info.device,
        plan, data.mean, shuffle=True, seed=spec.train.seed, shard=(ranks.rank, ranks.world),
    )
    test = DeviceLoader(
        data.test_images[test_rows], data.test_labels[test_rows], max(batch, 512), info.device,
        None, data.mean, shuffle=False, seed=0,
    )
    return train, test, f"batched tensor ({info.device.type})"


def _silent(message: str) -> None:
    """Ranks other than 0 say nothing; rank 0 speaks for the run."""


def seed_epoch(seed: int, epoch: int, loader: Any, rank: int = 0) -> None:
    """Every random draw of an epoch derives from (seed, epoch), so a resumed run repeats
    exactly what the uninterrupted one would have done. The order of the images is shared
    by all processes (each takes its share); augmentation draws differ per process."""
    loader.sampler.set_epoch(epoch)
    value = seed * 1_000_003 + epoch + rank * 2**40
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)
    loader.generator.manual_seed(value)
    if loader.dataset.augment is not None:
        seed_augment(loader.dataset.augment, value)


def check_data_fits(spec: Spec, data: ImageData) -> None:
    expected = (spec.input.channels, *spec.input.hw)
    found = (data.train_images.shape[3], *data.train_images.shape[1:3])
    if expected != found:
        raise fail(
            "input",
            f"the spec expects {'×'.join(map(str, expected))} images but data set "
            f"'{spec.data.dataset}' has {'×'.join(map(str, found))}; change `input` "
            "(channels, size) or the data set",
        )
    if spec.classes != len(data.classes):
        raise fail(
            "classes",
            f"data set '{spec.data.dataset}' has {len(data.classes)} classes; the spec says",
            spec.classes,
        )


def run_summary(spec: Spec, history: list[dict[str, Any]], info: DeviceInfo) -> dict[str, Any]:
    """The run at a glance. Memory peaks are the highest any epoch recorded, so a run resumed
    in a new process still reports the peak of the processes before it."""
    summary = summarize_history(history, spec.train.target)
    summary["device"] = info.describe()
    for key, now in memory_peaks(info).items():
        recorded = [value for value in (*(r.get(key) for r in history), now) if value is not None]
        summary[key] = max(recorded, default=None)
    return summary


def memory_peaks(info: DeviceInfo) -> dict[str, float | None]:
    """This process's peak resident host memory and peak allocated GPU memory so far, in MB."""
    gpu = round(torch.cuda.max_memory_allocated(info.device) / 2**20, 1) if info.is_cuda else None
    return {"peak_host_memory_mb": round(_peak_rss_mb(), 1), "peak_gpu_memory_mb": gpu}


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    return (
        f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} "
        f"acc {record['train_acc']:6.2f}%  test loss {record['test_loss']:.4f} "
        f"acc {record['test_acc']:6.2f}%  lr {record['lr']:.5f}  "
        f"{record['images_per_second']:,.0f} img/s  {record['seconds']:.1f} s"
    )


__all__ = ["RunOptions", "TrainingInterrupted", "train"]
