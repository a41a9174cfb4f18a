"""The few torch modules blockspec defines itself (everything else is stock `torch.nn`)."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
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
    """A depthwise convolution tuned for training on a CPU; elsewhere a plain `nn.Conv2d`.

    Two CPU changes, both computing the same function: under bf16 autocast it computes in
    fp32 (oneDNN's bf16 depthwise backward is slower than its fp32 one, so keeping only these
    convolutions in fp32 makes the rest of the network's bf16 speed-up a net gain,
    benchmarks/cpu_modes.py); and a dilated one on a channels-last map trains as an
    undilated one on the map's sub-grids (`_splits_into_phases`).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        if torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return self._cpu_forward(x.float())
        return self._cpu_forward(x)

    def _cpu_forward(self, x: Tensor) -> Tensor:
        dilation = self.dilation[0]
        if torch.is_grad_enabled() and self._splits_into_phases(x):
            phases = F.conv2d(_split_phases(x, dilation), self.weight, self.bias,
                              padding=self.kernel_size[0] // 2, groups=self.groups)
            return _merge_phases(phases, dilation, x.shape[0])
        return super().forward(x)

    def _splits_into_phases(self, x: Tensor) -> bool:
        """Whether this is a dilated 'same' convolution of a channels-last map that
        `_split_phases` can undilate.

        oneDNN's CPU backward for a channels-last dilated depthwise convolution is several
        times slower than for an undilated one (benchmarks/dilated_depthwise.py). A stride-1
        convolution with dilation d only mixes pixels whose rows and columns agree modulo d,
        so it equals an undilated one on the d² interleaved sub-grids of the map, stacked
        along the batch. In NCHW the rearranging copies cost what the split saves, so NCHW
        maps, and exported graphs, keep the plain convolution.
        """
        (dilation, dilation_w), (kernel, kernel_w) = self.dilation, self.kernel_size
        return (
            dilation > 1 and dilation == dilation_w and kernel == kernel_w and kernel % 2 == 1
            and self.stride == (1, 1) and self.padding_mode == "zeros"
            and self.padding == (dilation * (kernel // 2),) * 2
            and _is_channels_last(x) and x.shape[2] % dilation == 0 and x.shape[3] % dilation == 0
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()
        )


def _split_phases(x: Tensor, d: int) -> Tensor:
    """(n, c, h, w) → (n·d², c, h/d, w/d), channels-last: the sub-grids x[..., i::d, j::d].

    Rearranged through the (n, h, w, c) view, so that the gradient coming back is
    channels-last too (through the NCHW view it would come back NCHW, and every batch norm
    and activation before it would run on mixed layouts).
    """
    n, c, h, w = x.shape
    grid = x.permute(0, 2, 3, 1).unflatten(2, (w // d, d)).unflatten(1, (h // d, d))  # n, h/d, i, w/d, j, c
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(n * d * d, h // d, w // d, c).permute(0, 3, 1, 2)


def _merge_phases(phases: Tensor, d: int, n: int) -> Tensor:
    """The inverse of `_split_phases`, channels-last both ways."""
    _, c, h, w = phases.shape
    grid = phases.permute(0, 2, 3, 1).unflatten(0, (n, d, d))  # n, i, j, h, w, c
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(n, h * d, w * d, c).permute(0, 3, 1, 2)


class Conv2d(nn.Conv2d):
    """nn.Conv2d that, training on a CPU, keeps strided convolutions away from two faults of
    torch 2.13's CPU kernels, computing the same function by other means (evaluation and
    export keep the plain convolution; the state_dict is nn.Conv2d's):

    - a strided 1×1 convolution's backward on a channels-last map of fewer than 16 channels
      corrupts memory and kills the process (an image's first layer, a residual's projection
      shortcut): it takes every stride-th pixel first and convolves with stride 1;
    - under bf16 autocast, a convolution whose stride exceeds the map's side (one output
      along it) gets NaN or wrong weight gradients on the taps that only ever see padding
      (tests/test_cpu_kernel_faults.py): along a side with one output it pads, keeps the
      window that output reads and convolves with stride 1.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or x.device.type != "cpu" or self.stride == (1, 1):
            return super().forward(x)
        if self.kernel_size == (1, 1) and self.padding == (0, 0):
            layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
            sampled = x[:, :, :: self.stride[0], :: self.stride[1]].contiguous(memory_format=layout)
            return F.conv2d(sampled, self.weight, self.bias, 1, 0, self.dilation, self.groups)
        sides = [_one_output(*side) for side in zip(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation)]
        if not any(sides):
            return super().forward(x)
        return self._one_window_forward(x, sides)

    def _one_window_forward(self, x: Tensor, one_output: list[bool]) -> Tensor:
        """Pads x, and along each side with one output keeps only the window it reads."""
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        padded = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
        strides = list(self.stride)
        for side, (k, d) in enumerate(zip(self.kernel_size, self.dilation)):
            if one_output[side]:
                padded, strides[side] = padded.narrow(side + 2, 0, d * (k - 1) + 1), 1
        return F.conv2d(padded, self.weight, self.bias, tuple(strides), 0, self.dilation, self.groups)


def _one_output(size: int, k: int, stride: int, padding: int, dilation: int) -> bool:
    """Whether a strided window gives one output along a side of `size` pixels."""
    return stride > 1 and size + 2 * padding - dilation * (k - 1) - 1 < stride


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (and layer norm on maps) that, training on a CPU, hands its backward a
    contiguous input when the input takes no gradient itself (the image, a frozen layer's
    output): torch 2.13's CPU backward for the scale and shift alone crashes the process on a
    channels-last or permuted input. Evaluation and export keep the plain group norm."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.device.type == "cpu" and torch.is_grad_enabled() and not x.requires_grad:
            x = x.clone(memory_format=torch.contiguous_format)
        return super().forward(x)


class GhostBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training, normalises each group of `ghost_batch` images by that
    group's own statistics (ghost batch norm, Hoffer et al. 2017).

    Why: statistics from fewer images are noisier, a regulariser that fast CIFAR-10 recipes
    use at large batches. Evaluation, export and the running statistics' meaning are plain
    BatchNorm2d's: each group updates them, with the momentum scaled so that one training
    step moves them as far as one whole-batch update would. With `momentum` None (a cumulative
    average, as torch's `swa_utils.update_bn` sets to recompute them) it takes whole-batch
    statistics like BatchNorm2d: only the running statistics matter then.
    """

    def __init__(self, channels: int, ghost_batch: int) -> None:
        super().__init__(channels)
        self.ghost_batch = ghost_batch

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.momentum is None or x.shape[0] <= self.ghost_batch:
            return super().forward(x)
        groups = list(x.split(self.ghost_batch))
        if groups[-1].shape[0] * x.shape[2] * x.shape[3] == 1:  # one value a channel has no variance
            groups[-2:] = [torch.cat(groups[-2:])]  # the last image joins the group before it
        momentum = 1.0 - (1.0 - self.momentum) ** (1.0 / len(groups))
        self.num_batches_tracked.add_(1)
        state = (self.running_mean, self.running_var, self.weight, self.bias)
        return torch.cat([F.batch_norm(group, *state, True, momentum, self.eps) for group in groups])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_batch={self.ghost_batch}"


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
