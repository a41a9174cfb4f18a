"""`se`: squeeze-and-excitation (Hu et al., 2018), a per-channel gate from the whole map.

The gate is one number per channel, computed from the map's average through a small
bottleneck (C → C/reduction → C) and a sigmoid. It costs about 2·C²/reduction parameters and
almost no compute, and lets a narrow network weight its channels by global context.

Receptive field: like every RF calculator (and like `gap`, docs/geometry.md), the analysis
follows the windows of the convolution path, which `se` leaves unchanged. The gate itself
depends on the whole map: that global context is not counted as receptive field, or every
network with a gate would report "the whole image".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from blockspec.errors import fail
from blockspec.fields import Act, PositiveInt
from blockspec.layers.base import Context, Geometry, LayerSpec, Shape, require_map
from blockspec.layers.units import make_act

if TYPE_CHECKING:
    from torch import nn


class SeSpec(LayerSpec):
    """Squeeze-and-excitation: x · sigmoid(W₂ act(W₁ mean(x))), hidden = C // reduction."""

    kind: Literal["se"] = "se"
    reduction: PositiveInt = Field(default=16, description="hidden units = channels // reduction")
    act: Act = Field(default="relu", description="between the two 1×1 maps (not from `defaults`)")

    def hidden(self, channels: int, ctx: Context) -> int:
        hidden = channels // self.reduction
        if hidden == 0:
            raise fail(
                f"{ctx.path}.reduction",
                f"leaves no hidden units for {channels} channels; use at most {channels}",
                self.reduction,
            )
        return hidden

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        channels, _, _ = require_map(in_shape, ctx, self.kind)
        hidden = self.hidden(channels, ctx)
        weights = 2 * channels * hidden
        return Geometry(in_shape, weights + hidden + channels, weights)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from blockspec.modules import SqueezeExcite

        channels = in_shape[0]
        return SqueezeExcite(channels, self.hidden(channels, ctx), make_act(self.act))
