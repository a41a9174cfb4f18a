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
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib.metadata import entry_points
from types import FrameType
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
        except (Exception, SystemExit) as error:  # noqa: BLE001 (a plugin's import error, or its sys.exit, must not stop blockspec)
            first_line = next(iter(str(error).splitlines()), "")  # Pydantic's class errors run to several lines
            problem = f"cannot be loaded ({type(error).__name__}: {first_line})"
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
        plugins = _plugins_within(layer, builtin)
        if not plugins:
            raise
        names = ", ".join(_named(cls) for cls in plugins)
        raise fail(path, f"failed {doing}, in the layer plugin {names}: {type(error).__name__}: {error}") from None


def _plugins_within(layer: LayerSpec, builtin: dict[str, type[LayerSpec]]) -> list[type[LayerSpec]]:
    return sorted({type(inner) for inner in _layers_within(layer) if inner.kind not in builtin},
                  key=lambda cls: cls.__qualname__)


_BUILT: weakref.WeakKeyDictionary[Any, tuple[str, list[type[LayerSpec]]]] = weakref.WeakKeyDictionary()
"""Each module a layer that is or holds a plugin built, and its submodules: the layer's path and
plugins. A fault inside one (a `blockspec.modules.Conv2d` a plugin built with the wrong
channels runs no plugin code at all) is then named as theirs, at the layer."""


def remember_built(module: Any, layer: LayerSpec, path: str, builtin: dict[str, type[LayerSpec]]) -> None:
    """Record `module` (and its submodules) as built by `layer` at `path`, if it holds a plugin;
    a submodule already recorded keeps its place (a residual's body layers theirs)."""
    plugins = _plugins_within(layer, builtin)
    if plugins:
        for part in module.modules():
            _BUILT.setdefault(part, (path, plugins))


def validator_fault(error: Exception, document: Any, plugins: dict[str, type[LayerSpec]]) -> SpecError | None:
    """The spec error for `error` when a plugin's validator raised it (Pydantic passes on
    anything but ValueError and AssertionError as it is), at the layer of `document` whose
    fields raise it; None when blockspec's code raised it."""
    found = _raising_code(error, plugins)
    if found is None:
        return None
    path, cls = _failing_place(found[0], document, error)
    if isinstance(error, SpecError):  # the plugin's own report with `fail`: its field paths are the layer's
        return SpecError([replace(problem, path=f"{path}.{problem.path}" if problem.path else path)
                          for problem in error.problems])
    return fail(path, f"failed validating its fields, in the layer plugin {_named(cls)}: {type(error).__name__}: "
                      f"{error} (a validator reports a bad value by raising ValueError)")


def runtime_fault(error: Exception, plugins: dict[str, type[LayerSpec]]) -> SpecError | None:
    """The error for `error` when a plugin's code, or a module a plugin layer built, raised it
    anywhere else (a forward pass while training, evaluating or exporting): the plugin, the
    layer and the line, not a request for a bug report against blockspec; None when blockspec's
    own code raised it."""
    found = _raising_code(error, plugins)
    if found is None:
        return None
    classes, frame, path = found
    names = _named(classes[0]) if len(classes) == 1 else f"package '{_package(classes[0].__module__)}' (kinds " + \
        ", ".join(cls.model_fields["kind"].default for cls in classes) + ")"
    return fail(path, f"a fault in the layer plugin {names}: {type(error).__name__}: {error} (raised in "
                      f"{frame.f_code.co_filename}, line {frame.f_lineno}, in {_function(frame)}); rerun with "
                      "BLOCKSPEC_DEBUG=1 for the traceback")


def _raising_code(
    error: Exception, plugins: dict[str, type[LayerSpec]]
) -> tuple[list[type[LayerSpec]], FrameType, str] | None:
    """The plugins whose code raised `error`, that code's frame and, where known, the layer's
    path: walking out from where it was raised, the first frame that runs a module a plugin
    layer built (its layer and plugins), or code in a plugin's package (the one class whose
    method it was, else those of its module or package). Frames of torch, Pydantic and
    blockspec's own modules a plugin calls are passed over: what a plugin called with, it
    answers for; blockspec's bugs have neither."""
    packages: dict[str, list[type[LayerSpec]]] = {}
    for cls in plugins.values():
        packages.setdefault(_package(cls.__module__), []).append(cls)
    for frame, _ in reversed(list(traceback.walk_tb(error.__traceback__))):
        owner = frame.f_locals.get("self")
        try:
            built = _BUILT.get(owner) if owner is not None else None
        except TypeError:  # not weakly referable, or unhashable: no module
            built = None
        if built is not None:
            return built[1], frame, built[0]
        module = frame.f_globals.get("__name__", "")
        if _package(module) in packages:
            classes = packages[_package(module)]
            owner = frame.f_locals.get("cls", owner)
            mine = [cls for cls in classes if owner is cls or type(owner) is cls]
            return mine or [cls for cls in classes if cls.__module__ == module] or classes, frame, ""
    return None


def _function(frame: FrameType) -> str:
    """`Class.method` where Python names it so (3.11 on), else the function's name."""
    return getattr(frame.f_code, "co_qualname", frame.f_code.co_name)


def _package(module: str) -> str:
    return module.partition(".")[0]


def _failing_place(classes: list[type[LayerSpec]], document: Any, error: Exception) -> tuple[str, type[LayerSpec]]:
    """The field path and plugin of the first layer in `document` of one of `classes`' kinds
    whose fields, validated alone, raise what `error` is; else the first layer of those kinds."""
    places = [(path, entry, cls) for cls in classes
              for path, entry in _places_of(cls.model_fields["kind"].default, document, "")]
    for path, entry, cls in places:
        kind = cls.model_fields["kind"].default
        try:
            cls.model_validate(entry if entry.get("kind") == kind else entry[kind] or {})
        except type(error):
            return path, cls
        except Exception:  # noqa: BLE001, S112 (another fault, or valid alone: not the layer sought)
            continue
    return (places[0][0], places[0][2]) if places else ("blocks", classes[0])


def _named(cls: type[LayerSpec]) -> str:
    return f"'{cls.model_fields['kind'].default}' ({cls.__module__}:{cls.__qualname__})"


def _places_of(kind: str, node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field path, entry) of each layer of `kind` in a spec document, named as validation
    errors name them: a layer is a list item, written `{kind: {fields}}` (its fields are the
    layer's) or `{kind: kind, fields}` (as dumps write it); nested ones included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _places_of(kind, value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            here = f"{path}[{index}]"
            if isinstance(item, dict) and (list(item) == [kind] or item.get("kind") == kind):
                yield here, item
            wrapped = isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict)
            yield from _places_of(kind, next(iter(item.values())) if wrapped else item, here)


def _layers_within(layer: LayerSpec) -> Iterator[LayerSpec]:
    """The layer and every layer nested in its fields (a residual's body)."""
    yield layer
    for value in layer.__dict__.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, LayerSpec):
                yield from _layers_within(item)
