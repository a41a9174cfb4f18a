"""The few torch modules blockspec defines itself (everything else is stock `torch.nn`)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn


class Residual(nn.Module):
    """y = act(body(x) + shortcut(x))."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """Scales each channel by a gate in (0, 1) computed from the channel means of the map."""

    def __init__(self, channels: int, hidden: int, act: nn.Module) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = act
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        squeezed = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(squeezed))))


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution that computes in fp32 under CPU bf16 autocast.

    oneDNN's bf16 depthwise backward is slower than its fp32 one, so on a CPU with bf16
    instructions the depthwise-heavy flagship trained faster in fp32 than in bf16; keeping
    only these convolutions in fp32 makes the rest of the network's bf16 speed-up a net gain
    (benchmarks/cpu_modes.py). Elsewhere (CUDA, fp32, export) it is a plain `nn.Conv2d`.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """`AdaptiveAvgPool2d(1)` that, training on a CPU, hands a channels-last input's gradient
    back channels-last.

    The CPU pooling backward returns it NCHW, and through the residual shortcuts that layout
    reaches every activation and batch norm of the last stages, whose backward then runs on
    mixed layouts: with GELU, 3–4× slower for those two operators and about a quarter of the
    flagship's training step (docs/benchmarks.md).
    """

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.requires_grad and x.device.type == "cpu" and _is_channels_last(x):
            x = _ChannelsLastGradient.apply(x)
        return super().forward(x)


def _is_channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class _ChannelsLastGradient(torch.autograd.Function):
    """The identity, whose backward returns its gradient in channels-last memory."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


class BlockNet(nn.Sequential):
    """The built network: one child per spec block (`model.C1`, …, `model.output`)."""

    def __init__(self, name: str, blocks: OrderedDict[str, nn.Module]) -> None:
        super().__init__(blocks)
        self.spec_name = name

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}"
