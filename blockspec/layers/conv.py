"""`conv`, and the exercise's own words for two of its uses: `dilated` and `strided`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from blockspec.errors import fail
from blockspec.fields import INT_LIMIT, PositiveInt
from blockspec.layers.base import Context, Geometry, Shape, SlidingUnit, check_window, require_map
from blockspec.layers.units import finish_unit, norm_params

if TYPE_CHECKING:
    from torch import nn

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]


class ConvSpec(SlidingUnit):
    """Conv2d → norm → activation (or activation → norm) → dropout."""

    kind: Literal["conv"] = "conv"
    groups: PositiveInt = Field(
        default=1, description="must divide input channels and `out`; = input channels: depthwise"
    )
    padding_mode: PaddingMode = "zeros"


    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        channels, height, width = require_map(in_shape, ctx, self.kind)
        if channels % self.groups or self.out % self.groups:
            raise fail(
                f"{ctx.path}.groups",
                f"groups must divide both input channels ({channels}) and out ({self.out})",
                self.groups,
            )
        window = self.window(ctx)
        if self.padding_mode != "zeros" and window.padding >= min(height, width):
            raise fail(
                f"{ctx.path}.padding",
                f"padding_mode '{self.padding_mode}' needs padding smaller than the "
                f"{height}×{width} input",
                window.padding,
            )
        out_h, out_w = check_window(window, height, width, ctx)
        weights = self.out * (channels // self.groups) * self.k * self.k
        params = weights + (self.out if self.bias else 0) + norm_params(self.norm, self.out, ctx, out_h * out_w)
        return Geometry(
            out_shape=(self.out, out_h, out_w),
            params=params,
            macs=weights * out_h * out_w,
            field=window.field(),
            window=window,
        )

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from blockspec.modules import Conv2d, DepthwiseConv2d

        window = self.window(ctx)
        conv_class = DepthwiseConv2d if self.groups == in_shape[0] > 1 else Conv2d
        conv = conv_class(
            in_shape[0],
            self.out,
            self.k,
            stride=self.stride,
            padding=window.padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
            padding_mode=self.padding_mode,
        )
        return finish_unit(
            [("conv", conv)], self.out, self.norm, self.act, self.order, self.dropout, ctx
        )

    def features(self, in_shape: Shape, ctx: Context) -> set[str]:
        found = {"conv"}
        if self.dilation > 1:
            found.add("dilated")
        if self.stride > 1:
            found.add("strided")
        if self.groups > 1:
            found.add("grouped")
            if self.groups == in_shape[0]:
                found.add("depthwise")
        return found


class DilatedSpec(ConvSpec):
    """A conv whose point is its dilation; shown as `dilated` in the table."""

    kind: Literal["dilated"] = "dilated"  # type: ignore[assignment]
    dilation: int = Field(default=2, ge=2, le=INT_LIMIT, description="≥ 2; use `conv` for dilation 1")


class StridedSpec(ConvSpec):
    """A conv that downsamples (stride 2 by default); shown as `strided` in the table."""

    kind: Literal["strided"] = "strided"  # type: ignore[assignment]
    stride: int = Field(default=2, ge=2, le=INT_LIMIT, description="≥ 2; use `conv` for stride 1")
