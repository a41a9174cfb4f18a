"""YAML text → validated, geometry-checked `Spec`; every failure becomes a SpecError.

Only PyYAML's safe loader is used (one that also refuses a key written twice): a spec is
data, and nothing in it is evaluated or imported.
"""

from __future__ import annotations

import copy
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from blockspec.analysis import trace
from blockspec.edits import apply_edits
from blockspec.errors import PYDANTIC_INTERNAL, SpecError, fail, validation_problems
from blockspec.layers import LAYER_KINDS, plugin_validator_fault
from blockspec.recipe import check_recipe
from blockspec.spec import Spec


def load_spec(
    path: str | os.PathLike[str] | Mapping[str, Any],
    *,
    input_size: tuple[int, int] | None = None,
    edits: Iterable[str] | None = None,
    augment: bool = False,
) -> Spec:
    """Read, validate and geometry-check a spec file (or a spec already read into a mapping),
    with `--set` edits applied first; every failure is a SpecError. `augment` also has
    albumentations check `data.augment` (for commands that use or vouch for it: importing
    albumentations takes seconds). The options are keywords: `parse_spec` takes a `source`
    second, and a size or edits given in its place would be taken for another argument."""
    if isinstance(path, Mapping):
        return parse_spec(path, "<mapping>", input_size=input_size, edits=edits, augment=augment)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_spec: expected a file path or a mapping, got {type(path).__name__}")
    source = str(path)
    if "\n" in source:  # no file name holds one; read, such text failed as a name too long or not found
        raise fail("", "given YAML text, not a file path; to read YAML text, use blockspec.parse_spec").with_source(
            "load_spec")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail("", "file not found").with_source(source) from None
    except UnicodeDecodeError as error:
        raise fail("", f"not UTF-8 text (byte {error.start}); save the spec as UTF-8").with_source(source) from None
    except OSError as error:  # a directory, no permission, a path through a file, a name too long
        raise fail("", f"cannot read the file ({type(error).__name__}: {error.strerror})").with_source(source) from None
    return parse_spec(text, source, input_size=input_size, edits=edits, augment=augment)


def parse_spec(
    text: str | Mapping[str, Any],
    source: str = "<spec>",
    *,
    input_size: tuple[int, int] | None = None,
    edits: Iterable[str] | None = None,
    augment: bool = False,
) -> Spec:
    """Validate and geometry-check a spec given as YAML text, or as the mapping such text
    reads into (`source` names it in errors); the rest as `load_spec`."""
    if not isinstance(source, str):
        raise TypeError(f"source: expected the name to give the spec in errors, a str, got {type(source).__name__} "
                        "(input_size and edits are keyword arguments)")
    edits = _edit_list(edits)
    _check_input_size(input_size)
    if isinstance(text, Mapping):
        _check_expanded_size(text, source)  # before the copy, which would expand every alias
        document = _plain(text)
    else:
        document = _read_yaml(text, source)
    if not isinstance(document, dict):
        raise fail(
            "",
            f"a spec must be a YAML mapping (name, input, blocks, …), not {type(document).__name__}",
        ).with_source(source)
    # `x-` keys hold what YAML anchors point at (`x-unit: &unit [...]`, then `C2: *unit`), as
    # in docker compose files: the spec has no such field, so they are dropped once read
    document = {key: value for key, value in document.items() if not (isinstance(key, str) and key.startswith("x-"))}
    if edits:
        try:
            document = apply_edits(document, edits)
        except SpecError as error:
            raise error.with_source(source) from None
        source = edited_source(source, edits)  # a bad value may come from either
    if input_size is not None and isinstance(document.get("input", {}), dict):
        # the spec at another size is that spec: analysed, validated and built alike
        document = apply_edits(document, [f"input.size=[{int(input_size[0])}, {int(input_size[1])}]"])
        source = f"{source} with --input-size {input_size[0]} {input_size[1]}"
    _check_expanded_size(document, source)
    try:
        spec = Spec.model_validate(document)
    except ValidationError as error:
        raise SpecError(validation_problems(error, field_path), source) from None
    except Exception as error:  # a plugin's validator raising other than ValueError, or reporting with `fail`
        fault = plugin_validator_fault(error, document)
        if fault is None:
            raise
        raise fault.with_source(source) from None
    try:
        trace(spec)
        check_recipe(spec)
        if augment:
            from blockspec.data import read_augment

            read_augment(spec.data.augment)
    except SpecError as error:
        raise error.with_source(source) from None
    return spec


def _plain(value: Any) -> Any:
    """A copy of a mapping built in Python, as YAML would have read it: numpy's scalars (an
    `np.int64` class count, an `np.bool_` switch) and arrays as Python's numbers and lists,
    which strict validation wants."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # a scalar's Python value, an array's nested lists
    return copy.deepcopy(value)


def _edit_list(edits: Iterable[str] | None) -> list[str]:
    """The edits as a list, read once (a generator is used up by reading it); one string, which
    would be read letter by letter, or a non-string edit is refused."""
    problem = TypeError(f"edits: expected a list of 'PATH=VALUE' strings such as ['train.epochs=3'], got {edits!r}")
    if edits is None:
        return []
    if isinstance(edits, (str, bytes)) or not isinstance(edits, Iterable):
        raise problem
    edits = list(edits)
    if not all(isinstance(edit, str) for edit in edits):
        raise problem
    return edits


def _check_input_size(input_size: tuple[int, int] | None) -> None:
    """One number for the size would otherwise fail deep inside with an index error."""
    if input_size is not None and not (
        isinstance(input_size, Sequence) and len(input_size) == 2
        and all(isinstance(side, numbers.Integral) and not isinstance(side, bool) for side in input_size)
    ):
        raise TypeError(f"input_size: expected (height, width), two integers, got {input_size!r}")


MAX_VALUES = 100_000
"""Values a spec may hold once its YAML aliases are followed: a flagship holds about 300. Each
alias is a full copy, so a few hundred bytes of anchors nesting ten copies a level expand
beyond any memory (a 1.6 kB file, six levels deep, ran for minutes before it)."""


def _check_expanded_size(document: Any, source: str) -> None:
    sizes: dict[int, int] = {}  # id of a list or mapping → its expanded size; aliases share one object
    counting: set[int] = set()  # the containers being counted: one reached again holds itself

    def size(value: Any) -> int:
        if not isinstance(value, (Mapping, list, tuple)):
            return 1
        if id(value) in counting:
            raise fail("", "a value holds itself (a YAML anchor holding an alias to itself): the spec would never "
                       "end").with_source(source)
        if id(value) not in sizes:
            counting.add(id(value))
            items = value.values() if isinstance(value, Mapping) else value
            sizes[id(value)] = 1 + sum(min(size(item), MAX_VALUES + 1) for item in items)
            counting.discard(id(value))
        return sizes[id(value)]

    try:
        total = size(document)
    except RecursionError:
        raise fail("", "invalid YAML: nested too deeply").with_source(source) from None
    if total > MAX_VALUES:
        raise fail("", f"the spec holds more than {MAX_VALUES:,} values once its YAML aliases are followed (each "
                   "alias is a copy of its anchor's value): no compact network needs so many").with_source(source)


def _read_yaml(text: str, source: str) -> Any:
    if not isinstance(text, str):
        raise TypeError(f"parse_spec: expected YAML text or a mapping, got {type(text).__name__}")
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as error:
        # PyYAML's constructors raise these for `!!int x`, impossible dates, huge integers.
        raise fail("", f"invalid YAML value ({type(error).__name__}: {error})").with_source(source) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise fail("", f"invalid YAML at {where}: {problem}").with_source(source) from None
    except RecursionError:
        raise fail("", "invalid YAML: nested too deeply").with_source(source) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping: PyYAML keeps the
    last one silently, so a second `C1:` would drop the first block without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges keys that the mapping may then override
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is written twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def field_path(loc: tuple[Any, ...]) -> str:
    """('blocks', 'C2', 1, 'dilated', 'dilation') → 'blocks.C2[1].dilation'.

    The kind tag that follows a list index is dropped: the user never wrote it as a key.
    """
    text = ""
    previous: Any = None
    for depth, part in enumerate(loc):
        if depth == 1 and previous == "blocks":
            text += f".{part}"  # a block name, whatever it looks like (even a number)
        elif isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(previous, int) and part in LAYER_KINDS:
            pass
        elif PYDANTIC_INTERNAL.match(part):
            pass  # the name of a union member, not a field the user wrote
        else:
            text += f".{part}" if text else str(part)
        previous = part
    return text


def edited_source(source: str, edits: Sequence[str] | None) -> str:
    """How errors name a spec read with `--set` edits: its value may come from either."""
    return f"{source} with --set {' '.join(edits)}" if edits else source


SPEC_SUFFIXES = (".yaml", ".yml")


def spec_files(paths: Sequence[Path]) -> list[Path]:
    """The spec files that command-line paths name: a file as given (loading says if it is
    missing), a folder as every .yaml/.yml file below it in name order, hidden ones (.git,
    .github) left out and linked folders followed once; each file once, however named."""
    files: list[Path] = []
    for path in paths:
        if _is_folder(path):
            found = sorted(_specs_below(path))
            if not found:
                raise fail("SPEC", "is a folder without .yaml or .yml files below it", str(path))
            files += found
        else:
            files.append(path)
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(_real(file), file)
    return list(unique.values())


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # below a folder it may not read: loading the path says so
        return False


def _real(path: Path) -> Path:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable or a link loop: loading the path says so
        return path


def _unreadable(error: OSError) -> None:
    raise fail("SPEC", f"cannot read a folder below it ({error.strerror})", error.filename)


def _specs_below(folder: Path) -> Iterator[Path]:
    seen: set[str] = set()
    for top, folders, names in os.walk(folder, onerror=_unreadable, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree
            folders.clear()
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if not name.startswith("."))  # a linked folder met once, by its first name
        for name in names:
            if not name.startswith(".") and name.endswith(SPEC_SUFFIXES) and os.path.isfile(os.path.join(top, name)):
                yield Path(top, name)
