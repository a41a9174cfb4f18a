"""Receptive fields measured the hard way, from input gradients, to check the analysis' own.

The analysis composes each layer's declared window (`Geometry.field`); a layer whose module
sees more or less than it declares (a plugin's slip, or a bug) shows when the input gradient
of one output unit is measured. The model is copied with all-positive weights and fed a
positive input, so no ReLU ever zeroes a gradient and every pixel the unit depends on gets a
non-zero one. Max-pooling routes gradients to a single winner, so it is swapped for average
pooling of the same window (the receptive field is a property of the window, not of which
pixel wins); squeeze-and-excitation gates are removed: they scale channels by the whole
map's means, global context the receptive field does not count (docs/geometry.md), like `gap`.

The last spatial layer is measured first, with one backward pass; only when it differs are
the layers before it measured, to say where the difference starts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from blockspec.analysis import Analysis, LayerRow, trace
from blockspec.available_memory import available_memory
from blockspec.build import build_model
from blockspec.errors import SpecError
from blockspec.modules import SqueezeExcite
from blockspec.spec import Spec

Window = tuple[int, int, int, int]
"""(first row, last row, first column, last column) of input pixels."""

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class FieldCheck:
    """What the input gradients said: `status` for the summary line ("agrees", or why the
    receptive field was not compared) and each layer whose measured window differs."""

    status: str
    problems: tuple[str, ...] = ()

    @property
    def agrees(self) -> bool:
        return self.status == "agrees"


def positive_copy(model: nn.Module) -> nn.Module:
    """A copy with the same windows: all-positive weights, eval mode, max-pools replaced by
    avg-pools, squeeze-and-excitation gates removed, every norm the identity plus 0.01 (also
    one a residual's `zero_init` set to zero, which would cut its body off)."""
    model = copy.deepcopy(model)
    _swap_modules(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.fill_(0.01)
            elif isinstance(module, NORMS):
                if isinstance(module, nn.modules.batchnorm._NormBase):
                    module.reset_running_stats()
                if getattr(module, "weight", None) is not None:
                    module.weight.fill_(1.0)
                    module.bias.fill_(0.01)
    return model.eval()


def _swap_modules(model: nn.Module) -> None:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.MaxPool2d) and child.dilation in (1, (1, 1)):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode))
        elif isinstance(child, SqueezeExcite):
            setattr(model, name, nn.Identity())
        else:
            _swap_modules(child)


def probe_analysis(spec: Spec) -> Analysis | None:
    """The analysis at the smallest input, from twice the receptive field up, where the window
    of the last spatial layer's centre unit lies inside the image (geometry that only lines up
    at some sizes, a residual shortcut say, is skipped over), else at the spec's own size if
    the window lies inside it there; None without a spatial layer or such a size. At twice the
    field, a gradient that reaches the whole input means global context, not a wrong window."""
    own = trace(spec)
    row = own.rf_row
    if row is None:
        return None
    size = 2 * (row.rf + row.jump)
    for candidate in range(size, 4 * size + 64):
        try:
            analysis = trace(spec, (candidate, candidate), check_head=False)
        except SpecError:
            continue
        if _inside(_window(analysis.rf_row, analysis.rf_row.out_shape), candidate, candidate):
            return analysis
    # the spec's own size, where no larger one builds (an fc reading the map takes one size only)
    return own if _inside(_window(row, row.out_shape), *own.input_shape[1:]) else None


def _window(row: LayerRow, out_shape: tuple[int, ...]) -> Window:
    """The input pixels the centre unit of `row`'s output sees by the analysis (negative, or
    past the input, in the padding)."""
    first_h = row.field.start + (out_shape[1] // 2) * row.field.jump
    first_w = row.field.start + (out_shape[2] // 2) * row.field.jump
    return first_h, first_h + row.rf - 1, first_w, first_w + row.rf - 1


def _inside(window: Window, height: int, width: int) -> bool:
    return window[0] >= 0 and window[2] >= 0 and window[1] < height and window[3] < width


def check_fields(spec: Spec) -> FieldCheck:
    """The receptive field of the last spatial layer (rf, jump and start together, residual
    unions included) against the input pixels its centre unit's gradient reaches, in a model
    built for the probe size; where they differ, every spatial layer's, to name where the
    difference starts. Measured in float32 (float64's depthwise convolutions take seconds) and,
    where that differs, again in float64, where a deep network's smallest gradients cannot
    underflow. A module that cannot run at the probe size (a plugin's, built for the spec's
    input) leaves the field unmeasured, not the plugin blamed: it has run at the spec's size."""
    analysis = probe_analysis(spec)
    if analysis is None:
        return FieldCheck("not compared: no input size puts the last spatial layer's window inside the image")
    rows = analysis.rows[: analysis.rows.index(analysis.rf_row) + 1]
    height, width = analysis.input_shape[1:]
    needed = 3 * 8 * sum(math.prod(row.out_shape) for row in rows)  # float64 maps, kept for the backward pass
    available = available_memory()
    if available is not None and needed > available // 2:
        return FieldCheck(f"not measured: the probe at a {height}×{width} input needs about {needed / 2**30:.1f} GiB")
    probe_spec = spec.model_copy(update={"input": spec.input.model_copy(update={"size": (height, width)})})
    modules: list[nn.Module] = []  # built once; `.to` moves them to float64 in place for the second pass
    for dtype in (torch.float32, torch.float64):
        x = torch.full((1, *analysis.input_shape), 0.5, dtype=dtype, requires_grad=True)
        outputs, y, at = [], x, ""
        try:
            modules = modules or [m for block in positive_copy(build_model(probe_spec, check_head=False)) for m in block]
            for module, row in zip(modules, rows):
                at = f" at {row.name} ({row.kind})"
                y = module.to(dtype)(y)
                outputs.append(y)
            last = _measured(outputs[-1], x)
        except Exception as error:  # noqa: BLE001 (optional: the module has run at the spec's own size already)
            return FieldCheck(f"not measured: the model built for a {height}×{width} input fails in "
                              f"{str(dtype).removeprefix('torch.')}{at} "
                              f"({type(error).__name__}: {next(iter(str(error).splitlines()), '')})")
        if last == _window(rows[-1], rows[-1].out_shape):
            return FieldCheck("agrees")
    problems = []
    for row, output in zip(rows, outputs):
        expected = _window(row, row.out_shape)
        if not _inside(expected, height, width):
            continue  # the centre unit's window reaches into the padding at this size
        found = _measured(output, x)
        if found in (expected, (0, height - 1, 0, width - 1), None):
            continue
        problems.append(f"{row.name} ({row.kind} at {row.path}): the centre unit's input gradient reaches rows "
                        f"{found[0]}–{found[1]}, columns {found[2]}–{found[3]} of a {height}×{width} input, the "
                        f"analysis' field (rf {row.rf}, jump {row.jump}, start {row.field.start}) rows and columns "
                        f"{expected[0]}–{expected[1]}")
    if problems:
        return FieldCheck("differs", tuple(problems))
    return FieldCheck("not compared: global context (a group or layer norm, a squeeze-excite) reaches the whole input")


def _measured(output: torch.Tensor, x: torch.Tensor) -> Window | None:
    """The input pixels the gradient of `output`'s centre unit (channel 0) reaches; None where
    it reaches none (a norm of a constant map gives zeros, which a ReLU then cuts off)."""
    (gradient,) = torch.autograd.grad(output[0, 0, output.shape[2] // 2, output.shape[3] // 2], x, retain_graph=True)
    reached = gradient[0].abs().sum(dim=0) > 0
    rows, columns = reached.any(dim=1).nonzero().flatten(), reached.any(dim=0).nonzero().flatten()
    if len(rows) == 0:
        return None
    return int(rows.min()), int(rows.max()), int(columns.min()), int(columns.max())
