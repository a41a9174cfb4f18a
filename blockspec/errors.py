"""One error type for everything a user can get wrong in a spec, a data set or a flag.

Every command catches `SpecError` and prints it without a traceback, so each problem must
carry enough to fix it alone: where (file and field path), what was found, what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_UNSET: Any = object()


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

    def __init__(self, problems: list[Problem] | Problem, source: str | None = None) -> None:
        self.problems = problems if isinstance(problems, list) else [problems]
        self.source = source
        super().__init__(self.render())

    def with_source(self, source: str) -> SpecError:
        """The same problems, attributed to a file (the loader knows it, the checks do not)."""
        return SpecError(self.problems, self.source or source)

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


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
