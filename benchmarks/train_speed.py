"""Training throughput: blockspec's path against a published-style reference loop.

Both train the same network (built from the same spec) on the same images, one after the
other in this process, on the same device:

* reference: what the published CIFAR-10 solutions do — an albumentations pipeline per
  image inside a DataLoader (HorizontalFlip, ShiftScaleRotate, CoarseDropout, then
  Normalize and a tensor conversion per image), fp32, batch 128, written here
  independently of blockspec's own loop;
* blockspec, per-image albumentations: blockspec's loop with `--loader albumentations`;
* blockspec, batched tensor augmentation: the data set held on the device as uint8 and
  augmented a batch at a time (the `--loader auto` choice for this spec), with bf16
  autocast and channels-last on CUDA.

Each measures images/s over `--steps` optimisation steps after `--warmup` steps. Results
go to stdout and, with `--write`, into docs/benchmarks.md between markers.

    python benchmarks/train_speed.py --data-root ../shared/data/cifar10-jpeg.tar.xz --write
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from blockspec import load_spec
from blockspec.build import build_model
from blockspec.data import build_augment, load_dataset, make_loaders, read_augment
from blockspec.data.batched import DeviceLoader, plan_batched
from blockspec.train.device import pick_device
from blockspec.train.loop import Batches, train_epoch
from blockspec.train.optim import make_loss, make_optimizer

ROOT = Path(__file__).resolve().parents[1]
MARK_START, MARK_END = "<!-- train_speed:start -->", "<!-- train_speed:end -->"


class ReferenceSet(Dataset):
    """The published solutions' dataset: augment, normalise and convert each image alone."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: tuple, std: tuple) -> None:
        self.images, self.labels = images, labels
        fill = tuple(int(round(255 * m)) for m in mean)
        self.transform = A.Compose(
            [
                A.HorizontalFlip(p=0.5),
                A.ShiftScaleRotate(shift_limit=0.1, scale_limit=0.1, rotate_limit=10, p=0.5),
                A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 16),
                                hole_width_range=(16, 16), fill=fill, p=0.5),
                A.Normalize(mean=mean, std=std),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.transform(image=self.images[index])["image"]
        return torch.from_numpy(image.transpose(2, 0, 1).copy()), int(self.labels[index])


def reference_loop(model: nn.Module, loader: DataLoader, device: torch.device, steps: int, warmup: int) -> float:
    """A plain fp32 loop as the published networks train; returns images/s."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, start = 0, 0.0
    batches = _cycle(loader)
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            start, seen = time.perf_counter(), 0
        images, labels = next(batches)
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    _sync(device)
    return seen / (time.perf_counter() - start)


def blockspec_loop(spec, model: nn.Module, loader, batches: Batches, steps: int, warmup: int) -> float:
    """blockspec's own `train_epoch` over exactly warmup + steps batches; returns images/s."""
    optimizer = make_optimizer(spec, model)
    loss_fn = make_loss(spec)
    train_epoch(model, _take(loader, warmup), batches, optimizer, loss_fn, lambda: None, "warm-up", warmup)
    stats = train_epoch(model, _take(loader, steps), batches, optimizer, loss_fn, lambda: None, "measure", steps)
    return stats.images_per_second


def _cycle(loader) -> Iterator:
    while True:
        yield from loader


def _take(loader, count: int) -> Iterator:
    batches = _cycle(loader)
    for _ in range(count):
        yield next(batches)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace) -> list[tuple[str, int, str, float]]:
    spec = load_spec(args.spec)
    data = load_dataset("imagefolder", args.data_root)
    info = pick_device(args.device)
    device = info.device
    rows: list[tuple[str, int, str, float]] = []

    def run(label: str, batch: int, precision: str, body: Callable[[], float]) -> None:
        torch.manual_seed(0)
        speed = body()
        rows.append((label, batch, precision, speed))
        print(f"{label:<48} batch {batch:>4}  {precision:<5} {speed:10.0f} img/s", flush=True)

    def reference() -> float:
        model = build_model(spec).to(device)
        dataset = ReferenceSet(data.train_images, data.train_labels, data.mean, data.std)
        loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=args.workers,
                            pin_memory=info.is_cuda, drop_last=True, persistent_workers=args.workers > 0)
        return reference_loop(model, loader, device, args.steps, args.warmup)

    def blockspec_albumentations() -> float:
        model = build_model(spec).to(device)
        fp32 = pick_device(args.device, amp=False, channels_last=False)
        augment = build_augment(spec.data.augment, data.mean, image_shape=data.train_images.shape[1:])
        train, _ = make_loaders(data, augment, 128, args.workers, 0, info.pin_memory)
        return blockspec_loop(spec, model, train, Batches(fp32, data.mean, data.std), args.steps, args.warmup)

    def blockspec_batched(batch: int) -> Callable[[], float]:
        def body() -> float:
            model = build_model(spec).to(device)
            if info.channels_last:
                model = model.to(memory_format=torch.channels_last)
            plan = plan_batched(read_augment(spec.data.augment).steps)
            assert plan is not None, "the spec's augmentation has no batched equivalent"
            loader = DeviceLoader(data.train_images, data.train_labels, batch, device, plan, data.mean, True, 0)
            return blockspec_loop(spec, model, loader, Batches(info, data.mean, data.std), args.steps, args.warmup)

        return body

    def rounds() -> None:
        run("reference loop (per-image albumentations)", 128, "fp32", reference)
        run("blockspec, per-image albumentations", 128, "fp32", blockspec_albumentations)
        run("blockspec, batched tensor augmentation", 128, precision, blockspec_batched(128))
        if info.is_cuda:
            run("blockspec, batched tensor augmentation", 512, precision, blockspec_batched(512))

    precision = "bf16" if info.autocast_dtype is not None else "fp32"
    for _ in range(args.rounds):  # interleaved, so a noisy moment hits every path alike
        rounds()
    return _medians(rows)


def _medians(rows: list[tuple[str, int, str, float]]) -> list[tuple[str, int, str, float]]:
    """One row per path: the median of its rounds."""
    grouped: dict[tuple[str, int, str], list[float]] = {}
    for label, batch, precision, speed in rows:
        grouped.setdefault((label, batch, precision), []).append(speed)
    return [(*key, float(np.median(speeds))) for key, speeds in grouped.items()]


def table(rows: list[tuple[str, int, str, float]], args: argparse.Namespace, device: str) -> str:
    baseline = rows[0][3]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads), spec `{Path(args.spec).relative_to(ROOT)}`, "
        f"CIFAR-10 (JPEG copy), median of {args.rounds} interleaved rounds of {args.steps} steps "
        f"after {args.warmup} warm-up steps, "
        f"{args.workers} DataLoader workers where a DataLoader is used.",
        "",
        "| path | batch | precision | images/s | × reference |",
        "|---|---:|---|---:|---:|",
    ]
    lines += [f"| {label} | {batch} | {prec} | {speed:,.0f} | {speed / baseline:.2f} |" for label, batch, prec, speed in rows]
    return "\n".join(lines)


def write_docs(text: str, command: str) -> None:
    target = ROOT / "docs" / "benchmarks.md"
    body = target.read_text() if target.exists() else f"# Benchmarks\n\n{MARK_START}\n{MARK_END}\n"
    head, rest = body.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    target.write_text(f"{head}{MARK_START}\nCommand: `{command}`\n\n{text}\n{MARK_END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "architectures" / "flagship.yaml"))
    parser.add_argument("--data-root", required=True, help="CIFAR-10 image folder or archive")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians reported")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    rows = measure(args)
    text = table(rows, args, pick_device(args.device).describe())
    print(text)
    if args.write:
        import sys

        write_docs(text, "python " + " ".join(["benchmarks/train_speed.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
