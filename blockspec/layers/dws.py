"""`dws`: depthwise k×k (with channel multiplier) then pointwise 1×1 (MobileNet style)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from blockspec.errors import fail
from blockspec.fields import Act
from blockspec.layers.base import Context, Geometry, Shape, SlidingUnit, check_window, require_map
from blockspec.layers.units import finish_unit, make_act, make_norm, norm_params

if TYPE_CHECKING:
    from torch import nn


class DwsSpec(SlidingUnit):
    """Depthwise-separable convolution; norm/act/dropout follow the pointwise conv.

    `mid_norm` / `mid_act` put a normalisation / activation between the two convolutions
    (MobileNet v1 does both; many CIFAR solutions do neither). `mid_act` may name its own
    activation, so the last layer of a residual body (`act: none`, added before activating)
    can still have one inside.
    """

    kind: Literal["dws"] = "dws"
    multiplier: int = Field(
        default=1, ge=1, le=64, description="depthwise outputs per input channel"
    )
    mid_norm: bool = Field(default=False, description="normalisation between the two convolutions")
    mid_act: bool | Act = Field(
        default=False,
        description="activation between the two convolutions: true for the layer's `act`, or an activation's name",
    )

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        channels, height, width = require_map(in_shape, ctx, self.kind)
        inserts = (
            ("mid_norm", self.norm, "norm", ""),
            ("mid_act", self.act, "act", "; name an activation instead (e.g. mid_act: gelu)"),
        )
        for flag, setting, field, hint in inserts:
            if getattr(self, flag) is True and setting == "none":
                raise fail(f"{ctx.path}.{flag}", f"true inserts this layer's {field}, which is 'none'{hint}", True)
        window = self.window(ctx)
        out_h, out_w = check_window(window, height, width, ctx)
        mid = channels * self.multiplier
        depthwise = mid * self.k * self.k
        pointwise = self.out * mid
        params = depthwise + pointwise + norm_params(self.norm, self.out, ctx, out_h * out_w)
        if self.bias:
            params += mid + self.out
        if self.mid_norm:
            params += norm_params(self.norm, mid, ctx, out_h * out_w, normalised="its depthwise output (mid_norm)")
        return Geometry(
            out_shape=(self.out, out_h, out_w),
            params=params,
            macs=(depthwise + pointwise) * out_h * out_w,
            field=window.field(),
            window=window,
        )

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from torch import nn

        from blockspec.modules import DepthwiseConv2d

        channels = in_shape[0]
        mid = channels * self.multiplier
        window = self.window(ctx)
        parts: list[tuple[str, nn.Module]] = [
            (
                "depthwise",
                DepthwiseConv2d(
                    channels,
                    mid,
                    self.k,
                    stride=self.stride,
                    padding=window.padding,
                    dilation=self.dilation,
                    groups=channels,
                    bias=self.bias,
                ),
            )
        ]
        between: list[tuple[str, nn.Module]] = []
        if self.mid_norm:
            between.append(("mid_norm", make_norm(self.norm, mid, ctx)))
        if self.mid_activation != "none":
            activation = ("mid_act", make_act(self.mid_activation))
            between.insert(len(between) if self.order == "conv-norm-act" else 0, activation)
        parts += between
        parts.append(("pointwise", nn.Conv2d(mid, self.out, 1, bias=self.bias)))
        return finish_unit(parts, self.out, self.norm, self.act, self.order, self.dropout, ctx)

    @property
    def mid_activation(self) -> str:
        """The activation between the convolutions, "none" for none."""
        if isinstance(self.mid_act, bool):
            return self.act if self.mid_act else "none"
        return self.mid_act

    def features(self, in_shape: Shape, ctx: Context) -> set[str]:
        found = {"dws", "depthwise"}
        if self.dilation > 1:
            found.add("dilated")
        if self.stride > 1:
            found.add("strided")
        return found
