"""Seconds an epoch of the per-image path's DataLoader, its workers kept from epoch to epoch
(what `blockspec train` does) against workers started afresh every epoch (the baseline, what
it did before), for each process start method.

`fork` is Linux's default through Python 3.13; `forkserver` is Linux's from Python 3.14 and
`spawn` is Windows' and macOS's: those two start an interpreter per worker, which imports
torch and albumentations and, on Linux, receives the data set through its pipe (on Windows
and macOS it is shared memory). Only the loader runs (no network), so the time is the data
path's alone: per-image augmentation of the spec's list plus the workers' start.

    python benchmarks/worker_start.py --data-root ../shared/data/cifar10-jpeg.tar.xz
"""

from __future__ import annotations

import argparse
import time

from torch.utils.data import DataLoader

from blockspec import load_spec
from blockspec.data import build_augment, load_dataset, make_loaders
from blockspec.train.data_path import seed_epoch, training_pipeline


def epoch_seconds(loader: DataLoader, epochs: int) -> list[float]:
    """Wall seconds of each epoch read through `loader`, seeded as a run seeds it."""
    seconds = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        seed_epoch(0, epoch, loader)
        for _ in loader:
            pass
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--spec", default="architectures/flagship.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit-train", type=int, default=10_000)
    args = parser.parse_args()
    spec = load_spec(args.spec)
    data = load_dataset("imagefolder", args.data_root).limited(args.limit_train)
    pipeline = training_pipeline(spec)
    augment = build_augment(pipeline.entries, data.mean, image_shape=data.train_images.shape[1:])
    print(f"{len(data.train_images)} images, {args.workers} workers, batch {spec.train.batch_size}, "
          f"{args.epochs} epochs; seconds per epoch")
    print("| start method | workers kept (blockspec) | started each epoch (baseline) |")
    print("|---|---|---|")
    for method in ("fork", "forkserver", "spawn"):
        kept, _ = make_loaders(data, augment, spec.train.batch_size, args.workers, 0, False,
                               alternate_flip=pipeline.alternate)
        kept.multiprocessing_context = method
        fresh = DataLoader(kept.dataset, batch_size=spec.train.batch_size, sampler=kept.sampler,
                           num_workers=args.workers, worker_init_fn=kept.worker_init_fn,
                           generator=kept.generator, persistent_workers=False, multiprocessing_context=method)
        times = {name: epoch_seconds(loader, args.epochs) for name, loader in (("kept", kept), ("fresh", fresh))}
        print(f"| {method} | {' / '.join(f'{s:.2f}' for s in times['kept'])} "
              f"| {' / '.join(f'{s:.2f}' for s in times['fresh'])} |", flush=True)
        del kept, fresh


if __name__ == "__main__":
    main()
