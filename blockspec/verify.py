"""Cross-check the analysis against the real module: every layer's parameters, shape and MACs,
and the receptive field against input gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from blockspec.analysis import Analysis, root_context
from blockspec.available_memory import available_memory
from blockspec.build import build_model
from blockspec.errors import fail, is_out_of_memory
from blockspec.field_probe import FieldCheck, check_fields
from blockspec.layers import Context, LayerSpec, Shape, expand, plugin_code
from blockspec.layers.residual import ResidualSpec
from blockspec.spec import Spec


@dataclass(frozen=True)
class Verification:
    """What `build-summary --verify` found: the module's parameter count and the differences."""

    params: int
    layers: int
    problems: tuple[str, ...]
    field: FieldCheck = FieldCheck("not compared: the layers differ")
    receptive_field: int = 1

    def __str__(self) -> str:
        if self.problems:
            return "✗ module differs from the analysis: " + "; ".join(self.problems)
        field = f"receptive field {self.receptive_field} (input gradients)" if self.field.agrees \
            else f"receptive field {self.field.status}"
        return f"✓ built module agrees: {self.params:,} parameters, {self.layers} layer shapes and MACs, {field}"

    def to_dict(self) -> dict[str, Any]:
        return {"agrees": not self.problems, "module_params": self.params, "receptive_field": self.field.status,
                "problems": list(self.problems)}


@dataclass(frozen=True)
class Measured:
    """One built layer as torch runs it on one image: its output shape, and its MACs as
    torch's FlopCounterMode counts them (convolutions and matrix products, half its FLOPs:
    blockspec's convention, weight multiply-accumulates only)."""

    out_shape: tuple[int, ...]
    macs: int


def measure_layers(
    model: nn.Module, analysis: Analysis, layers: Sequence[LayerSpec] = (), upto: int | None = None
) -> list[Measured]:
    """Every built layer measured in one forward pass at the analysed input size, up to the
    first whose shape differs from the analysis (the next layer would get an input of a
    shape it was not built for), or before layer `upto` (one known not to run). With the
    spec's `layers` (in row order), an exception in a plugin's forward pass is reported as
    the plugin's."""
    _check_memory_for_forward(analysis)
    model.eval()
    measured: list[Measured] = []
    modules = [layer for block in model for layer in block]
    where = "input.size"  # then the layer running
    try:
        x = torch.zeros(1, *analysis.input_shape)
        with torch.no_grad():
            for index, (module, row) in enumerate(zip(modules[:upto], analysis.rows)):
                where = row.path
                with plugin_code(layers[index], row.path, "in its forward pass") if layers else nullcontext():
                    with FlopCounterMode(display=False) as flops:
                        x = module(x)
                measured.append(Measured(tuple(x.shape[1:]), flops.get_total_flops() // 2))
                if measured[-1].out_shape != row.out_shape:
                    break
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        raise fail(where, f"a forward pass at a {_size(analysis)} input needs more memory than this machine has") from None
    return measured


@dataclass(frozen=True)
class BodyCheck:
    """A residual's body compared layer by layer: the differences, and whether every body
    layer gave its analysed shape (else the residual's sum cannot run)."""

    problems: list[str]
    runs: bool


def _body_check(layer: ResidualSpec, in_shape: Shape, ctx: Context, module: nn.Module) -> BodyCheck:
    """Each body layer of a residual compared as the network's layers are, run alone on a zero
    map of the analysed input shape, up to the first whose shape differs; a nested residual
    whose own body differs is named by its body's layers alone."""
    problems: list[str] = []
    x = torch.zeros(1, *in_shape)
    with torch.no_grad():
        for (inner, shape, geometry, inner_ctx), built in zip(layer.body_steps(in_shape, ctx), module.body, strict=True):
            where = f"{inner.kind} at {inner_ctx.path}"
            nested = _body_check(inner, shape, inner_ctx, built) if isinstance(inner, ResidualSpec) else None
            if nested is not None and nested.problems:
                problems += nested.problems
                if not nested.runs:
                    return BodyCheck(problems, False)
            named_inside = nested is not None and bool(nested.problems)
            counted = sum(p.numel() for p in built.parameters())
            if counted != geometry.params and not named_inside:
                problems.append(_counts_differ(where, "parameters", counted, geometry.params))
            built.eval()
            with plugin_code(inner, inner_ctx.path, "in its forward pass"), FlopCounterMode(display=False) as flops:
                x = built(x)
            if tuple(x.shape[1:]) != geometry.out_shape:
                problems.append(_shape_differs(where, tuple(x.shape[1:]), geometry.out_shape))
                return BodyCheck(problems, False)
            if flops.get_total_flops() // 2 != geometry.macs and not named_inside:
                problems.append(_counts_differ(where, "MACs", flops.get_total_flops() // 2, geometry.macs))
    return BodyCheck(problems, True)


def _counts_differ(where: str, what: str, torch_count: int, analysed: int) -> str:
    return f"{where}: torch counts {torch_count:,} {what}, the analysis {analysed:,}"


def _shape_differs(where: str, found: tuple[int, ...], analysed: tuple[int, ...]) -> str:
    """A layer whose shape differs ends the comparison: the next was built for another input."""
    return f"{where}: forward gives {found}, the analysis {analysed} (the layers after it were not run)"


def _check_memory_for_forward(analysis: Analysis) -> None:
    """Refuse a forward pass whose largest map alone exceeds the available memory: it would
    not fail cleanly but swap, or wake the kernel's out-of-memory killer."""
    available = available_memory()
    row = max(analysis.rows, key=lambda row: math.prod(row.out_shape))
    needed = 4 * math.prod(row.out_shape)  # float32, one image
    if available is not None and needed > available:
        raise fail(row.path, f"at a {_size(analysis)} input its output alone takes {needed / 2**30:,.1f} GiB, more than the "
                   f"{available / 2**30:,.1f} GiB of memory available")


def _size(analysis: Analysis) -> str:
    return "×".join(map(str, analysis.input_shape[1:]))


def verify_against_module(spec: Spec, analysis: Analysis) -> Verification:
    """Build the module, then compare each layer's parameter count, output shape and MACs
    (a residual's body layer by layer first), and, where those agree, the receptive field
    (field_probe.check_fields)."""
    model = build_model(spec)
    layers = [layer for block in spec.blocks.values() for _, _, layer in expand(block)]
    modules = [module for block in model for module in block]
    _check_memory_for_forward(analysis)
    bodies = {index: _body_check(layer, row.in_shape, replace(root_context(spec), path=row.path), module)
              for index, (layer, row, module) in enumerate(zip(layers, analysis.rows, modules, strict=True))
              if isinstance(layer, ResidualSpec)}
    differing = {index: body for index, body in bodies.items() if body.problems}  # named where they start
    stop = next((index for index, body in differing.items() if not body.runs), None)  # its sum cannot run
    problems = []
    for index, (row, module) in enumerate(zip(analysis.rows, modules)):
        counted = sum(p.numel() for p in module.parameters())
        if index in differing:
            problems += differing[index].problems
        elif counted != row.params:
            problems.append(_counts_differ(f"{row.name} ({row.kind} at {row.path})", "parameters", counted, row.params))
    measured = measure_layers(model, analysis, layers, upto=stop)
    for index, (row, found) in enumerate(zip(analysis.rows, measured)):
        where = f"{row.name} ({row.kind} at {row.path})"
        if found.out_shape != row.out_shape:
            problems.append(_shape_differs(where, found.out_shape, row.out_shape))
        elif found.macs != row.macs and index not in differing:
            problems.append(_counts_differ(where, "MACs", found.macs, row.macs))
    params = sum(p.numel() for p in model.parameters())
    if problems:  # the field is measured on layers that run as analysed
        return Verification(params, len(analysis.rows), tuple(problems))
    field = check_fields(spec)
    return Verification(params, len(analysis.rows), field.problems, field, analysis.receptive_field)
