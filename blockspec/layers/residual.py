"""`residual`: y = f(x) + shortcut(x), the shortcut a 1×1 projection when shapes differ."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from blockspec.errors import fail
from blockspec.fields import Act, Norm
from blockspec.layers.base import (
    IDENTITY,
    Context,
    Field1D,
    Geometry,
    LayerSpec,
    Shape,
    checked_features,
    checked_geometry,
    expand,
    in_repetition,
)
from blockspec.layers.units import make_act, make_norm, norm_params

if TYPE_CHECKING:
    from torch import nn

BodyStep = tuple[LayerSpec, Shape, Geometry, Context]


class ResidualSpec(LayerSpec):
    """A ResNet-style block around `body`; `act` is applied after the sum (ReLU in ResNet).

    `norm` (default: the spec's) follows the 1×1 projection conv.
    """

    kind: Literal["residual"] = "residual"
    body: list[AnyLayer] = Field(  # noqa: F821 (resolved in layers/__init__)
        min_length=1, description="the residual branch: layers of any kind, keeping a spatial map"
    )
    act: Act = Field(default="none", description="after the sum (not from `defaults`)")
    norm: Norm | None = Field(
        default=None, description="after the 1×1 projection shortcut; unset: `defaults.norm`"
    )
    zero_init: bool = Field(
        default=False,
        description="start the scale of the body's last normalisation at 0, so the block "
        "begins as its shortcut (timm's zero_init_last)",
    )

    def with_defaults(self, defaults: dict[str, Any]) -> ResidualSpec:
        resolved = super().with_defaults(defaults)
        body = [layer.with_defaults(defaults) for layer in self.body]
        return resolved.model_copy(update={"body": body})

    def body_steps(self, in_shape: Shape, ctx: Context) -> list[BodyStep]:
        """Each body layer with its input shape, geometry and context: the one walk of the
        body that geometry, features, build and `--verify` all read from."""
        from blockspec.layers import plugin_code

        steps: list[BodyStep] = []
        shape = in_shape
        for index, repetition, layer in expand(self.body):
            body_ctx = replace(ctx, path=f"{ctx.path}.body[{index}]")
            with in_repetition(repetition, layer.repeat, shape), plugin_code(layer, body_ctx.path, "computing its geometry"):
                geometry = checked_geometry(layer.geometry(shape, body_ctx))
            if geometry.global_pool:
                raise fail(
                    body_ctx.path,
                    "a residual body must keep a spatial map; global pooling cannot be added "
                    "back to its input",
                    layer.kind,
                )
            steps.append((layer, shape, geometry, body_ctx))
            shape = geometry.out_shape
        return steps

    def _last_normalised(self, steps: list[BodyStep], ctx: Context) -> int | None:
        """Index of the body step whose output norm `zero_init` zeroes (None without it)."""
        if not self.zero_init:
            return None
        for index in reversed(range(len(steps))):
            layer = steps[index][0]
            # A nested residual's `norm` is its projection's, not its output's: skipped.
            own_norm = layer.kind != "residual" and getattr(layer, "norm", None) not in (None, "none")
            if layer.kind == "norm" or own_norm:
                return index
        raise fail(
            f"{ctx.path}.zero_init",
            "needs a normalised layer in the body (a conv or dws with a norm, or a `norm` layer)",
            True,
        )

    @staticmethod
    def _body_field(steps: list[BodyStep]) -> Field1D:
        field = IDENTITY
        for _, _, geometry, _ in steps:
            field = field.then(geometry.field)
        return field

    def _projection_stride(
        self, in_shape: Shape, steps: list[BodyStep], ctx: Context
    ) -> int | None:
        """None when the shortcut is the identity (same shape, no stride); else the 1×1 conv's stride.

        The stride is the body's total stride, and the body must produce exactly the map a
        strided 1×1 conv does (⌈H / stride⌉), so the two paths line up at every input size.
        """
        out_shape = steps[-1][2].out_shape
        if len(out_shape) != 3:
            raise fail(ctx.path, "a residual body must end in a feature map, not a vector")
        stride = self._body_field(steps).jump
        if out_shape == in_shape and stride == 1:
            return None
        expected = _strided(in_shape, stride)
        if out_shape[1:] != expected:
            raise fail(
                ctx.path,
                f"the body maps {in_shape[1]}×{in_shape[2]} to {out_shape[1]}×{out_shape[2]} "
                f"with total stride {stride}, but the shortcut gives "
                f"{expected[0]}×{expected[1]}{_first_to_shrink(steps)}; pad the body's convolutions to keep "
                "the size ('auto' padding does)",
            )
        return stride

    def features(self, in_shape: Shape, ctx: Context) -> set[str]:
        """The body's features count too: a dilated conv inside a block is still dilated."""
        from blockspec.layers import plugin_code

        found = {"residual"}
        for layer, shape, _, body_ctx in self.body_steps(in_shape, ctx):
            with plugin_code(layer, body_ctx.path, "computing its geometry"):
                found |= checked_features(layer.features(shape, body_ctx))
        return found

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        if len(in_shape) != 3:
            raise fail(ctx.path, "'residual' needs a feature map, not a vector")
        steps = self.body_steps(in_shape, ctx)
        self._last_normalised(steps, ctx)
        out_shape, field = steps[-1][2].out_shape, self._body_field(steps)
        params = sum(geometry.params for _, _, geometry, _ in steps)
        macs = sum(geometry.macs for _, _, geometry, _ in steps)
        stride = self._projection_stride(in_shape, steps, ctx)
        shortcut = IDENTITY
        if stride is not None:
            weights = out_shape[0] * in_shape[0]
            bias = 0 if self.norm != "none" else out_shape[0]
            params += weights + bias + norm_params(self.norm, out_shape[0], ctx, out_shape[1] * out_shape[2])
            macs += weights * out_shape[1] * out_shape[2]
            shortcut = Field1D(rf=1, jump=stride, start=0)
        return Geometry(out_shape, params, macs, field.union(shortcut))

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        from torch import nn

        from blockspec.build import build_layer  # imports this package: built only once it is loaded
        from blockspec.modules import Conv2d, Residual

        steps = self.body_steps(in_shape, ctx)
        # each as a network's layer is built: a plugin's fault named at its body layer, now and in training
        body = nn.Sequential(*(build_layer(layer, shape, geometry.params, step_ctx)
                               for layer, shape, geometry, step_ctx in steps))
        last = self._last_normalised(steps, ctx)
        if last is not None:
            unit = body[last]
            nn.init.zeros_(getattr(unit, "norm", unit).weight)
        shape = steps[-1][2].out_shape
        stride = self._projection_stride(in_shape, steps, ctx)
        projection: nn.Module = nn.Identity()
        if stride is not None:
            parts: list[tuple[str, nn.Module]] = [
                ("conv", Conv2d(in_shape[0], shape[0], 1, stride, bias=self.norm == "none"))
            ]
            if self.norm != "none":
                parts.append(("norm", make_norm(self.norm, shape[0], ctx)))
            projection = nn.Sequential(OrderedDict(parts))
        return Residual(body, projection, make_act(self.act))


def _strided(shape: Shape, stride: int) -> tuple[int, ...]:
    """The map a strided 1×1 convolution gives: ⌈H / stride⌉ × ⌈W / stride⌉."""
    return tuple((size - 1) // stride + 1 for size in shape[1:])


def _first_to_shrink(steps: list[BodyStep]) -> str:
    """Where the body first loses a map's edge (an output smaller than ⌈input / stride⌉)."""
    for _, shape, geometry, step_ctx in steps:
        out = geometry.out_shape
        if len(out) == 3 and len(shape) == 3 and out[1:] != _strided(shape, geometry.field.jump):
            return f" ({step_ctx.path} maps {shape[1]}×{shape[2]} to {out[1]}×{out[2]})"
    return ""
