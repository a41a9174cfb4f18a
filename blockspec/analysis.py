"""Pure functions over a resolved spec: shapes, receptive field, jump, parameters, MACs.

Nothing here imports torch; the tests prove every number equals what the built module
does (parameter counts, forward-pass shapes, receptive fields measured from gradients).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from blockspec.errors import fail
from blockspec.layers import IDENTITY, Context, Field1D, Shape, Window, expand, plugin_code
from blockspec.layers.base import checked_features, checked_geometry, in_repetition
from blockspec.spec import Spec


@dataclass(frozen=True)
class LayerRow:
    """One built layer (a `repeat` gives one row per repetition)."""

    block: str
    name: str
    path: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    window: Window | None
    field: Field1D
    params: int
    macs: int
    global_pool: bool
    features: frozenset[str]

    @property
    def rf(self) -> int:
        return self.field.rf

    @property
    def jump(self) -> int:
        return self.field.jump


@dataclass(frozen=True)
class Analysis:
    rows: tuple[LayerRow, ...]
    input_shape: Shape

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def macs(self) -> int:
        return sum(row.macs for row in self.rows)

    @property
    def output_shape(self) -> Shape:
        return self.rows[-1].out_shape

    @property
    def rf_row(self) -> LayerRow | None:
        """The last spatial feature map before global pooling (None if there is none)."""
        spatial = None
        for row in self.rows:
            if row.global_pool or len(row.out_shape) != 3:
                break
            spatial = row
        return spatial

    @property
    def receptive_field(self) -> int:
        row = self.rf_row
        return row.rf if row else 1


def input_shape(spec: Spec, input_size: tuple[int, int] | None = None) -> Shape:
    height, width = input_size or spec.input.hw
    return (spec.input.channels, height, width)


def root_context(spec: Spec) -> Context:
    """The context every top-level layer's is made from (its path then set): the spec-wide
    settings a layer's geometry and module read."""
    return Context(path="", norm_groups=spec.defaults.norm_groups, ghost_batch=spec.defaults.ghost_batch)


def trace(
    spec: Spec, input_size: tuple[int, int] | None = None, check_head: bool = True
) -> Analysis:
    """Walk every layer in order, propagating shape and receptive field.

    Raises SpecError (with the layer's field path) for geometry that cannot be built, and,
    with `check_head`, when the network does not end in a vector of `classes` scores.
    """
    if not isinstance(spec, Spec):  # `build_model` and `summarize` start here: a path given them would fail deep inside
        raise TypeError(f"spec: expected a Spec, as blockspec.load_spec(path) returns, got {type(spec).__name__}")
    shape = start = input_shape(spec, input_size)
    field = IDENTITY
    rows: list[LayerRow] = []
    ctx = root_context(spec)
    for block, layers in spec.blocks.items():
        for position, (index, repetition, layer) in enumerate(expand(layers)):
            layer_ctx = replace(ctx, path=f"blocks.{block}[{index}]")
            with in_repetition(repetition, layer.repeat, shape), plugin_code(layer, layer_ctx.path, "computing its geometry"):
                geometry = checked_geometry(layer.geometry(shape, layer_ctx))
                features = checked_features(layer.features(shape, layer_ctx))
            field = field.then(geometry.field)
            rows.append(
                LayerRow(
                    block=block,
                    name=f"{block}.{position}",
                    path=layer_ctx.path,
                    kind=layer.kind,
                    in_shape=shape,
                    out_shape=geometry.out_shape,
                    window=geometry.window,
                    field=field,
                    params=geometry.params,
                    macs=geometry.macs,
                    global_pool=geometry.global_pool,
                    features=features,
                )
            )
            shape = geometry.out_shape
    if check_head and shape != (spec.classes,):
        # named at the layer that set the width (an fc before an act or logsoftmax), else the last
        setter = next((row for row in reversed(rows) if row.out_shape[0] != row.in_shape[0]), rows[-1])
        raise fail(
            setter.path if shape[0] != spec.classes else rows[-1].path,
            f"the network must end in {spec.classes} class scores (classes: {spec.classes}), "
            f"but its last layer outputs {'×'.join(map(str, shape))}"
            + ("; add `flatten: {}` after the 1×1 head" if shape[0] == spec.classes else ""),
        )
    return Analysis(tuple(rows), start)


def padding_only_taps(analysis: Analysis) -> list[str]:
    """A note for each window some of whose taps never reach the map it reads, along an axis:
    a 3×3 dilated by 8 on an 8×8 map, or any 3×3 on a 1×1 map, reads only padding there. The
    receptive field counts such taps (it is the window's extent, as geometry.md defines it),
    so a rule such as `min_rf` can pass on a field no image pixel fills."""
    notes = []
    for row in analysis.rows:
        window = row.window
        if window is None or len(row.in_shape) != 3 or window.k == 1:
            continue
        for axis, size in (("rows", row.in_shape[1]), ("columns", row.in_shape[2])):
            last = (window.out_size(size) - 1) * window.stride  # the last output's first tap, before padding
            reach = sum(1 for tap in range(window.k)
                        if tap * window.dilation - window.padding <= size - 1 and last + tap * window.dilation - window.padding >= 0)
            if reach < window.k:
                notes.append(f"{row.path}: {window.k - reach} of its {window.k} taps along its input's {size} {axis} only ever "
                             f"read padding (dilation {window.dilation}, padding {window.padding}); the receptive field "
                             f"({row.rf} after it) counts them, though no image pixel lies there")
                break
    return notes
