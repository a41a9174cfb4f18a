"""Where blockspec's CPU speed comes from: one network's training steps in each numeric mode.

The model alone (random inputs, no data loading) under fp32 or bf16 autocast, NCHW or
channels-last memory, and optionally torch.compile, measured in interleaved rounds in one
process. It explains the choice `pick_device` makes on a CPU (channels-last always; bf16
only where the CPU has bf16 instructions) and what blockspec's own layers add over the stock
torch ones (`reference_loop.stock_layers`: depthwise convolutions in fp32 inside bf16
autocast, dilated ones split into undilated phases, global pooling's channels-last
gradient); `--compile` adds a torch.compile row.

    python benchmarks/cpu_modes.py --write
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from reference_loop import stock_layers  # this script's folder is on sys.path
from torch import nn
from train_speed import device_kind, shown_path, write_docs

from blockspec import load_spec
from blockspec.build import build_model
from blockspec.train.device import pick_device

ROOT = Path(__file__).resolve().parents[1]
# (channels-last, bf16 autocast, torch.compile, stock torch layers instead of blockspec's)
MODES = [
    (False, False, False, True),
    (False, False, False, False),
    (False, True, False, False),
    (True, False, False, True),
    (True, False, False, False),
    (True, True, False, True),
    (True, True, False, False),
]


def steps_per_second(
    spec, batch: int, channels_last: bool, bf16: bool, compiled: bool, stock: bool, steps: int, warmup: int
) -> float:
    """Images/s of SGD steps of the spec's network on one fixed random batch."""
    torch.manual_seed(0)
    model = stock_layers(build_model(spec)) if stock else build_model(spec)
    x = torch.randn(batch, spec.input.channels, *spec.input.hw)
    y = torch.randint(0, spec.classes, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    criterion = nn.CrossEntropyLoss()
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "architectures" / "flagship.yaml"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="add a compiled channels-last row")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    spec = load_spec(args.spec)
    cpu = pick_device("cpu")  # as `blockspec train` would pick its numeric mode on this CPU
    native_bf16 = cpu.autocast_dtype is not None
    # Without bf16 instructions the CPU emulates bf16 (many times slower): blockspec trains in
    # fp32 there, so only the fp32 modes are timed.
    modes = [mode for mode in MODES if native_bf16 or not mode[1]]
    modes += [(True, native_bf16, True, False)] if args.compile else []
    speeds: dict[tuple[bool, bool, bool, bool], list[float]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            speeds[mode].append(steps_per_second(spec, args.batch, *mode, args.steps, args.warmup))
            print(mode, f"{speeds[mode][-1]:.0f} img/s", flush=True)
    baseline = float(np.median(speeds[MODES[0]]))
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}, spec `{shown_path(args.spec)}`, batch {args.batch}, "
        f"{torch.get_num_threads()} torch threads, CPU bf16 instructions: "
        f"{'yes' if native_bf16 else 'no (fp32 modes only)'}; median of {args.rounds} interleaved rounds of "
        f"{args.steps} steps after {args.warmup} warm-up steps (compilation time not counted).",
        "",
        "| memory format | precision | layers | torch.compile | images/s | × first row |",
        "|---|---|---|---|---:|---:|",
    ]
    for (channels_last, bf16, compiled, stock), values in speeds.items():
        speed = float(np.median(values))
        lines.append(
            f"| {'channels-last' if channels_last else 'NCHW'} | {'bf16 autocast' if bf16 else 'fp32'} | "
            f"{'torch' if stock else 'blockspec'} | {'yes' if compiled else 'no'} | {speed:,.0f} | {speed / baseline:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.write:
        # the suffix train_speed.py and step_profile.py give this kind of CPU: "" or "-fp32"
        write_docs(text, "cpu_modes" + device_kind(cpu).removeprefix("cpu"), "benchmarks/cpu_modes.py")


if __name__ == "__main__":
    main()
