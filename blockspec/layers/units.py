"""Normalisation and activation for the layer kinds: the parameters a norm adds (and the maps
it cannot run on), checked from the spec alone, and the modules built (torch imported lazily,
so that the analysis never pays for it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blockspec.errors import fail

if TYPE_CHECKING:
    from torch import nn

    from blockspec.layers.base import Context


def norm_params(
    norm: str,
    channels: int,
    ctx: Context,
    positions: int | None,
    field: str = "norm",
    normalised: str = "this layer's output",
) -> int:
    """Learnable parameters of a normalisation layer (affine scale and shift).

    `positions` is H·W of the map it normalises (None for vectors): group norm (and layer
    norm, which is group norm with one group on maps) needs more than one value per group,
    or torch refuses to run it. `field` names the spec field that chose the norm and
    `normalised` what it normalises, for errors.
    """
    if norm == "none":
        return 0
    if norm == "group" and channels % ctx.norm_groups:
        raise fail(
            f"{ctx.path}.{field}",
            f"group norm with {ctx.norm_groups} groups needs a channel count divisible by "
            f"{ctx.norm_groups}; {normalised} has {channels} (set defaults.norm_groups)",
            norm,
        )
    # On a vector, layer norm is nn.LayerNorm (any width works) but group norm is still
    # GroupNorm, which refuses groups of one value.
    groups = {"group": ctx.norm_groups, "layer": None if positions is None else 1}.get(norm)
    if norm == "batch" and ctx.ghost_batch == 1 and positions == 1:
        raise fail(
            f"{ctx.path}.{field}",
            "ghost batch norm over groups of 1 image has one value per channel on a 1×1 map; "
            "raise defaults.ghost_batch",
            norm,
        )
    if groups and channels // groups * (positions or 1) < 2:
        where = "a vector" if positions is None else "a 1×1 map"
        raise fail(
            f"{ctx.path}.{field}",
            f"{norm} norm over {channels} channel(s) of {where} has one value per group; "
            "use batch norm here",
            norm,
        )
    return 2 * channels


def make_norm(norm: str, channels: int, ctx: Context, vector: bool = False) -> nn.Module:
    from torch import nn

    if norm == "batch":
        if vector:
            return nn.BatchNorm1d(channels)
        if ctx.ghost_batch:
            from blockspec.modules import GhostBatchNorm2d

            return GhostBatchNorm2d(channels, ctx.ghost_batch)
        return nn.BatchNorm2d(channels)
    from blockspec.modules import GroupNorm

    if norm == "group":
        return GroupNorm(ctx.norm_groups, channels)
    if norm == "layer":
        return nn.LayerNorm(channels) if vector else GroupNorm(1, channels)
    raise ValueError(f"no module for norm {norm!r}")


def make_act(act: str) -> nn.Module:
    """The activation named `act`; `none` is nn.Identity, for a slot that always holds one."""
    from torch import nn

    if act == "none":
        return nn.Identity()
    return {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "leaky_relu": nn.LeakyReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "hardswish": nn.Hardswish,
    }[act]()


def finish_unit(
    modules: list[tuple[str, nn.Module]],
    channels: int,
    norm: str,
    act: str,
    order: str,
    dropout: float,
    ctx: Context,
) -> nn.Module:
    """Append norm and activation in the spec's order, then dropout, as a named Sequential."""
    from collections import OrderedDict

    from torch import nn

    tail: list[tuple[str, nn.Module]] = []
    if norm != "none":
        tail.append(("norm", make_norm(norm, channels, ctx)))
    if act != "none":
        activation = ("act", make_act(act))
        tail.insert(len(tail) if order == "conv-norm-act" else 0, activation)
    if dropout:
        tail.append(("drop", nn.Dropout(dropout)))
    return nn.Sequential(OrderedDict(modules + tail))
