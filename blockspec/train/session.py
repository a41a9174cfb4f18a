"""The state one training run advances: model, optimizer, schedule, loss, EMA and lookahead, with
the epoch step and the checkpoint round trip."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from blockspec.build import build_model
from blockspec.errors import fail
from blockspec.spec import Spec
from blockspec.train import distributed
from blockspec.train.checkpoint import TrainedOn, restore_rng, rng_state, save_atomic
from blockspec.train.data_path import seed_epoch
from blockspec.train.data_root import RECORD
from blockspec.train.device import DeviceInfo, compile_refusal, graphs_replay_on
from blockspec.train.ema import make_ema
from blockspec.train.init_weights import StartWeights, start_from
from blockspec.train.lookahead import Lookahead
from blockspec.train.loop import Batches, EpochStats, evaluate, train_epoch
from blockspec.train.memory import memory_peaks
from blockspec.train.optim import make_loss, make_optimizer, make_scheduler, steps_per_batch
from blockspec.train.resume import check_same_run
from blockspec.train.step import make_step
from blockspec.train.tta import TTAViews
from blockspec.train.whiten import apply_whitening, stem_conv

def compiled(forward: torch.nn.Module, mode: bool | str) -> torch.nn.Module:
    """`torch.compile` in the spec's mode; modes that replay CUDA graphs get each call marked
    as a new step, so a step's graph may reuse the memory of the last step's outputs."""
    mode = "default" if mode is True else mode
    module = torch.compile(forward, mode=mode)
    return StepMarked(module) if mode in ("reduce-overhead", "max-autotune") else module


class StepMarked(torch.nn.Module):
    """Calls `cudagraph_mark_step_begin` before each forward: the training loop has finished
    with the previous step's outputs (loss and logits) by the time it calls the model again."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.inner(x)


class Session:
    """Model, optimizer, schedule, loss, EMA and lookahead for one spec on one device."""

    def __init__(
        self,
        spec: Spec,
        info: DeviceInfo,
        steps_per_epoch: int,
        ranks: distributed.Ranks,
        trained_on: TrainedOn,
        stem_filters: torch.Tensor | None = None,
        start: StartWeights | None = None,
        *,
        train_images: int,
        data_root: dict[str, str],
    ) -> None:
        """`trained_on`: the data set's classes and statistics, recorded in every checkpoint,
        with `data_root` (`root_record`) and `train_images`, how many training images the
        data set holds before any limit (a resume checks it);
        `stem_filters`: `train.whiten_stem`'s first-layer filters (None when resuming);
        `start`: weights to start from (`--init-from`), said in `start_report`."""
        self.spec, self.info, self.ranks = spec, info, ranks
        self.trained_on = trained_on
        self.train_images = train_images
        self.data_root = data_root
        self.steps_per_epoch = steps_per_epoch
        torch.manual_seed(spec.train.seed)
        model = build_model(spec)
        if spec.train.whiten_stem:
            apply_whitening(model, spec, stem_filters)
        self.start_report = start_from(model, start, _whitened(model, spec)) if start is not None else ""
        model = info.place(model)
        self.model = model
        self.graphed = spec.train.cuda_graphs and graphs_replay_on(info) and not ranks.active
        self.optimizer = make_optimizer(spec, model, device_rates=self.graphed)
        self.scheduler = make_scheduler(spec, self.optimizer, steps_per_epoch)
        self.loss_fn = make_loss(spec)
        self.ema = make_ema(model, spec.train.ema) if spec.train.ema else None
        self.lookahead = (
            Lookahead(model, spec.train.lookahead, spec.train.epochs * steps_per_epoch)
            if spec.train.lookahead
            else None
        )
        forward: torch.nn.Module = model
        if ranks.active:
            ids = [info.device.index] if info.is_cuda else None
            forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if spec.train.compile and compile_refusal(info) is None:
            forward = compiled(forward, spec.train.compile)
        self.step = make_step(
            forward, model, self.loss_fn, self.optimizer, self.ema, self._autocast, self.graphed
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        """The device's autocast, without its cast cache when steps are captured as graphs."""
        return self.info.autocast(cache=not self.graphed)

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def run_epoch(
        self, epoch: int, train_loader: Any, test_loader: Any, batches: Batches, check_stop: Callable[[], None]
    ) -> tuple[dict[str, Any], Any]:
        """One epoch of training and its evaluation; `check_stop` runs after every step."""
        seed_epoch(self.spec.train.seed, epoch, train_loader, self.ranks.rank)

        def after_step() -> None:
            if self.lookahead is not None:
                self.lookahead.after_step()
            if self.scheduler is not None and steps_per_batch(self.spec):
                self.scheduler.step()
            check_stop()

        stats = train_epoch(
            self.model,
            self.step,
            train_loader,
            batches,
            self.optimizer,
            after_step,
            f"epoch {epoch}/{self.spec.train.epochs}",
            len(train_loader),
        )
        if self.lookahead is not None:
            self.lookahead.end_epoch()
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
            "lookahead": self.lookahead.state_dict() if self.lookahead is not None else {},
        }

    def save(
        self, target: Path, epoch: int, history: list[dict[str, Any]], run_options: dict[str, Any]
    ) -> None:
        """Everything `--resume` needs to continue exactly: `run_options` are the options that
        shape the run (its data limits and loader), which a resumed run restores."""
        save_atomic(
            {
                **self.state(),
                "spec": self.spec.to_yaml(),
                **self.trained_on.record(),
                RECORD: self.data_root,
                "train_images": self.train_images,
                "run_options": run_options,
                "steps_per_epoch": self.steps_per_epoch,
                "processes": self.ranks.world,
                "epoch": epoch,
                "history": history,
                "rng": rng_state(),
            },
            target,
        )

    def save_best(self, target: Path, epoch: int) -> None:
        """best.pt holds the weights that were evaluated (the EMA ones when EMA is on)."""
        save_atomic(
            {"model": self.eval_model.state_dict(), "spec": self.spec.to_yaml(), **self.trained_on.record(),
             RECORD: self.data_root, "epoch": epoch},
            target,
        )

    def restore(self, checkpoint: dict[str, Any]) -> None:
        check_same_run(checkpoint, self.train_images, self.trained_on, self.ranks.world, self.steps_per_epoch,
                       self.spec.data.root)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        if self.lookahead is not None:
            self.lookahead.load_state_dict(checkpoint["lookahead"])
        restore_rng(checkpoint["rng"])


def _whitened(model: torch.nn.Module, spec: Spec) -> dict[str, str]:
    """The first layer's kernel, when `whiten_stem` set it from this run's data: a checkpoint's,
    whitened on other data or trained away from it, is not what the spec asks for."""
    if not spec.train.whiten_stem:
        return {}
    kernel = stem_conv(model).weight
    name = next(name for name, value in model.named_parameters() if value is kernel)
    return {name: f"the patch whitening of this run's data, train.whiten_stem: {spec.train.whiten_stem}"}
