"""One training epoch and one evaluation pass; no files, no printing beyond the bar."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from blockspec.data import normalize_batch
from blockspec.progress import BAR_FORMAT, Bar
from blockspec.train.device import DeviceInfo
from blockspec.train.step import Step
from blockspec.train.tta import TTAViews


@dataclass(frozen=True)
class EpochStats:
    loss: float
    acc: float
    images: int
    seconds: float
    lr: float  # the rate of the epoch's last update, not the one a per-batch schedule moved on to

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Evaluation:
    loss: float
    acc: float
    predictions: np.ndarray
    labels: np.ndarray


class Batches:
    """uint8 batches → normalised float tensors on the device, in the layout the model wants."""

    def __init__(self, info: DeviceInfo, mean: Sequence[float], std: Sequence[float]) -> None:
        self.info, self.mean, self.std = info, mean, std

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device, pinned = self.info.device, self.info.pin_memory  # asynchronous only from pinned memory (to_device)
        x = normalize_batch(images.to(device, non_blocking=pinned), self.mean, self.std)
        if self.info.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels.to(device, non_blocking=pinned)

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.info.autocast()


def bar_text(loss: float, accuracy: float, images_per_second: float) -> str:
    return f"loss {loss:.3f} acc {accuracy:.1f}% {images_per_second:,.0f} img/s"


def train_epoch(
    model: nn.Module,
    step: Step,
    loader: Iterable,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    after_step: Callable[[], None],
    description: str,
    total: int,
) -> EpochStats:
    """`step` trains on each batch (blockspec/train/step.py); sums stay on the device and the
    bar reads them back only every few batches."""
    model.train()
    device = batches.info.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, lr = 0, optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    bar = Bar(
        loader, desc=description, total=total, leave=False, mininterval=0.5, disable=None, bar_format=BAR_FORMAT
    )
    for index, (images, labels) in enumerate(bar):
        x, y = batches(images, labels)
        lr = optimizer.param_groups[0]["lr"]
        loss, logits = step(x, y)
        after_step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if index % 20 == 0:
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(bar_text(loss_sum.item() / seen, 100 * correct.item() / seen, seen / elapsed))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    bar.close()
    return EpochStats(loss_sum.item() / max(seen, 1), 100 * correct.item() / max(seen, 1), seen, seconds, lr)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    batches: Batches,
    loss_fn: nn.Module,
    views: TTAViews = TTAViews(),
) -> Evaluation:
    """Test loss and accuracy of the scores averaged over the test-time `views`.

    Sums and predictions stay on the device until the pass ends: reading each batch's loss
    back would make the host wait for the GPU at every batch."""
    model.eval()
    loss_sum = torch.zeros((), device=batches.info.device)
    predictions, labels = [], []
    for images, targets in loader:
        x, y = batches(images, targets)
        with batches.autocast():
            logits = views.logits(model, x)
            if isinstance(loss_fn, nn.NLLLoss):  # a log-softmax head: views' averaged
                logits = logits.float().log_softmax(1)  # log-probabilities renormalised
            loss_sum += loss_fn(logits.float(), y) * len(y)
        predictions.append(logits.argmax(1))
        labels.append(y)
    predicted = torch.cat(predictions).cpu().numpy()
    truth = torch.cat(labels).cpu().numpy()
    acc = 100.0 * float((predicted == truth).mean())
    return Evaluation(loss_sum.item() / len(truth), acc, predicted, truth)
