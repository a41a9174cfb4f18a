"""One error type for everything a user can get wrong in a spec, a data set or a flag.

Every command catches `SpecError` and prints it without a traceback, so each problem must
carry enough to fix it alone: where (file and field path), what was found, what is allowed.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from blockspec.hints import value_hint

class _Unset:
    """No value given; one object, also after pickling (a SpecError crossing a process pool)."""

    def __reduce__(self) -> str:
        return "_UNSET"

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


@dataclass(frozen=True)
class Problem:
    """A single thing wrong with the input, located by a dotted field path."""

    path: str
    message: str
    value: Any = _UNSET

    def render(self) -> str:
        where = f"{self.path}: " if self.path else ""
        if self.value is _UNSET:
            return f"{where}{self.message}"
        return f"{self.path} = {_short_repr(self.value)}: {self.message}"


class SpecError(Exception):
    """Raised for invalid user input; `str()` is the full message shown to the user."""

    def __init__(self, problems: list[Problem] | Problem, source: str | None = None, *, alone: bool = False) -> None:
        self.problems = problems if isinstance(problems, list) else [problems]
        self.source = source
        self.alone = alone  # met by this process only, of several (torchrun): said by it, not left to rank 0
        super().__init__(self.render())

    def __reduce__(self) -> tuple[type[SpecError], tuple[list[Problem], str | None], dict[str, Any]]:
        """Pickled (a process pool's worker sends it back) and copied whole, notes added with
        `add_note` included: by default only the message would be, and rebuilding from it fails."""
        return SpecError, (self.problems, self.source), self.__dict__

    def with_source(self, source: str) -> SpecError:
        """The same problems, attributed to a file (the loader knows it, the checks do not)."""
        return SpecError(self.problems, self.source or source, alone=self.alone)

    def render(self) -> str:
        head = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return head + self.problems[0].render()
        lines = [f"{head}{len(self.problems)} problems"]
        lines += [f"  - {problem.render()}" for problem in self.problems]
        return "\n".join(lines)


def fail(path: str, message: str, value: Any = _UNSET) -> SpecError:
    """Shorthand for the common single-problem error."""
    return SpecError(Problem(path, message, value))


def flag_name(field: str) -> str:
    """'batch_size' → '--batch-size': the command-line flag that sets a field, for problems
    whose value came from the command line."""
    return "--" + field.replace("_", "-")


# Pydantic names a union's members in an error's location, and `[key]` after a mapping key it
# refused; the user never wrote them.
PYDANTIC_INTERNAL = re.compile(
    r"^(function-|tagged-union|constrained-|tuple\[|list\[|dict\[|literal\[|int$|float$|str$|bool$|none$|\[key\]$)"
)
# Errors whose input is the whole entry (a missing field, an unknown layer kind): the message
# says it all.
_VALUE_NOT_SHOWN = {"missing", "unknown_kind", "layer_entry"}


def dotted_path(loc: tuple[Any, ...]) -> str:
    """('augment', 0, 'Affine', 'float') → 'augment[0].Affine': indices in brackets, union
    members dropped."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not PYDANTIC_INTERNAL.match(part):
            text += f".{part}" if text else str(part)
    return text


def validation_problems(
    error: ValidationError, locate: Callable[[tuple[Any, ...]], str]
) -> list[Problem]:
    """Pydantic's errors as problems the user can act on, one per field.

    `locate` turns pydantic's location into the path the user wrote (a spec field, a
    transform's argument, a flag). A value refused by every member of a union
    (`padding: autox`) gets one line listing what each member allows.
    """
    merged: dict[tuple[str, str], Problem] = {}
    allowed_words: dict[tuple[str, str], list[str]] = {}  # for a did-you-mean: `act: ReLU`, `norm: bn`
    for item in error.errors():
        problem = _problem(item, locate)
        key = (problem.path, _short_repr(problem.value))
        if item["type"] == "literal_error":
            allowed_words.setdefault(key, []).extend(re.findall(r"'([^']*)'", str(item["ctx"]["expected"])))
        first = merged.get(key)
        if first is None:
            merged[key] = problem
            continue
        prefix = "Input should be "
        extra = (
            problem.message.removeprefix(prefix)
            if first.message.startswith(prefix)
            else problem.message
        )
        merged[key] = Problem(first.path, f"{first.message}, or {extra}", first.value)
    problems = [
        replace(problem, message=problem.message + value_hint(problem.value, allowed_words[key]))
        if key in allowed_words else problem
        for key, problem in merged.items()
    ]
    return [problem for problem in problems if not _outdone(problem, problems)]


def _outdone(problem: Problem, problems: list[Problem]) -> bool:
    """A union member refusing the value's type (`size: [0, 0]` is no integer) is noise when
    another member took the type and found a problem inside it (`size[0] = 0`)."""
    inside = (f"{problem.path}[", f"{problem.path}.")
    return problem.message.startswith("Input should be a valid") and any(
        other.path.startswith(inside) for other in problems
    )


def _problem(item: Any, locate: Callable[[tuple[Any, ...]], str]) -> Problem:
    loc = tuple(item["loc"])
    value = item.get("input")
    if item["type"] == "unknown_field":  # name the unknown key itself, not its parent
        field = item["ctx"]["field"]  # str() of the key, which YAML may have made a number or null
        loc += (field,)
        value = next(value for key, value in item["input"].items() if str(key) == field)
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "model_type":  # pydantic names the model class, which the user never wrote
        message = "Input should be a mapping of fields (`key: value` lines)"
    if item["type"] in _VALUE_NOT_SHOWN:
        return Problem(locate(loc), message)
    return Problem(locate(loc), message, value)


def _bounded_repr() -> reprlib.Repr:
    """repr with its work bounded: a short spec can hold a value whose full repr is huge
    (YAML aliases nest one list in another, ten times each, a billion items)."""
    bounded = reprlib.Repr()
    bounded.maxlevel = 4
    bounded.maxlist = bounded.maxtuple = bounded.maxdict = bounded.maxset = 12
    bounded.maxstring = bounded.maxother = bounded.maxlong = 80
    return bounded


_BOUNDED_REPR = _bounded_repr()


def _short_repr(value: Any, limit: int = 80) -> str:
    text = _BOUNDED_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_out_of_memory(error: BaseException) -> bool:
    """Whether Python, numpy or torch ran out of memory: torch reports it as a RuntimeError
    (its `OutOfMemoryError` on CUDA), recognised by its words, without importing torch."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and any(sign in str(error) for sign in _OUT_OF_MEMORY)


_OUT_OF_MEMORY = ("can't allocate memory", "Tried to allocate", "out of memory", "CUBLAS_STATUS_ALLOC_FAILED")
