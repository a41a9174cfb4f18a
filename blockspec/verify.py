"""Cross-check the analysis against the real module: parameter count and every shape."""

from __future__ import annotations

import torch
from torch import nn

from blockspec.analysis import Analysis
from blockspec.build import build_model
from blockspec.spec import Spec


def measured_shapes(model: nn.Module, analysis: Analysis) -> list[tuple[int, ...]]:
    """Output shape of every built layer from one forward pass at the analysed input size."""
    model.eval()
    shapes: list[tuple[int, ...]] = []
    x = torch.zeros(1, *analysis.input_shape)
    with torch.no_grad():
        for block in model:
            for layer in block:
                x = layer(x)
                shapes.append(tuple(x.shape[1:]))
    return shapes


def verify_against_module(spec: Spec, analysis: Analysis) -> str:
    """One line saying whether the built module agrees with the analysis, and where not."""
    model = build_model(spec)
    params = sum(p.numel() for p in model.parameters())
    problems = []
    if params != analysis.total_params:
        problems.append(f"torch counts {params:,} parameters, the analysis {analysis.total_params:,}")
    for row, shape in zip(analysis.rows, measured_shapes(model, analysis)):
        if shape != row.out_shape:
            problems.append(f"{row.name}: forward gives {shape}, the analysis {row.out_shape}")
    if problems:
        return "✗ module differs from the analysis: " + "; ".join(problems)
    return f"✓ built module agrees: {params:,} parameters, {len(analysis.rows)} layer shapes"
