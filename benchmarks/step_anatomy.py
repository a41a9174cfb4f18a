"""What one training step costs, piece by piece, and what replaying it as a CUDA graph saves.

On an H200 the flagship trained at batch 128 slower than the fp32 reference loop (0.82×,
docs/benchmarks.md), and blockspec's loop with the reference's own data path at 0.54×:
the step is bound by launching kernels, not by the GPU's arithmetic. This script builds the
spec's network and times steps on one batch already on the device, adding blockspec's
per-step work one piece at a time, so each piece's cost is a difference of two rows:

  plain SGD      fp32, NCHW, plain cross-entropy, torch's SGD (momentum 0.9): the reference
                 loop's step, on blockspec's layers
  + optimizer    the spec's optimizer instead (the flagship's Muon on its kernels, Nesterov
                 SGD with weight decay on the rest)
  + smoothing    the spec's label smoothing
  + channels-last
  + bf16         autocast, where the device computes bf16 natively
  + ema          the weight average's update (blockspec/train/ema.py)
  + sums         the loss and correct-count sums kept on the device
  + augment      the spec's batched augmentation and normalisation of a uint8 batch
  graph          the "+ sums" step captured once as a CUDA graph and replayed (CUDA only):
                 the same kernels without the host launching them one by one

Each row: the median milliseconds per step over `--rounds` rounds of `--steps` steps, the
images per second, the operations the host dispatches per step (torch operators that compute,
views left out: on a GPU each launches at least one kernel, so this column, countable on any
device, shows where launches go), and on CUDA the kernels per step and the GPU's busy
milliseconds per step (torch's profiler); a step whose wall time far exceeds its busy time
waits on launches.

    python benchmarks/step_anatomy.py --device cuda --batches 128,512 --write
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from reference_loop import sync  # this script's folder is on sys.path
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from train_speed import device_kind, shown_path, write_docs

from blockspec import load_spec
from blockspec.build import build_model
from blockspec.data import read_augment
from blockspec.data.augment import mean_fill
from blockspec.data.batched import augment_batch
from blockspec.data.batched_plan import plan_batched
from blockspec.data.cifar import CIFAR10
from blockspec.data.loader import normalize_batch
from blockspec.train.device import DeviceInfo, pick_device
from blockspec.train.ema import make_ema
from blockspec.train.optim import make_optimizer

ROOT = Path(__file__).resolve().parents[1]
PIECES = ("plain SGD", "+ optimizer", "+ smoothing", "+ channels-last", "+ bf16", "+ ema", "+ sums", "+ augment")
CIFAR_MEAN, CIFAR_STD = CIFAR10.mean, CIFAR10.std
MEAN_FILL = mean_fill(CIFAR_MEAN)


@dataclass(frozen=True)
class Row:
    name: str
    ms_per_step: float
    operations: int
    kernels: float | None
    busy_ms: float | None


def make_step(spec, info: DeviceInfo, batch: int, pieces: int, for_graph: bool = False) -> Callable[[], None]:
    """A training step with the first `pieces` entries of PIECES switched on."""
    on = set(PIECES[:pieces])
    torch.manual_seed(0)
    device = info.device
    channels_last = "+ channels-last" in on and info.channels_last
    bf16 = "+ bf16" in on and info.autocast_dtype is not None
    model = build_model(spec).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = (make_optimizer(spec, model, device_rates=for_graph) if "+ optimizer" in on  # as GraphedStep replays it
                 else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=spec.train.label_smoothing if "+ smoothing" in on else 0.0)
    ema = make_ema(model, spec.train.ema or 0.999) if "+ ema" in on else None
    raw = torch.randint(0, 256, (batch, spec.input.channels, *spec.input.hw), dtype=torch.uint8, device=device)
    y = torch.randint(0, spec.classes, (batch,), device=device)
    plan = plan_batched(read_augment(spec.data.augment)) if "+ augment" in on else None
    generator = torch.Generator().manual_seed(0)
    fixed = normalize_batch(raw, CIFAR_MEAN, CIFAR_STD)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)

    def step() -> None:
        nonlocal loss_sum, correct
        x = fixed
        if plan is not None:
            x = normalize_batch(augment_batch(raw, plan, generator, MEAN_FILL), CIFAR_MEAN, CIFAR_STD)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # a captured graph must not reuse autocast's weight casts from outside the capture
        with torch.autocast(device.type, dtype=info.autocast_dtype, enabled=bf16, cache_enabled=not for_graph):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=not for_graph)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        if "+ sums" in on:
            loss_sum += loss.detach() * batch
            correct += (logits.detach().argmax(1) == y).sum()

    return step


def graphed(step: Callable[[], None], warmup: int) -> Callable[[], None]:
    """Capture `step` once (after warming it up on a side stream, as CUDA graphs require)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(warmup, 3)):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def time_step(step: Callable[[], None], info: DeviceInfo, steps: int, warmup: int, rounds: int) -> float:
    """Median milliseconds per step over `rounds` rounds, the device drained around each."""
    for _ in range(warmup):
        step()
    timings = []
    for _ in range(rounds):
        sync(info.device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(info.device)
        timings.append((time.perf_counter() - start) * 1e3 / steps)
    return statistics.median(timings)


class OperationCount(TorchDispatchMode):
    """Counts the torch operators dispatched while active, views (which compute nothing) aside."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if not func.is_view and func.overloadpacket not in (torch.ops.aten.detach, torch.ops.aten._unsafe_view):
            self.count += 1
        return func(*args, **(kwargs or {}))


def operations(step: Callable[[], None]) -> int:
    """Operators one step dispatches (after warm-up, so lazily made state is not counted)."""
    with OperationCount() as counter:
        step()
    return counter.count


def kernel_profile(step: Callable[[], None], info: DeviceInfo, steps: int) -> tuple[float | None, float | None]:
    """(kernels launched, GPU busy milliseconds) per step; (None, None) off CUDA."""
    if not info.is_cuda:
        return None, None
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        sync(info.device)
    kernels = [event for event in prof.events() if event.device_type == DeviceType.CUDA]
    return len(kernels) / steps, sum(event.device_time for event in kernels) / 1e3 / steps


def measure(spec, info: DeviceInfo, batch: int, args: argparse.Namespace) -> list[Row]:
    rows = []
    for pieces in range(1, len(PIECES) + 1):
        name = PIECES[pieces - 1]
        if name == "+ bf16" and info.autocast_dtype is None:
            continue
        step = make_step(spec, info, batch, pieces)
        ms = time_step(step, info, args.steps, args.warmup, args.rounds)
        rows.append(Row(name, ms, operations(step), *kernel_profile(step, info, args.profile_steps)))
    if info.is_cuda:
        replay = graphed(make_step(spec, info, batch, PIECES.index("+ sums") + 1, for_graph=True), args.warmup)
        ms = time_step(replay, info, args.steps, args.warmup, args.rounds)
        rows.append(Row("graph of the “+ sums” step", ms, operations(replay), *kernel_profile(replay, info, args.profile_steps)))
    return rows


def table(results: dict[int, list[Row]], info: DeviceInfo, args: argparse.Namespace) -> str:
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {info.describe()} ({platform.machine()}, "
        f"{torch.get_num_threads()} torch threads), spec `{shown_path(args.spec)}`, one random batch on the "
        f"device; median of {args.rounds} rounds of {args.steps} steps after {args.warmup} warm-up steps; "
        f"kernels and GPU busy time from {args.profile_steps} profiled steps.",
        "",
        "| batch | step | ms / step | images/s | operations / step | kernels / step | GPU busy ms / step |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for batch, rows in results.items():
        for row in rows:
            kernels = "—" if row.kernels is None else f"{row.kernels:,.0f}"
            busy = "—" if row.busy_ms is None else f"{row.busy_ms:.2f}"
            lines.append(f"| {batch} | {row.name} | {row.ms_per_step:.2f} | {batch / row.ms_per_step * 1e3:,.0f} "
                         f"| {row.operations:,} | {kernels} | {busy} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "architectures" / "flagship.yaml"))
    parser.add_argument("--batches", default="128,512", help="comma-separated batch sizes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    info = pick_device(args.device)
    results = {int(b): measure(spec, info, int(b), args) for b in args.batches.split(",")}
    text = table(results, info, args)
    print(text)
    if args.write:
        write_docs(text, f"step_anatomy-{device_kind(info)}", "benchmarks/step_anatomy.py")


if __name__ == "__main__":
    main()
