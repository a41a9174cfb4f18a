"""The published-style baseline, written independently of blockspec's training code.

How the published CIFAR-10 solutions train: an albumentations pipeline per image inside a
DataLoader (HorizontalFlip, ShiftScaleRotate, CoarseDropout, then Normalize and a tensor
conversion per image), fp32, NCHW, batch 128, a plain loop. Only the network comes from
blockspec (the same spec, so both sides train the same model), written with stock torch
layers as a published notebook would (`stock_layers`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import albumentations as A
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

BATCH = 128


def stock_layers(model: nn.Module) -> nn.Module:
    """The model with blockspec's own layer classes turned back into the stock torch classes
    they extend (same parameters, same function), in place.

    `DepthwiseConv2d` and `GlobalAvgPool2d` only change how a CPU computes (fp32 inside
    autocast, dilated convolutions split into phases, a channels-last gradient): speed that a
    published network, written with `nn.Conv2d` and `nn.AdaptiveAvgPool2d`, does not have.
    """
    from blockspec.modules import DepthwiseConv2d, GlobalAvgPool2d

    for module in model.modules():
        if isinstance(module, DepthwiseConv2d):
            module.__class__ = nn.Conv2d
        elif isinstance(module, GlobalAvgPool2d):
            module.__class__ = nn.AdaptiveAvgPool2d
    return model


class ReferenceSet(Dataset):
    """Augment (training only), normalise and convert each image alone."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: tuple, std: tuple, train: bool) -> None:
        self.images, self.labels = images, labels
        fill = tuple(int(round(255 * m)) for m in mean)
        augment = [
            A.HorizontalFlip(p=0.5),
            A.ShiftScaleRotate(shift_limit=0.1, scale_limit=0.1, rotate_limit=10, p=0.5),
            A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 16),
                            hole_width_range=(16, 16), fill=fill, p=0.5),
        ]
        self.transform = A.Compose([*(augment if train else []), A.Normalize(mean=mean, std=std)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=self.images[index])["image"]
        return torch.from_numpy(image.transpose(2, 0, 1).copy()), int(self.labels[index])


def reference_loader(images: np.ndarray, labels: np.ndarray, mean: tuple, std: tuple, train: bool,
                     workers: int, pin_memory: bool) -> DataLoader:
    dataset = ReferenceSet(images, labels, mean, std, train)
    return DataLoader(dataset, batch_size=BATCH, shuffle=train, num_workers=workers, pin_memory=pin_memory,
                      drop_last=train, persistent_workers=workers > 0)


def throughput(model: nn.Module, loader: DataLoader, device: torch.device, steps: int, warmup: int) -> float:
    """Images/s of plain fp32 SGD steps after `warmup` unmeasured ones."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, start = 0, 0.0
    batches = cycle_batches(loader)
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start, seen = time.perf_counter(), 0
        images, labels = next(batches)
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    sync(device)
    return seen / (time.perf_counter() - start)


def train_to_target(model: nn.Module, train: DataLoader, test: DataLoader, device: torch.device, *,
                    epochs: int, target: float, lr: float, momentum: float, nesterov: bool,
                    weight_decay: float, pct_start: float, anneal: str,
                    momentum_cycle: tuple[float, float] | None,
                    label_smoothing: float) -> list[tuple[int, float, float]]:
    """SGD + OneCycle over `epochs`, evaluated after each epoch, stopping at `target` % test
    accuracy; returns (epoch, test accuracy %, wall seconds since training started) per epoch.
    `momentum_cycle` is OneCycle's (base, max) momentum, or None to keep `momentum` fixed."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay)
    cycle = ({"base_momentum": momentum_cycle[0], "max_momentum": momentum_cycle[1]} if momentum_cycle
             else {"cycle_momentum": False})
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(train),
                                                   pct_start=pct_start, anneal_strategy=anneal, **cycle)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history: list[tuple[int, float, float]] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for images, labels in train:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            criterion(model(images), labels).backward()
            optimizer.step()
            schedule.step()
        accuracy = _accuracy(model, test, device)
        history.append((epoch, accuracy, time.perf_counter() - start))
        print(f"reference epoch {epoch}/{epochs}: test accuracy {accuracy:.2f} %, {history[-1][2]:.0f} s", flush=True)
        if accuracy >= target:
            break
    return history


@torch.no_grad()
def _accuracy(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    correct = total = 0
    for images, labels in loader:
        predicted = model(images.to(device)).argmax(1).cpu()
        correct += int((predicted == labels).sum())
        total += len(labels)
    sync(device)
    return 100.0 * correct / total


def cycle_batches(loader) -> Iterator:
    """The loader's batches forever, starting it again whenever it runs out."""
    while True:
        yield from loader


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
