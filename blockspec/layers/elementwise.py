"""Stand-alone `norm`, `act` and `dropout`: for heads such as GAP → BatchNorm → 1×1 conv."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from blockspec.fields import Act, Probability
from blockspec.layers.base import Context, Geometry, LayerSpec, Shape
from blockspec.layers.units import make_act, make_norm, norm_params

if TYPE_CHECKING:
    from torch import nn


class NormSpec(LayerSpec):
    """BatchNorm2d on maps, BatchNorm1d on vectors (and group/layer norm)."""

    kind: Literal["norm"] = "norm"
    type: Literal["batch", "group", "layer"] = Field(
        default="batch", description="not from `defaults.norm`"
    )

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        positions = in_shape[1] * in_shape[2] if len(in_shape) == 3 else None
        return Geometry(in_shape, norm_params(self.type, in_shape[0], ctx, positions, field="type"), 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return make_norm(self.type, in_shape[0], ctx, vector=len(in_shape) == 1)


class ActSpec(LayerSpec):
    """A stand-alone activation (`none` builds nn.Identity)."""

    kind: Literal["act"] = "act"
    type: Act = Field(default="relu", description="not from `defaults.act`")

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(in_shape, 0, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return make_act(self.type)


class DropoutSpec(LayerSpec):
    """A stand-alone nn.Dropout."""

    kind: Literal["dropout"] = "dropout"
    p: Probability = Field(default=0.1, description="probability of zeroing a value")

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(in_shape, 0, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from torch import nn

        return nn.Dropout(self.p)
