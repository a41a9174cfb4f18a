"""What every layer kind shares: the strict schema base, shapes, receptive-field windows.

A layer kind is a Pydantic model with three methods:
  * `geometry(in_shape, ctx)`: exact output shape, parameters, MACs and its local receptive
    field, from the spec alone (no torch), raising `SpecError` for impossible geometry;
  * `build(in_shape, ctx)`: the `nn.Module` (torch is imported lazily so that the analysis
    and `build-summary` stay fast);
  * `features(in_shape)`: the words the rules speak (`dws`, `dilated`, `maxpool`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from blockspec.errors import SpecError, fail
from blockspec.fields import (
    Act,
    NonNegativeInt,
    Norm,
    Order,
    PositiveInt,
    Probability,
    StrictModel,
)

if TYPE_CHECKING:
    from torch import nn

Shape = tuple[int, ...]
"""(C, H, W) for feature maps, (F,) for vectors after flatten or fc."""


@dataclass(frozen=True)
class Field1D:
    """Receptive field along one axis (Araujo et al., Distill 2019).

    Unit i of a map covers input pixels [start + i*jump, start + i*jump + rf - 1]. A layer's
    own window is a Field1D in units of its input grid; composing fields is exact.
    """

    rf: int = 1
    jump: int = 1
    start: int = 0

    def then(self, local: Field1D) -> Field1D:
        """The field of a layer with window `local` applied on top of this one."""
        return Field1D(
            rf=self.rf + (local.rf - 1) * self.jump,
            jump=self.jump * local.jump,
            start=self.start + local.start * self.jump,
        )

    def union(self, other: Field1D) -> Field1D:
        """Both paths of a residual block; they share the same output grid."""
        lo = min(self.start, other.start)
        hi = max(self.start + self.rf, other.start + other.rf)
        return Field1D(rf=hi - lo, jump=self.jump, start=lo)


IDENTITY = Field1D()


def expand(layers: Sequence[LayerSpec]) -> Iterator[tuple[int, int, LayerSpec]]:
    """Unroll `repeat`: yields (index in the spec list, repetition number, layer)."""
    for index, layer in enumerate(layers):
        for repetition in range(layer.repeat):
            yield index, repetition, layer


@contextmanager
def in_repetition(repetition: int, repeat: int, shape: Shape) -> Iterator[None]:
    """A layer's problem in one of its `repeat` copies names which (the first copy saw
    another input: "padded input is only 1×1" read as wrong of a layer given 32×32)."""
    try:
        yield
    except SpecError as error:
        if repeat == 1:
            raise
        where = f"(repetition {repetition + 1} of {repeat}, on a {'×'.join(map(str, shape))} input) "
        raise SpecError([replace(problem, message=where + problem.message) for problem in error.problems],
                        error.source) from None


@dataclass(frozen=True)
class Window:
    """A k×k window with stride, dilation and symmetric padding: the table's k/s/d/p."""

    k: int
    stride: int = 1
    dilation: int = 1
    padding: int = 0

    @property
    def effective_k(self) -> int:
        return self.dilation * (self.k - 1) + 1

    def field(self) -> Field1D:
        return Field1D(rf=self.effective_k, jump=self.stride, start=-self.padding)

    def out_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.effective_k) // self.stride + 1


@dataclass(frozen=True)
class Geometry:
    """Everything the analysis needs about one layer at one input shape."""

    out_shape: Shape
    params: int
    macs: int
    field: Field1D = IDENTITY
    window: Window | None = None
    global_pool: bool = False


def checked_geometry(geometry: Any) -> Geometry:
    """A layer's geometry as the walk needs it. A plugin's slip (None, a list or a pair for a
    shape, a Window given as the field) fails here, where the plugin guard names the plugin,
    and not further on where it would read as blockspec's bug or the user's spec."""
    if not isinstance(geometry, Geometry):
        raise TypeError(f"geometry() returned {type(geometry).__name__}, not a Geometry")
    shape = geometry.out_shape
    if not (isinstance(shape, tuple) and len(shape) in (1, 3) and all(isinstance(n, int) and n > 0 for n in shape)):
        raise TypeError(f"geometry() returned the output shape {shape!r}, not (C, H, W) or (F,) in positive integers")
    for name in ("params", "macs"):
        if not (isinstance(getattr(geometry, name), int) and getattr(geometry, name) >= 0):
            raise TypeError(f"geometry() returned {name}={getattr(geometry, name)!r}, not a whole number ≥ 0")
    if not isinstance(geometry.field, Field1D):
        raise TypeError(f"geometry() returned field={geometry.field!r}, not a Field1D (a Window's .field())")
    if not (geometry.window is None or isinstance(geometry.window, Window)):
        raise TypeError(f"geometry() returned window={geometry.window!r}, not a Window or None")
    return geometry


def checked_features(features: Any) -> frozenset[str]:
    """A layer's feature names; one string would otherwise be read as a set of its letters."""
    if isinstance(features, str) or not all(isinstance(name, str) for name in features):
        raise TypeError(f"features() returned {features!r}, not a set of names")
    return frozenset(features)


@dataclass(frozen=True)
class Context:
    """Spec-wide settings a layer needs besides its own fields; `path` locates errors."""

    path: str
    norm_groups: int = 8
    ghost_batch: int | None = None


class LayerSpec(StrictModel):
    """Base of every layer kind. `repeat` expands the layer N times in place."""

    kind: str
    repeat: int = Field(default=1, ge=1, le=64, description="build the layer N times in place")


    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        raise NotImplementedError

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        raise NotImplementedError

    def features(self, in_shape: Shape, ctx: Context) -> set[str]:
        return {self.kind}

    def with_defaults(self, defaults: dict[str, Any]) -> LayerSpec:
        """Fill every field left unset (None) from the spec's `defaults` section."""
        unset = {
            name: value
            for name, value in defaults.items()
            if name in type(self).model_fields and getattr(self, name) is None
        }
        return self.model_copy(update=unset) if unset else self


class UnitOptions(LayerSpec):
    """Per-layer overrides of `defaults`: None means "take the spec's default"."""

    norm: Norm | None = Field(default=None, description="normalisation; unset: `defaults.norm`")
    act: Act | None = Field(default=None, description="activation; unset: `defaults.act`")
    order: Order | None = Field(default=None, description="unset: `defaults.order`")
    dropout: Probability | None = Field(
        default=None, description="after norm and act; unset: `defaults.dropout`"
    )
    bias: bool | None = Field(
        default=None, description="of the convolution(s); unset: `defaults.bias`"
    )


class SlidingUnit(UnitOptions):
    """What conv and dws share: `out` channels from a k×k window with stride/dilation/padding."""

    out: PositiveInt = Field(description="output channels")
    k: PositiveInt = Field(default=3, description="kernel size (k×k)")
    stride: PositiveInt = 1
    dilation: PositiveInt = 1
    padding: Literal["auto", "same"] | NonNegativeInt = Field(
        default="auto", description="`auto`: ⌊dilation·(k−1)/2⌋; `same`: that, if the size is kept"
    )

    def window(self, ctx: Context) -> Window:
        pad = resolve_padding(self.padding, self.k, self.stride, self.dilation, ctx)
        return Window(self.k, self.stride, self.dilation, pad)


def require_map(in_shape: Shape, ctx: Context, kind: str) -> tuple[int, int, int]:
    """Spatial layers need (C, H, W); a vector here means fc/flatten came too early."""
    if len(in_shape) != 3:
        raise fail(
            ctx.path,
            f"'{kind}' needs a feature map (C×H×W) but receives a vector of "
            f"{in_shape[0]} features; spatial layers must come before flatten/fc",
        )
    return in_shape  # type: ignore[return-value]


def check_window(window: Window, height: int, width: int, ctx: Context) -> tuple[int, int]:
    """Output size of a window over an H×W map, or an error naming the offending numbers."""
    padded = (height + 2 * window.padding, width + 2 * window.padding)
    if window.effective_k > min(padded):
        raise fail(
            ctx.path,
            f"kernel {window.k} with dilation {window.dilation} spans {window.effective_k} "
            f"pixels but the padded input is only {padded[0]}×{padded[1]} "
            f"({height}×{width} + padding {window.padding}); "
            "use a smaller kernel/dilation, more padding, or downsample less before it",
        )
    return window.out_size(height), window.out_size(width)


def resolve_padding(padding: int | str, k: int, stride: int, dilation: int, ctx: Context) -> int:
    """'auto' centres the window (d·(k-1)/2, rounded down); 'same' also insists on H_out = H_in."""
    if isinstance(padding, int):
        return padding
    span = dilation * (k - 1)
    if padding == "same" and (stride != 1 or span % 2):
        raise fail(
            f"{ctx.path}.padding",
            f"'same' needs stride 1 and an odd effective kernel; here stride={stride}, "
            f"effective kernel={span + 1}. Use 'auto' (pads {span // 2}) or an integer",
            padding,
        )
    return span // 2

