"""Layer kinds from the user's installed packages (the `blockspec.layers` entry points), and
the guard that reports a failure inside a plugin's own code as that plugin's.

Why a guard: an exception from blockspec's own layers is a bug in blockspec (exit 70, with a
request for the traceback), but one raised by a plugin's `geometry`, `build`, forward pass or
field validators is the plugin's, and its user needs the layer's path and the plugin's name,
not a traceback.
"""

from __future__ import annotations

import logging
import traceback
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any, Literal

from blockspec.errors import SpecError, fail
from blockspec.layers.base import LayerSpec

# a warning through logging, not a print: a script can silence it, capture it or raise its level
# (with no logging set up, Python writes the bare message to stderr, as the command line shows it)
log = logging.getLogger("blockspec")


def plugin_kinds(builtin: dict[str, type[LayerSpec]]) -> dict[str, type[LayerSpec]]:
    """Layer kinds registered by installed packages. A broken one is skipped with a warning,
    and so is a kind two packages register (which one won would depend on install order)."""
    registered: dict[str, dict[str, type[LayerSpec]]] = {}  # kind → {entry point value: class}
    for entry in entry_points(group="blockspec.layers"):
        try:
            cls = entry.load()
            problem = _plugin_problem(entry.name, cls, builtin)
        except Exception as error:  # noqa: BLE001 (a plugin's import error must not stop blockspec)
            problem = f"cannot be loaded ({type(error).__name__}: {error})"
        if problem:
            log.warning("blockspec: ignoring layer plugin '%s' (%s): %s", entry.name, entry.value, problem)
        else:
            registered.setdefault(entry.name, {})[entry.value] = cls  # one package seen twice counts once
    found: dict[str, type[LayerSpec]] = {}
    for name, classes in registered.items():
        if len(classes) > 1:
            log.warning("blockspec: ignoring layer plugin '%s': %s both register it", name, " and ".join(sorted(classes)))
        else:
            found[name] = next(iter(classes.values()))
    return found


def _plugin_problem(name: str, cls: Any, builtin: dict[str, type[LayerSpec]]) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, LayerSpec)):
        return "it is not a subclass of blockspec.layers.LayerSpec"
    if name in builtin:
        return "a built-in kind has that name"
    kind = cls.model_fields["kind"]
    literal = typing.get_origin(kind.annotation) is Literal and typing.get_args(kind.annotation) == (name,)
    if not literal or kind.default != name:
        return f"its `kind` field must be `kind: Literal[{name!r}] = {name!r}`"
    return None


@contextmanager
def plugin_faults(layer: LayerSpec, path: str, doing: str, builtin: dict[str, type[LayerSpec]]) -> Iterator[None]:
    """Inside: an exception from a layer that is or holds a plugin kind becomes a spec error
    at `path` naming the plugin; blockspec's own layers' exceptions pass through."""
    try:
        yield
    except SpecError:
        raise
    except Exception as error:
        plugins = sorted({type(inner) for inner in _layers_within(layer) if inner.kind not in builtin},
                         key=lambda cls: cls.__qualname__)
        if not plugins:
            raise
        names = ", ".join(_named(cls) for cls in plugins)
        raise fail(path, f"failed {doing}, in the layer plugin {names}: {type(error).__name__}: {error}") from None


def validator_fault(error: Exception, document: Any, builtin: dict[str, type[LayerSpec]]) -> SpecError | None:
    """The spec error for `error` when a plugin's validator raised it (Pydantic passes on
    anything but ValueError and AssertionError as it is), at the first layer of that kind in
    `document`; None when no plugin's code raised it."""
    for frame, _ in reversed(list(traceback.walk_tb(error.__traceback__))):  # the innermost first
        owner = frame.f_locals.get("cls", frame.f_locals.get("self"))
        cls = owner if isinstance(owner, type) else type(owner)
        if issubclass(cls, LayerSpec) and cls.model_fields["kind"].default not in builtin:
            kind = cls.model_fields["kind"].default
            return fail(
                next(_places_of(kind, document, ""), "blocks"),
                f"failed validating its fields, in the layer plugin {_named(cls)}: {type(error).__name__}: {error} "
                "(a validator reports a bad value by raising ValueError)",
            )
    return None


def _named(cls: type[LayerSpec]) -> str:
    return f"'{cls.model_fields['kind'].default}' ({cls.__module__}:{cls.__qualname__})"


def _places_of(kind: str, node: Any, path: str) -> Iterator[str]:
    """The field paths of the layers of `kind` in a spec document, named as validation errors
    name them: a layer is a list item, written `{kind: {fields}}` (its fields are the layer's)
    or `{kind: kind, fields}` (as dumps write it); nested ones included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _places_of(kind, value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            here = f"{path}[{index}]"
            if isinstance(item, dict) and (list(item) == [kind] or item.get("kind") == kind):
                yield here
            wrapped = isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict)
            yield from _places_of(kind, next(iter(item.values())) if wrapped else item, here)


def _layers_within(layer: LayerSpec) -> Iterator[LayerSpec]:
    """The layer and every layer nested in its fields (a residual's body)."""
    yield layer
    for value in layer.__dict__.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, LayerSpec):
                yield from _layers_within(item)
