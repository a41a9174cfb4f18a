"""Receptive fields measured the hard way, from input gradients, to check the analysis' own.

The analysis composes each layer's declared window (`Geometry.field`); a layer whose module
sees more or less than it declares (a plugin's slip, or a bug) shows when the input gradient
of one output unit is measured. The model is copied with all-positive weights and fed a
positive input, so no ReLU ever zeroes a gradient and every pixel the unit depends on gets a
non-zero one. Max-pooling routes gradients to a single winner, so it is swapped for average
pooling of the same window (the receptive field is a property of the window, not of which
pixel wins); squeeze-and-excitation gates are removed: they scale channels by the whole
map's means, global context the receptive field does not count (docs/geometry.md), like `gap`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from blockspec.analysis import Analysis, LayerRow, trace
from blockspec.build import build_model
from blockspec.errors import SpecError
from blockspec.layers import LayerSpec, plugin_code
from blockspec.modules import SqueezeExcite
from blockspec.spec import Spec


@dataclass(frozen=True)
class FieldCheck:
    """Spatial layers whose measured window was compared with the analysis', those whose
    gradient reached the whole input (global context: a group or layer norm, a plugin's
    attention), and the differences."""

    compared: int
    global_context: int
    problems: tuple[str, ...]


def positive_copy(model: nn.Module) -> nn.Module:
    """A copy with the same windows: all-positive weights, eval mode, max-pools replaced by
    avg-pools, squeeze-and-excitation gates removed."""
    model = copy.deepcopy(model)
    _swap_modules(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.fill_(0.01)
            elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                module.reset_running_stats()
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
    of the last spatial layer's centre unit lies inside the image (geometry that only lines up at some sizes, a residual
    shortcut say, is skipped over); None without a spatial layer or such a size."""
    row = trace(spec).rf_row
    if row is None:
        return None
    size = 2 * (row.rf + row.jump)  # twice the field: a layer whose gradient reaches all of it has global context
    for candidate in range(size, 4 * size + 64):
        try:
            analysis = trace(spec, (candidate, candidate), check_head=False)
        except SpecError:
            continue
        if _inside(_window(analysis.rf_row, analysis.rf_row.out_shape), candidate, candidate):
            return analysis
    return None


def _window(row: LayerRow, out_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(first row, last row, first column, last column) of input pixels the centre unit of
    `row`'s output sees by the analysis (negative, or past the input, in the padding)."""
    first_h = row.field.start + (out_shape[1] // 2) * row.field.jump
    first_w = row.field.start + (out_shape[2] // 2) * row.field.jump
    return first_h, first_h + row.rf - 1, first_w, first_w + row.rf - 1


def _inside(window: tuple[int, int, int, int], height: int, width: int) -> bool:
    return window[0] >= 0 and window[2] >= 0 and window[1] < height and window[3] < width


def check_fields(spec: Spec, layers: Sequence[LayerSpec]) -> FieldCheck:
    """Each spatial layer's receptive field (rf, jump and start together, residual unions
    included) against the input rows and columns its centre unit's gradient reaches, at the
    probe size; `layers` (the spec's, in row order) name a plugin whose module fails."""
    analysis = probe_analysis(spec)
    if analysis is None:
        return FieldCheck(0, 0, ())
    rows = analysis.rows[: analysis.rows.index(analysis.rf_row) + 1]
    modules = [module for block in positive_copy(build_model(spec)) for module in block]
    height, width = analysis.input_shape[1:]
    x = torch.full((1, *analysis.input_shape), 0.5, dtype=torch.float64, requires_grad=True)
    outputs, y = [], x
    for module, row, layer in zip(modules, rows, layers):
        with plugin_code(layer, row.path, "in its forward pass in float64 (measuring the receptive field)"):
            y = module.double()(y)
        outputs.append(y)
    compared, global_context, problems = 0, 0, []
    for row, y in zip(rows, outputs):
        expected = _window(row, tuple(y.shape[1:]))
        if not _inside(expected, height, width):
            continue  # the centre unit's window reaches into the padding at this size
        (gradient,) = torch.autograd.grad(y[0, 0, y.shape[2] // 2, y.shape[3] // 2], x, retain_graph=True)
        reached = gradient[0].abs().sum(dim=0) > 0
        hit_rows, hit_columns = reached.any(dim=1).nonzero().flatten(), reached.any(dim=0).nonzero().flatten()
        measured = (int(hit_rows.min()), int(hit_rows.max()), int(hit_columns.min()), int(hit_columns.max()))
        if measured == expected:
            compared += 1
        elif measured == (0, height - 1, 0, width - 1):
            global_context += 1
        else:
            problems.append(f"{row.name} ({row.kind} at {row.path}): the centre unit's input gradient reaches rows "
                            f"{measured[0]}–{measured[1]}, columns {measured[2]}–{measured[3]} of a {height}×{width} "
                            f"input, the analysis' field (rf {row.rf}, jump {row.jump}, start {row.field.start}) rows "
                            f"and columns {expected[0]}–{expected[1]}")
    return FieldCheck(compared, global_context, tuple(problems))
