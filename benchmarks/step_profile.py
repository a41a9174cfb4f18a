"""Where a training step's time goes, by kind of operation, at several batch sizes.

The spec's network trains on one fixed random batch (no data loading) in the numeric mode
`blockspec train` picks for the device (channels-last; bf16 autocast where the device has
bf16 instructions), and torch's profiler sums each operator's own time per step into
convolutions (forward and backward), batch norm, activations, additions and the rest.
Dividing by the batch shows which kinds scale with the batch and which grow faster: it is
how docs/benchmarks.md explains why batch 512 trains slower per image than batch 128 on a CPU.

    python benchmarks/step_profile.py --batches 128,512 --write
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from train_speed import device_kind, shown_path, write_docs  # this script's folder is on sys.path

from blockspec import load_spec
from blockspec.build import build_model
from blockspec.train.device import DeviceInfo, pick_device
from blockspec.train.host_memory import reuse_freed_host_memory

ROOT = Path(__file__).resolve().parents[1]
# Operator-name fragments, first match wins; the rest is "other".
KINDS = {
    "convolution": ("convolution",),
    "batch norm": ("batch_norm",),
    "activation": ("threshold_backward", "clamp_min", "relu", "silu", "gelu", "hardswish"),
    "addition": ("aten::add",),
}


def kind_of(operator: str) -> str:
    return next((kind for kind, parts in KINDS.items() if any(part in operator for part in parts)), "other")


def profile_steps(spec, info: DeviceInfo, batch: int, steps: int, warmup: int) -> dict[str, float]:
    """Milliseconds per training step spent in each kind of operator (own time, not children)."""
    torch.manual_seed(0)
    model = build_model(spec).to(info.device)
    x = torch.randn(batch, spec.input.channels, *spec.input.hw, device=info.device)
    y = torch.randint(0, spec.classes, (batch,), device=info.device)
    if info.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(info.device.type, dtype=info.autocast_dtype, enabled=info.autocast_dtype is not None):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if info.is_cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if info.is_cuda:
            torch.cuda.synchronize()
    per_kind: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        own = event.self_device_time_total if info.is_cuda else event.self_cpu_time_total
        per_kind[kind_of(event.key)] += own / 1e3 / steps
    return dict(per_kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "architectures" / "flagship.yaml"))
    parser.add_argument("--batches", default="128,512", help="comma-separated batch sizes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--allocator", choices=("reuse", "default"), default="reuse",
        help="on a CPU: keep freed host memory for reuse, as `blockspec train` does, or glibc's default",
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    info = pick_device(args.device)
    reused = info.device.type == "cpu" and args.allocator == "reuse" and reuse_freed_host_memory()
    batches = [int(text) for text in args.batches.split(",")]
    results = {batch: profile_steps(spec, info, batch, args.steps, args.warmup) for batch in batches}
    kinds = [*KINDS, "other"]
    first = batches[0]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {info.describe()} ({platform.machine()}, "
        f"{torch.get_num_threads()} torch threads), spec `{shown_path(args.spec)}`, {args.steps} profiled "
        f"training steps after {args.warmup} warm-up steps on one random batch; own time of each operator, "
        "milliseconds per 1,000 images. Host allocator: "
        + ("freed memory kept for reuse (as `blockspec train` on a CPU)." if reused else "the C library's default."),
        "",
        "| kind of operation | " + " | ".join(f"batch {b}" for b in batches) + " | "
        + " | ".join(f"batch {b} ÷ batch {first}" for b in batches[1:]) + " |",
        "|---|" + "---:|" * (2 * len(batches) - 1),
    ]
    for kind in [*kinds, "total"]:
        per_image = {
            b: 1e3 / b * (sum(results[b].values()) if kind == "total" else results[b].get(kind, 0.0)) for b in batches
        }
        ratios = [f"{per_image[b] / per_image[first]:.2f}" if per_image[first] else "—" for b in batches[1:]]
        name = f"**{kind}**" if kind == "total" else kind
        lines.append(f"| {name} | " + " | ".join(f"{per_image[b]:,.0f}" for b in batches) + " | "
                     + " | ".join(ratios) + " |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        allocator = f"-{args.allocator}" if info.device.type == "cpu" else ""
        write_docs(text, f"step_profile-{device_kind(info)}{allocator}", "benchmarks/step_profile.py")


if __name__ == "__main__":
    main()
