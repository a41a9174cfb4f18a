"""The last spatial layer's receptive field measured from input gradients, for the tests.

The positive copy of the model and the probing input size are blockspec.field_probe's (which
`build-summary --verify` runs on every spatial layer); this measures the last one's rows on
its own, by a backward pass of its own, so the tests of the analysis do not rest on that
module's comparison alone.
"""

from __future__ import annotations

import torch
from torch import nn

from blockspec import build_model
from blockspec.analysis import Analysis
from blockspec.field_probe import positive_copy, probe_analysis
from blockspec.spec import Spec


def spatial_prefix(model: nn.Module, analysis: Analysis) -> list[nn.Module]:
    """The built layers up to and including the analysis' receptive-field layer."""
    layers = [layer for block in model for layer in block]
    row = analysis.rf_row
    assert row is not None, "no spatial layer to measure"
    return layers[: analysis.rows.index(row) + 1]


def measured_window(spec: Spec) -> tuple[int, int, int, Analysis]:
    """(first row, last row, centre unit index, analysis used) of non-zero input gradient.

    Rows are along H; the analysis is the one at the probing input size.
    """
    analysis = probe_analysis(spec)
    assert analysis is not None, "no input size keeps the probed window inside the image"
    layers = spatial_prefix(positive_copy(build_model(spec)), analysis)
    x = torch.full((1, *analysis.input_shape), 0.5, dtype=torch.float64, requires_grad=True)
    y = x
    for layer in layers:
        y = layer.double()(y)
    centre = y.shape[2] // 2
    y[0, 0, centre, centre].backward()
    rows = torch.nonzero(x.grad[0].abs().sum(dim=(0, 2)) > 0).flatten()
    return int(rows.min()), int(rows.max()), centre, analysis
