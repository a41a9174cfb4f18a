"""Layers that turn a pooled map into class scores: `fc`, `flatten`, `logsoftmax`."""

from __future__ import annotations

from collections import OrderedDict
from math import prod
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from blockspec.errors import fail
from blockspec.fields import Act, PositiveInt, Probability
from blockspec.layers.base import Context, Geometry, LayerSpec, Shape
from blockspec.layers.units import make_act

if TYPE_CHECKING:
    from torch import nn


class FcSpec(LayerSpec):
    """Linear layer on a vector or a 1×1 map (flattened first); its own act/dropout/bias.

    Unlike convolutions it does not take `defaults`: the last fc is nearly always a plain
    linear map to the class scores.
    """

    kind: Literal["fc"] = "fc"
    out: PositiveInt = Field(description="output features")
    act: Act = Field(default="none", description="after the linear map (not from `defaults`)")
    dropout: Probability = Field(default=0.0, description="after the activation")
    bias: bool = True

    def in_features(self, in_shape: Shape, ctx: Context) -> int:
        if len(in_shape) == 3 and in_shape[1:] != (1, 1):
            channels, height, width = in_shape
            raise fail(
                ctx.path,
                f"'fc' needs a pooled map (C×1×1) or a vector, but receives "
                f"{channels}×{height}×{width}; add `gap: {{}}` (or `flatten: {{}}`) before it",
            )
        return in_shape[0]

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        features = self.in_features(in_shape, ctx)
        weights = features * self.out
        return Geometry((self.out,), weights + (self.out if self.bias else 0), weights)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from torch import nn

        parts: list[tuple[str, nn.Module]] = []
        if len(in_shape) == 3:
            parts.append(("flatten", nn.Flatten(1)))
        parts.append(("linear", nn.Linear(self.in_features(in_shape, ctx), self.out, self.bias)))
        if self.act != "none":
            parts.append(("act", make_act(self.act)))
        if self.dropout:
            parts.append(("drop", nn.Dropout(self.dropout)))
        return nn.Sequential(OrderedDict(parts))


class FlattenSpec(LayerSpec):
    """C×H×W → a vector of C·H·W features (needed after a 1×1-conv head)."""

    kind: Literal["flatten"] = "flatten"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry((prod(in_shape),), 0, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from torch import nn

        return nn.Flatten(1)


class LogSoftmaxSpec(LayerSpec):
    """Log-probabilities over classes; a head ending here trains with NLL loss."""

    kind: Literal["logsoftmax"] = "logsoftmax"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        if len(in_shape) != 1:
            raise fail(
                ctx.path,
                f"'logsoftmax' needs a vector of class scores, but receives "
                f"{'×'.join(map(str, in_shape))}; add `flatten: {{}}` or `gap` + `fc` first",
            )
        return Geometry(in_shape, 0, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from torch import nn

        return nn.LogSoftmax(dim=1)
