"""`pool` (max/avg window) and `gap` (global average pool, kept as C×1×1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from blockspec.errors import fail
from blockspec.fields import NonNegativeInt, PositiveInt
from blockspec.layers.base import (
    Context,
    Geometry,
    LayerSpec,
    Shape,
    Window,
    check_window,
    require_map,
)

if TYPE_CHECKING:
    from torch import nn


class PoolSpec(LayerSpec):
    """MaxPool2d / AvgPool2d; `stride` defaults to `k` as in PyTorch."""

    kind: Literal["pool"] = "pool"
    type: Literal["max", "avg"] = "max"
    k: PositiveInt = Field(default=2, description="window size (k×k)")
    stride: PositiveInt | None = Field(default=None, description="unset: `k`")
    padding: NonNegativeInt = Field(default=0, description="at most ⌊k/2⌋")

    @field_validator("padding", mode="before")
    @classmethod
    def _pixels_only(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise PydanticCustomError(
                "pool_padding", "a pool's padding is a number of pixels, 0 to ⌊k/2⌋ ('auto' and 'same' are for convolutions)"
            )
        return value

    def window(self) -> Window:
        return Window(self.k, self.stride or self.k, 1, self.padding)

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        channels, height, width = require_map(in_shape, ctx, self.kind)
        window = self.window()
        if 2 * self.padding > self.k:
            raise fail(
                f"{ctx.path}.padding",
                f"pooling padding may be at most half the kernel ({self.k // 2})",
                self.padding,
            )
        out_h, out_w = check_window(window, height, width, ctx)
        return Geometry((channels, out_h, out_w), 0, 0, window.field(), window)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from torch import nn

        pool = nn.MaxPool2d if self.type == "max" else nn.AvgPool2d
        return pool(self.k, stride=self.stride or self.k, padding=self.padding)

    def features(self, in_shape: Shape, ctx: Context) -> set[str]:
        return {"pool", f"{self.type}pool"}


class GapSpec(LayerSpec):
    """AdaptiveAvgPool2d(1): every output sees the whole map, so it ends the spatial part."""

    kind: Literal["gap"] = "gap"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        channels, height, width = require_map(in_shape, ctx, self.kind)
        window = Window(max(height, width))
        return Geometry((channels, 1, 1), 0, 0, window.field(), window, global_pool=True)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from blockspec.modules import GlobalAvgPool2d

        return GlobalAvgPool2d()
