"""Cross-check the analysis against the real module: every layer's parameters, shape and MACs,
and the receptive field against input gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from blockspec.analysis import Analysis
from blockspec.available_memory import available_memory
from blockspec.build import build_model, is_out_of_memory
from blockspec.errors import fail
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


@dataclass(frozen=True)
class Measured:
    """One built layer as torch runs it on one image: its output shape, and its MACs as
    torch's FlopCounterMode counts them (convolutions and matrix products, half its FLOPs:
    blockspec's convention, weight multiply-accumulates only)."""

    out_shape: tuple[int, ...]
    macs: int


def measure_layers(model: nn.Module, analysis: Analysis, layers: Sequence[LayerSpec] = ()) -> list[Measured]:
    """Every built layer measured in one forward pass at the analysed input size, up to the
    first whose shape differs from the analysis (the next layer would get an input of a
    shape it was not built for). With the spec's `layers` (in row order), an exception in a
    plugin's forward pass is reported as the plugin's."""
    _check_memory_for_forward(analysis)
    model.eval()
    measured: list[Measured] = []
    modules = [layer for block in model for layer in block]
    where = "input.size"  # then the layer running
    try:
        x = torch.zeros(1, *analysis.input_shape)
        with torch.no_grad():
            for index, (module, row) in enumerate(zip(modules, analysis.rows)):
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


def _body_problems(layer: ResidualSpec, in_shape: Shape, ctx: Context, module: nn.Module) -> list[str]:
    """Each body layer of a residual (nested ones too) compared as the network's layers are,
    run alone on a zero map of the analysed input shape, up to the first whose shape differs."""
    problems = []
    x = torch.zeros(1, *in_shape)
    with torch.no_grad():
        for (inner, shape, geometry, inner_ctx), built in zip(layer.body_steps(in_shape, ctx), module.body, strict=True):
            where = f"{inner.kind} at {inner_ctx.path}"
            counted = sum(p.numel() for p in built.parameters())
            if counted != geometry.params:
                problems.append(f"{where}: torch counts {counted:,} parameters, the analysis {geometry.params:,}")
            if isinstance(inner, ResidualSpec):
                problems += _body_problems(inner, shape, inner_ctx, built)
            built.eval()
            with plugin_code(inner, inner_ctx.path, "in its forward pass"), FlopCounterMode(display=False) as flops:
                x = built(x)
            if tuple(x.shape[1:]) != geometry.out_shape:
                problems.append(f"{where}: forward gives {tuple(x.shape[1:])}, the analysis {geometry.out_shape} (the "
                                "layers after it were not run)")
                break
            if flops.get_total_flops() // 2 != geometry.macs:
                problems.append(f"{where}: torch counts {flops.get_total_flops() // 2:,} MACs, the analysis {geometry.macs:,}")
    return problems


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
    ctx = Context(path="", norm_groups=spec.defaults.norm_groups, ghost_batch=spec.defaults.ghost_batch)
    problems = [problem for layer, row, module in zip(layers, analysis.rows, modules, strict=True)
                if isinstance(layer, ResidualSpec)
                for problem in _body_problems(layer, row.in_shape, replace(ctx, path=row.path), module)]
    if problems:  # named where they start, not at the residual around them
        return Verification(sum(p.numel() for p in model.parameters()), len(analysis.rows), tuple(problems))
    for row, module in zip(analysis.rows, modules):
        counted = sum(p.numel() for p in module.parameters())
        if counted != row.params:
            problems.append(f"{row.name} ({row.kind} at {row.path}): torch counts {counted:,} parameters, the analysis {row.params:,}")
    for row, measured in zip(analysis.rows, measure_layers(model, analysis, layers)):
        if measured.out_shape != row.out_shape:
            problems.append(f"{row.name} ({row.kind} at {row.path}): forward gives {measured.out_shape}, the analysis "
                            f"{row.out_shape} (the layers after it were not run)")
        elif measured.macs != row.macs:
            problems.append(f"{row.name} ({row.kind} at {row.path}): torch counts {measured.macs:,} MACs, the analysis "
                            f"{row.macs:,}")
    params = sum(p.numel() for p in model.parameters())
    if problems:  # the field is measured on layers that run as analysed
        return Verification(params, len(analysis.rows), tuple(problems))
    field = check_fields(spec)
    return Verification(params, len(analysis.rows), field.problems, field, analysis.receptive_field)
