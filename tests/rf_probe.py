"""Receptive fields measured the hard way: from input gradients of one output unit.

All weights are made positive and the input is positive, so no ReLU ever zeroes a
gradient and every pixel the unit depends on gets a non-zero gradient. Max-pooling routes
gradients to a single winner, so it is swapped for average pooling of the same geometry
(the receptive field is a property of the window, not of which pixel wins). A
squeeze-and-excitation gate is dropped: it scales channels by the whole map's means, global
context that the receptive field does not count (docs/geometry.md), like `gap`.
"""

from __future__ import annotations

import torch
from torch import nn

from blockspec import SpecError, build_model
from blockspec.analysis import Analysis, trace
from blockspec.modules import SqueezeExcite
from blockspec.spec import Spec


def positive_copy(model: nn.Module) -> nn.Module:
    """Same windows, all-positive weights, eval mode, max-pools replaced by avg-pools,
    squeeze-and-excitation gates removed."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
        elif isinstance(child, SqueezeExcite):
            setattr(model, name, nn.Identity())
        else:
            positive_copy(child)
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


def spatial_prefix(model: nn.Module, analysis: Analysis) -> list[nn.Module]:
    """The built layers up to and including the analysis' receptive-field layer."""
    layers = [layer for block in model for layer in block]
    row = analysis.rf_row
    assert row is not None, "no spatial layer to measure"
    return layers[: analysis.rows.index(row) + 1]


def probe_size(spec: Spec) -> Analysis:
    """The analysis at the smallest input where the centre unit's window is off the border.

    Geometry that only lines up at some sizes (a residual shortcut, say) is skipped over.
    """
    row = trace(spec).rf_row
    assert row is not None, "no spatial layer to measure"
    size = row.rf + 2 * row.jump
    for candidate in range(size, 4 * size + 64):
        try:
            analysis = trace(spec, (candidate, candidate), check_head=False)
        except SpecError:
            continue
        probe = analysis.rf_row
        centre = probe.out_shape[1] // 2
        first = probe.field.start + centre * probe.jump
        if first >= 0 and first + probe.rf <= candidate:
            return analysis
    raise AssertionError("no input size keeps the probed window inside the image")


def measured_window(spec: Spec) -> tuple[int, int, int, Analysis]:
    """(first row, last row, centre unit index, analysis used) of non-zero input gradient.

    Rows are along H; the analysis is the one at the probing input size.
    """
    analysis = probe_size(spec)
    layers = spatial_prefix(positive_copy(build_model(spec)), analysis)
    x = torch.full((1, *analysis.input_shape), 0.5, dtype=torch.float64, requires_grad=True)
    y = x
    for layer in layers:
        y = layer.double()(y)
    centre = y.shape[2] // 2
    y[0, 0, centre, centre].backward()
    rows = torch.nonzero(x.grad[0].abs().sum(dim=(0, 2)) > 0).flatten()
    return int(rows.min()), int(rows.max()), centre, analysis
