"""One dilated depthwise convolution's forward + backward on a CPU: torch's own against
blockspec's `DepthwiseConv2d`, which trains it as an undilated convolution on the map's d²
interleaved sub-grids (`blockspec/modules.py`), in both memory formats, interleaved rounds.

    python benchmarks/dilated_depthwise.py                      # the flagship's C3/C4 shape
    python benchmarks/dilated_depthwise.py --batch 128 --channels 128 --size 16 --dilation 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from blockspec.modules import DepthwiseConv2d


def milliseconds(forward, x: torch.Tensor, grad: torch.Tensor, steps: int, warmup: int) -> float:
    """Mean ms of forward + backward after `warmup` unmeasured ones."""
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        forward(x).backward(grad)
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--dilation", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    d, c = args.dilation, args.channels
    conv = DepthwiseConv2d(c, c, 3, padding=d, dilation=d, groups=c, bias=False)
    paths = {
        "torch F.conv2d, dilated": lambda x: F.conv2d(x, conv.weight, padding=d, dilation=d, groups=c),
        "blockspec DepthwiseConv2d (sub-grids)": conv,
        "torch F.conv2d, undilated (reference point)": lambda x: F.conv2d(x, conv.weight, padding=1, groups=c),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for layout, memory_format in (("channels-last", torch.channels_last), ("NCHW", torch.contiguous_format)):
            x = torch.randn(args.batch, c, args.size, args.size).contiguous(memory_format=memory_format)
            x.requires_grad_()
            grad = torch.randn_like(x)
            for name, forward in paths.items():
                times.setdefault((layout, name), []).append(milliseconds(forward, x, grad, args.steps, args.warmup))
    print(f"batch {args.batch}, {c} channels, {args.size}×{args.size}, dilation {d}, "
          f"{torch.get_num_threads()} torch threads; median of {args.rounds} rounds of {args.steps} "
          f"forward + backward after {args.warmup} warm-up ones\n")
    print("| memory format | convolution | ms |\n|---|---|---:|")
    for (layout, name), values in times.items():
        print(f"| {layout} | {name} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
