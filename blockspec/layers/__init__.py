"""Registry of layer kinds: the YAML key (`conv`, `dws`, …) → its schema class.

Adding a built-in kind means one module here and one line in `LAYER_KINDS`. A user's own
installed package adds kinds through the `blockspec.layers` entry-point group (see
docs/plugins.md): the user's deliberate install, never a module path written in a spec.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated, Any, Union

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from blockspec.errors import SpecError
from blockspec.hints import layer_hint
from blockspec.layers.attention import SeSpec
from blockspec.layers.base import (
    IDENTITY,
    Context,
    Field1D,
    Geometry,
    LayerSpec,
    Shape,
    Window,
    expand,
)
from blockspec.layers.conv import ConvSpec, DilatedSpec, StridedSpec
from blockspec.layers.dws import DwsSpec
from blockspec.layers.elementwise import ActSpec, DropoutSpec, NormSpec
from blockspec.layers.head import FcSpec, FlattenSpec, LogSoftmaxSpec
from blockspec.layers.plugins import plugin_faults, plugin_kinds, remember_built, runtime_fault, validator_fault
from blockspec.layers.pool import GapSpec, PoolSpec
from blockspec.layers.residual import ResidualSpec

BUILTIN_KINDS: dict[str, type[LayerSpec]] = {
    cls.model_fields["kind"].default: cls
    for cls in (
        ConvSpec,
        DwsSpec,
        DilatedSpec,
        StridedSpec,
        PoolSpec,
        GapSpec,
        FcSpec,
        NormSpec,
        ActSpec,
        DropoutSpec,
        FlattenSpec,
        LogSoftmaxSpec,
        ResidualSpec,
        SeSpec,
    )
}


PLUGIN_KINDS: dict[str, type[LayerSpec]] = plugin_kinds(BUILTIN_KINDS)
LAYER_KINDS: dict[str, type[LayerSpec]] = {**BUILTIN_KINDS, **PLUGIN_KINDS}


def plugin_code(layer: LayerSpec, path: str, doing: str) -> AbstractContextManager[None]:
    """Reports an exception raised inside a plugin's code as that plugin's, at `path`."""
    return plugin_faults(layer, path, doing, BUILTIN_KINDS)


def remember_plugin_module(module: Any, layer: LayerSpec, path: str) -> None:
    """Record the module `layer` built at `path` as its plugin's, if it holds one (for faults
    that run no plugin code: `plugin_runtime_fault`)."""
    remember_built(module, layer, path, BUILTIN_KINDS)


def plugin_validator_fault(error: Exception, document: Any) -> SpecError | None:
    """`error`, raised while validating `document`, as the spec error of the plugin that raised it."""
    return validator_fault(error, document, PLUGIN_KINDS)


def plugin_runtime_fault(error: Exception) -> SpecError | None:
    """`error`, raised anywhere by a plugin's code (its module's forward pass), as that plugin's."""
    return runtime_fault(error, PLUGIN_KINDS)


def unwrap_entry(value: Any) -> Any:
    """YAML writes a layer as a one-key mapping `{conv: {out: 16}}`; Pydantic wants a tag,
    which a file may also write itself (`{kind: conv, out: 16}`, as `Spec.model_dump()` does)."""
    tagged = isinstance(value, dict) and isinstance(value.get("kind"), str) and value["kind"] in LAYER_KINDS
    if isinstance(value, LayerSpec) or tagged:
        return value  # already tagged: a model, or a dump of one
    kinds = ", ".join(LAYER_KINDS)
    if isinstance(value, dict) and isinstance(value.get("kind"), str):
        value = {value["kind"]: {}}  # the kind written as a field names an unknown kind: said as for the key
    if not isinstance(value, dict) or len(value) != 1:
        raise PydanticCustomError(
            "layer_entry",
            "each layer is a one-key mapping such as `conv: {out: 16}`{found}; kinds: {kinds}",
            {"kinds": kinds, "found": _found_instead(value)},
        )
    ((name, args),) = value.items()
    if name not in LAYER_KINDS:
        hint = layer_hint(str(name), LAYER_KINDS)
        raise PydanticCustomError(
            "unknown_kind",
            "unknown layer kind '{name}'; {hint}allowed: {kinds}",
            {"name": name, "hint": hint, "kinds": kinds},
        )
    if args is None:
        args = {}
    if isinstance(args, dict) and "kind" in args:
        raise PydanticCustomError(
            "layer_args", "'kind' is not a field of '{name}': the kind is the key (`{name}: {...}`)", {"name": name}
        )
    if not isinstance(args, dict):
        raise PydanticCustomError(
            "layer_args",
            "the arguments of '{name}' must be a mapping of its fields, e.g. `{name}: {...}`",
            {"name": name},
        )
    return {"kind": name, **args}


def _found_instead(value: Any) -> str:
    """What a layer entry that is not a one-key mapping holds, and the usual cause: fields
    indented level with their kind (`- conv:` then `out: 16` under the dash, not under conv)."""
    if not isinstance(value, dict):
        return ""
    keys = [str(key) for key in value]
    kinds = [key for key, args in value.items() if key in LAYER_KINDS and args is None]
    hint = (f": indent the fields under `{kinds[0]}:`, or write `{kinds[0]}: {{{', '.join(f'{key}: …' for key in keys if key != kinds[0])}}}`"
            if len(kinds) == 1 and len(keys) > 1 else "")
    return f"; found the keys {', '.join(keys) or '(none)'}{hint}"


AnyLayer = Annotated[
    Union[tuple(LAYER_KINDS.values())],  # noqa: UP007 (a runtime-built union)
    Field(discriminator="kind"),
    BeforeValidator(unwrap_entry),
]

ResidualSpec.model_rebuild(_types_namespace={"AnyLayer": AnyLayer})

__all__ = [
    "BUILTIN_KINDS",
    "IDENTITY",
    "LAYER_KINDS",
    "AnyLayer",
    "Context",
    "Field1D",
    "Geometry",
    "LayerSpec",
    "Shape",
    "Window",
    "expand",
    "plugin_code",
    "plugin_runtime_fault",
    "plugin_validator_fault",
    "remember_plugin_module",
]
