"""`--set PATH=VALUE`: change one field of a spec from the command line, before validation.

A variant of a spec (another width, label smoothing, schedule) then needs no edited copy of
the file, and the run directory's spec.yaml still records exactly what was trained. PATH is
written the way error messages name fields (`train.label_smoothing`,
`blocks.C2[0].strided.out`, `data.augment[2].CoarseDropout.p`); VALUE is YAML (`0.2`,
`false`, `[1, 1]`, `{name: cosine}`). Missing mappings on the way are created, so a field
the file leaves at its default can be set too.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Sequence
from typing import Any

import yaml

from blockspec.errors import SpecError, fail

_KEY = r"[^.\[\]\s]+"
_PATH = re.compile(rf"{_KEY}(?:\.{_KEY}|\[\d+\])*")
_STEP = re.compile(rf"({_KEY})|\[(\d+)\]")
_EXAMPLE = "e.g. --set train.label_smoothing=0.2 or --set 'blocks.C2[0].strided.out=72'"


def apply_edits(document: dict[str, Any], edits: Sequence[str]) -> dict[str, Any]:
    """The YAML mapping with every `PATH=VALUE` edit applied in order (the input is unchanged).

    Only the mappings and lists on an edit's path are copied, not the whole document: YAML
    anchors make one object appear in several places (`C2: *unit`), which a deep copy keeps
    shared, so editing `blocks.C1` would change `C2` too.
    """
    result = dict(document)
    for edit in edits:
        steps, value = _parse(edit)
        _assign(result, steps, value, edit)
    return result


def _parse(edit: str) -> tuple[list[str | int], Any]:
    path, separator, text = edit.partition("=")
    steps = _steps(path.strip())
    if not separator or steps is None:
        raise fail("--set", f"expected PATH=VALUE ({_EXAMPLE})", edit)
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError,
            RecursionError):
        raise fail("--set", "the value after '=' is not valid YAML", edit) from None
    return steps, value


def _steps(path: str) -> list[str | int] | None:
    """'blocks.C2[0].strided.out' → ['blocks', 'C2', 0, 'strided', 'out']; None if malformed."""
    if not _PATH.fullmatch(path):
        return None
    return [int(index) if index else key for key, index in _STEP.findall(path)]


def _assign(document: dict[str, Any], steps: list[str | int], value: Any, edit: str) -> None:
    node: Any = document
    for depth, step in enumerate(steps):
        container, where = _render(steps[:depth]), _render(steps[: depth + 1])
        if isinstance(step, int):
            if not isinstance(node, list):
                raise _cannot(edit, f"{container} is not a list")
            if step >= len(node):
                raise _cannot(edit, f"{container} has {len(node)} entries (indices from 0)")
        elif not isinstance(node, dict):
            raise _cannot(edit, f"{container} is not a mapping")
        if isinstance(step, str) and depth and isinstance(steps[depth - 1], int) and step not in node:
            _refuse_a_second_key(node, container, steps[depth:], edit)
        if depth == len(steps) - 1:
            node[step] = value
            return
        child = node[step] if isinstance(step, int) else node.get(step)
        if child is None:
            if isinstance(steps[depth + 1], int):
                close = difflib.get_close_matches(str(step), [str(key) for key in node], n=1)
                hint = f"; did you mean {_render([*steps[:depth], close[0]])}?" if close else ""
                raise _cannot(edit, f"{where} is not in the spec, so it has no entry to set{hint}")
            child = {}  # a section the file leaves at its defaults
        elif isinstance(child, (dict, list)):
            child = copy.copy(child)  # this path's own copy, whoever else shares the original
        node[step] = child
        node = child


def _refuse_a_second_key(entry: dict[str, Any], where: str, rest: list[str | int], edit: str) -> None:
    """A list entry written as a one-key mapping (a layer `{residual: {...}}`, a transform
    `{Affine: {...}}`) takes no second key: a path that names another kind, or leaves the
    kind out, would add one and the spec would fail to load blaming the file."""
    if len(entry) != 1:
        return
    (kind,) = entry
    named = str(rest[0])
    if difflib.get_close_matches(named, [str(kind)], n=1):  # the kind, mistyped
        hint = f"; did you mean {where}.{_render([kind, *rest[1:]])}?"
    elif len(rest) == 1 or isinstance(rest[1], int):  # a field (a list, as a residual's body), the kind left out
        hint = f"; did you mean {where}.{_render([kind, *rest])}?"
    else:  # another kind: the entry is replaced whole
        hint = f"; to make it a '{named}', replace it: --set '{where}={{{named}: {{...}}}}'"
    raise _cannot(edit, f"{where} is a '{kind}' entry, not '{named}': its fields are under {where}.{kind}{hint}")


def _cannot(edit: str, reason: str) -> SpecError:
    return fail("--set", f"cannot apply: {reason}", edit)


def _render(steps: Sequence[str | int]) -> str:
    text = ""
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or "the spec"
