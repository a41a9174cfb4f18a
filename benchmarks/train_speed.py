"""Training speed: blockspec's paths against a published-style reference loop.

Both train the same network (built from the same spec) on the same images, one after the
other in this process, on the same device. The reference (benchmarks/reference_loop.py) is
what the published CIFAR-10 solutions do: albumentations per image in a DataLoader, fp32,
batch 128, a plain loop, written independently of blockspec's training code.

Throughput (default): images/s over `--steps` optimisation steps after `--warmup` steps, in
interleaved rounds, for
* the reference loop, its network written with stock torch layers
  (`reference_loop.stock_layers`), the baseline;
* the same loop with the network as blockspec builds it (its own CPU layers), which shows
  how much of blockspec's lead those layers make;
* blockspec's loop with per-image albumentations (`--loader albumentations`, fp32), which
  isolates the loop itself;
* blockspec's loop with the data set held on the device as uint8 and augmented a batch at a
  time (the `--loader auto` choice for this spec), in bf16 and channels-last where the
  device supports it, at the recipe's batch and at `--large-batch`.

Time to target (`--to-target EPOCHS`): both train the spec's recipe (its SGD settings,
OneCycle and label smoothing, over EPOCHS epochs) until the test accuracy first reaches the
spec's target; the reference without blockspec's EMA and flip-TTA, which published loops do
not have, and with torch's SGD on every parameter where the spec has Muon on some (published
loops use SGD). blockspec's time includes its start-up (loading the cached data set, building the
model); the reference's starts at its first step.

Results go to stdout and, with `--write`, into docs/benchmarks.md between markers.

    python benchmarks/train_speed.py --data-root ../shared/data/cifar10-jpeg.tar.xz --write
    python benchmarks/train_speed.py --data-root ../shared/data/cifar10-jpeg.tar.xz --to-target 40 --write
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import reference_loop as reference
import torch
from torch import nn

from blockspec import load_spec
from blockspec.build import build_model
from blockspec.data import build_augment, load_dataset, make_loaders, read_augment
from blockspec.data.batched_plan import plan_batched
from blockspec.data.device_loader import DeviceLoader
from blockspec.data.flip import split_flip
from blockspec.spec import SGD_MOMENTUM
from blockspec.train.device import DeviceInfo, pick_device
from blockspec.train.host_memory import reuse_freed_host_memory
from blockspec.train.loop import Batches, train_epoch
from blockspec.train.optim import make_loss, make_optimizer, peak_lr
from blockspec.train.overrides import apply_overrides
from blockspec.train.run import RunOptions, train
from blockspec.train.step import make_step

ROOT = Path(__file__).resolve().parents[1]


def blockspec_loop(spec, model: nn.Module, loader, batches: Batches, steps: int, warmup: int,
                   graphed: bool = False) -> float:
    """blockspec's own `train_epoch` over exactly warmup + steps batches; returns images/s.

    The step is the run's (blockspec/train/step.py) without the weight average, which the
    reference has no counterpart of; `graphed` replays it as one CUDA graph. One stream of
    batches serves both calls, as in the reference's `throughput`: a second iterator would
    start the DataLoader's workers again inside the measured steps."""
    optimizer = make_optimizer(spec, model, device_rates=graphed)
    step = make_step(model, model, make_loss(spec), optimizer, None, lambda: batches.info.autocast(not graphed), graphed)
    stream = reference.cycle_batches(loader)
    take = itertools.islice
    train_epoch(model, step, take(stream, warmup), batches, optimizer, lambda: None, "warm-up", warmup)
    stats = train_epoch(model, step, take(stream, steps), batches, optimizer, lambda: None, "measure", steps)
    if graphed and step.state != "captured":  # eager steps' figures must not pass for the graph's
        raise RuntimeError(f"the CUDA graph row measured no graph: {step.state}")
    return stats.images_per_second


def measure(args: argparse.Namespace) -> tuple[list[tuple[str, int, str, float]], bool]:
    """(the median images/s of each path, whether host memory is kept for reuse)."""
    spec = load_spec(args.spec, edits=args.edits)
    data = load_dataset("imagefolder", args.data_root)
    info = pick_device(args.device)
    device = info.device
    # as `blockspec train` does on a CPU; it holds for the whole process, the reference included
    reused = device.type == "cpu" and reuse_freed_host_memory()
    rows: list[tuple[str, int, str, float]] = []

    def run(label: str, batch: int, precision: str, body: Callable[[], float]) -> None:
        torch.manual_seed(0)
        speed = body()
        rows.append((label, batch, precision, speed))
        print(f"{label:<48} batch {batch:>4}  {precision:<5} {speed:10.0f} img/s", flush=True)

    def reference_path(layers: Callable[[nn.Module], nn.Module]) -> Callable[[], float]:
        def body() -> float:
            model = layers(build_model(spec)).to(device)
            loader = reference.reference_loader(data.train_images, data.train_labels, data.mean, data.std, True,
                                                  args.workers, info.is_cuda)
            return reference.throughput(model, loader, device, args.steps, args.warmup)

        return body

    # a spec with `alternate_flip` mirrors in its data set, as `blockspec train` does
    entries, alternate = split_flip(spec.data.augment, spec.data.alternate_flip)

    def blockspec_albumentations() -> float:
        model = build_model(spec).to(device)
        fp32 = pick_device(args.device, amp=False, channels_last=False)
        augment = build_augment(entries, data.mean, image_shape=data.train_images.shape[1:])
        train, _ = make_loaders(data, augment, 128, args.workers, 0, info.pin_memory, alternate_flip=alternate)
        return blockspec_loop(spec, model, train, Batches(fp32, data.mean, data.std), args.steps, args.warmup)

    def blockspec_batched(batch: int, graphed: bool = False) -> Callable[[], float]:
        def body() -> float:
            model = info.place(build_model(spec))  # as training places it
            plan = plan_batched(read_augment(entries))
            assert plan is not None, "the spec's augmentation has no batched equivalent"
            loader = DeviceLoader(data.train_images, data.train_labels, batch, device, plan, data.mean, True, 0,
                                  alternate_flip=alternate)
            batches = Batches(info, data.mean, data.std)
            return blockspec_loop(spec, model, loader, batches, args.steps, args.warmup, graphed)

        return body

    def rounds() -> None:
        run("reference loop (per-image albumentations)", reference.BATCH, "fp32", reference_path(reference.stock_layers))
        run("reference loop, blockspec's layers", reference.BATCH, "fp32", reference_path(lambda model: model))
        run("blockspec, per-image albumentations", 128, "fp32", blockspec_albumentations)
        run("blockspec, batched tensor augmentation", 128, precision, blockspec_batched(128))
        if args.large_batch:
            run("blockspec, batched tensor augmentation", args.large_batch, precision, blockspec_batched(args.large_batch))
        if info.is_cuda:  # the step captured once and replayed (`train.cuda_graphs`)
            for batch in [128] + ([args.large_batch] if args.large_batch else []):
                run("blockspec, batched, step as one CUDA graph", batch, precision, blockspec_batched(batch, True))

    precision = "bf16" if info.autocast_dtype is not None else "fp32"
    for _ in range(args.rounds):  # interleaved, so a noisy moment hits every path alike
        rounds()
    return _medians(rows), reused


def _medians(rows: list[tuple[str, int, str, float]]) -> list[tuple[str, int, str, float]]:
    """One row per path: the median of its rounds."""
    grouped: dict[tuple[str, int, str], list[float]] = {}
    for label, batch, precision, speed in rows:
        grouped.setdefault((label, batch, precision), []).append(speed)
    return [(*key, float(np.median(speeds))) for key, speeds in grouped.items()]


def shown_path(path: str) -> str:
    """The spec's path relative to the repository where it lies inside it, else as given."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def spec_named(args: argparse.Namespace) -> str:
    """The spec file as the tables name it, with the edits it was measured with."""
    return f"`{shown_path(args.spec)}`" + "".join(f" `--set {edit}`" for edit in args.edits or ())


def table(rows: list[tuple[str, int, str, float]], reused: bool, args: argparse.Namespace, device: str) -> str:
    baseline = rows[0][3]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads), spec {spec_named(args)}, "
        f"CIFAR-10 (JPEG copy), median of {args.rounds} interleaved rounds of {args.steps} steps "
        f"after {args.warmup} warm-up steps, "
        f"{args.workers} DataLoader workers where a DataLoader is used"
        + ("; freed host memory kept for reuse, for every path (`blockspec/train/host_memory.py`)." if reused else "."),
        "",
        "| path | batch | precision | images/s | × reference |",
        "|---|---:|---|---:|---:|",
    ]
    lines += [f"| {label} | {batch} | {prec} | {speed:,.0f} | {speed / baseline:.2f} |" for label, batch, prec, speed in rows]
    return "\n".join(lines)


def time_to_target(args: argparse.Namespace) -> str:
    """Train both to the spec's target; a Markdown table of when each got there."""
    spec = apply_overrides(load_spec(args.spec, edits=args.edits), epochs=args.to_target, target=args.target,
                           dataset="imagefolder", data_root=args.data_root)
    config = spec.train.optimizer
    if config.name not in SGD_MOMENTUM or spec.train.scheduler.name != "onecycle":
        raise SystemExit("--to-target compares the SGD (or Muon) + OneCycle recipe; this spec trains otherwise")
    # blockspec first: it is the shorter, so a run cut short still bounds the reference from below
    blockspec_history = _blockspec_to_target(spec, args)
    data = load_dataset("imagefolder", args.data_root).limited(args.limit_train, args.limit_test)
    info = pick_device(args.device)
    torch.manual_seed(spec.train.seed)
    model = reference.stock_layers(build_model(spec)).to(info.device)
    loaders = [
        reference.reference_loader(images, labels, data.mean, data.std, is_train, args.workers, info.is_cuda)
        for images, labels, is_train in (
            (data.train_images, data.train_labels, True),
            (data.test_images, data.test_labels, False),
        )
    ]
    reference_history = reference.train_to_target(
        model, *loaders, info.device, epochs=spec.train.epochs, target=spec.train.target, lr=peak_lr(spec),
        momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay,
        pct_start=spec.train.scheduler.pct_start,
        anneal=spec.train.scheduler.anneal, momentum_cycle=spec.train.scheduler.momentum_cycle(),
        label_smoothing=spec.train.label_smoothing,
    )
    rows = [("reference loop (per-image albumentations, fp32)", reference_history),
            (f"blockspec train ({info.describe()})", blockspec_history)]
    return _target_table(rows, spec.train.target, spec.train.epochs, args)


def _blockspec_to_target(spec, args: argparse.Namespace) -> list[tuple[int, float, float]]:
    """(epoch, test accuracy, wall seconds since `train` was called) of a real blockspec run."""
    stamps: list[float] = []
    start = time.perf_counter()

    def log(line: str) -> None:
        print(line, flush=True)
        if line.startswith("epoch "):
            stamps.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run"
        options = RunOptions(args.device, args.workers, "auto", out, args.limit_train, args.limit_test,
                             stop_at_target=True)
        train(spec, options, log=log)
        history = json.loads((out / "metrics.json").read_text())
    return [(record["epoch"], record["test_acc"], stamp) for record, stamp in zip(history, stamps, strict=True)]


def _target_table(rows: list[tuple[str, list[tuple[int, float, float]]]], target: float, epochs: int,
                  args: argparse.Namespace) -> str:
    reached = {label: next(((e, s) for e, a, s in history if a >= target), None) for label, history in rows}
    baseline = reached[rows[0][0]]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}, spec {spec_named(args)} trained for up to "
        f"{epochs} epochs (its recipe's schedule over {epochs} epochs), CIFAR-10 (JPEG copy)"
        + (f", {args.limit_train} train / {args.limit_test} test images" if args.limit_train or args.limit_test else "")
        + f", {args.workers} DataLoader workers where a DataLoader is used.",
        "",
        f"| path | first epoch at ≥ {target:g} % | wall seconds to {target:g} % | best test acc % (epochs run) | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, history in rows:
        hit = reached[label]
        best = max(accuracy for _, accuracy, _ in history)
        speedup = f"{baseline[1] / hit[1]:.1f}×" if hit and baseline else "—"
        epoch, seconds = (str(hit[0]), f"{hit[1]:,.0f}") if hit else ("not reached", "—")
        lines.append(f"| {label} | {epoch} | {seconds} | {best:.2f} ({len(history)}) | {speedup} |")
    return "\n".join(lines)


def write_docs(text: str, marker: str, script: str = "benchmarks/train_speed.py") -> None:
    """Replace what docs/benchmarks.md holds between this marker's start and end comments."""
    target = ROOT / "docs" / "benchmarks.md"
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    body = target.read_text()
    if start not in body:
        body += f"\n{start}\n{end}\n"
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    command = " ".join(["python", script, *sys.argv[1:]])
    target.write_text(f"{head}{start}\nCommand: `{command}`\n\n{text}\n{end}{tail}")


def device_kind(info: DeviceInfo) -> str:
    """`cuda`, `cpu` (a CPU with bf16 instructions, training in bf16) or `cpu-fp32` (one
    without, training in fp32): CPUs of the two kinds differ too much to share a table."""
    if info.device.type == "cpu" and info.autocast_dtype is None:
        return "cpu-fp32"
    return info.device.type


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "architectures" / "flagship.yaml"))
    parser.add_argument("--set", action="append", dest="edits", metavar="PATH=VALUE",
                        help="change a field of the spec, as blockspec's --set (repeatable)")
    parser.add_argument("--data-root", required=True, help="CIFAR-10 image folder or archive")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians reported")
    parser.add_argument("--large-batch", type=int, default=512, help="extra batched row; 0 for none")
    parser.add_argument("--to-target", type=int, metavar="EPOCHS", help="measure time to the spec's target instead")
    parser.add_argument("--target", type=float, help="time to target: accuracy %% (default: the spec's)")
    parser.add_argument("--limit-train", type=int, help="time to target on N training images (smoke runs)")
    parser.add_argument("--limit-test", type=int, help="time to target on N test images (smoke runs)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    info = pick_device(args.device)
    if args.to_target:
        text, marker = time_to_target(args), "time_to_target"
    else:
        text, marker = table(*measure(args), args, info.describe()), "train_speed"
    print(text)
    if args.write:  # one table per kind of device: a CUDA run leaves the CPU tables standing
        write_docs(text, f"{marker}-{device_kind(info)}")


if __name__ == "__main__":
    main()
