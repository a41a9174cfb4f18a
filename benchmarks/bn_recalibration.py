"""Test accuracy of a run's averaged (EMA) weights with the BatchNorm statistics it was trained
with, against the same weights with those statistics recomputed over the training images.

Why: the weight average also averages BatchNorm's running statistics, which were measured on
earlier weights than the ones evaluated. SWA recomputes them for the averaged weights
(`torch.optim.swa_utils.update_bn`); this measures whether blockspec's runs should too, once
over the plain training images and once through the spec's training augmentation.

    python benchmarks/bn_recalibration.py /work/bench-wip/v64-c2w40-w120-c4x3-seed1/best.pt \
        --data-root /tmp/data/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from blockspec.data import load_dataset, make_loaders
from blockspec.data.augment import build_augment
from blockspec.load import parse_spec
from blockspec.train.checkpoint import load_checkpoint, model_from_checkpoint
from blockspec.train.device import pick_device
from blockspec.train.loop import Batches, evaluate
from blockspec.train.optim import make_loss
from blockspec.train.overrides import apply_overrides
from blockspec.train.tta import TTAViews


def recompute_batchnorm(model: nn.Module, loader: Iterable, batches: Batches) -> None:
    """Every BatchNorm's running statistics replaced by their plain average over `loader`
    (torch's `update_bn`), fed the normalised batches the model trains on."""
    with batches.autocast():
        update_bn((batches(images, labels)[0] for images, labels in loader), model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run's best.pt or last.pt")
    parser.add_argument("--data-root", help="override the spec's data.root")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit-train", type=int, help="recompute over N training images")
    parser.add_argument("--limit-test", type=int, help="evaluate on N test images")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    payload = load_checkpoint(args.checkpoint)
    spec = parse_spec(payload["spec"], source=f"{args.checkpoint} (spec inside)")
    spec = apply_overrides(spec, data_root=args.data_root)
    data = load_dataset(spec.data.dataset, spec.data.root).limited(args.limit_train, args.limit_test)
    info = pick_device(args.device, spec.train.amp, spec.train.channels_last)
    batches = Batches(info, data.mean, data.std)
    loss_fn, views = make_loss(spec), TTAViews.of(spec.train)
    augmentations = {
        "as trained (averaged with the weights)": None,
        "recomputed, plain training images": "plain",
        "recomputed, through data.augment": "augmented",
    }
    print(f"{spec.name}, epoch {payload['epoch']}, on {info.describe()}")
    print("| BatchNorm statistics | test acc % | test loss | seconds |")
    print("|---|---:|---:|---:|")
    for label, source in augmentations.items():
        start = time.perf_counter()
        model = model_from_checkpoint(spec, payload, args.checkpoint).to(info.device)
        if info.channels_last:
            model = model.to(memory_format=torch.channels_last)
        augment = build_augment(spec.data.augment, data.mean) if source == "augmented" else None
        train_loader, test_loader = make_loaders(
            data,
            augment,
            args.batch_size,
            0,
            spec.train.seed,
            info.pin_memory,
        )
        if source is not None:
            recompute_batchnorm(model, train_loader, batches)
        result = evaluate(model, test_loader, batches, loss_fn, views)
        print(
            f"| {label} | {result.acc:.2f} | {result.loss:.4f} | {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
