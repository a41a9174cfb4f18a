"""JSON Schema (draft 2020-12) of a spec file as users write it, for editors and CI.

Pydantic describes the validated models, where layers carry a `kind` tag; in YAML a layer
is a one-key mapping `{conv: {...}}`. The block lists are therefore re-described here as
"exactly one of these keys", each holding that kind's arguments.
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any

from pydantic.json_schema import CoreSchema, GenerateJsonSchema, JsonSchemaValue

from blockspec.layers import BUILTIN_KINDS, LAYER_KINDS
from blockspec.spec import BLOCK_NAME, MODULE_ATTRIBUTES, Spec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
log = logging.getLogger("blockspec")
ENTRY = {"$ref": "#/$defs/LayerEntry"}


def spec_json_schema() -> dict[str, Any]:
    undescribed: list[str] = []

    class Generator(GenerateJsonSchema):
        """A field JSON Schema cannot describe (a plugin's `Callable`) may hold any value in
        the schema, rather than failing all of it; blockspec's own validation still applies."""

        def handle_invalid_for_json_schema(self, schema: CoreSchema, error_info: str) -> JsonSchemaValue:
            undescribed.append(error_info)
            return {}

    schema = Spec.model_json_schema(ref_template="#/$defs/{model}", schema_generator=Generator)
    definitions: dict[str, Any] = schema.setdefault("$defs", {})
    choices = []
    for kind, cls in LAYER_KINDS.items():
        undescribed.clear()
        arguments = cls.model_json_schema(ref_template="#/$defs/{model}", schema_generator=Generator)
        if undescribed and kind not in BUILTIN_KINDS:  # a residual only holds plugins
            log.warning("blockspec: layer plugin '%s' (%s:%s) has fields JSON Schema cannot describe (%s); the "
                        "schema lets them hold any value", kind, cls.__module__, cls.__qualname__,
                        "; ".join(sorted(set(undescribed))))
        nested = arguments.pop("$defs", {})
        if "$ref" in arguments:  # a recursive model (residual) is described by reference
            arguments = nested.pop(arguments["$ref"].rsplit("/", 1)[1])
        definitions.update(nested)
        arguments["properties"].pop("kind", None)
        if "body" in arguments["properties"]:
            arguments["properties"]["body"]["items"] = ENTRY
        arguments.setdefault("description", (cls.__doc__ or kind).strip().splitlines()[0])
        definitions[f"{cls.__name__}Args"] = arguments
        choices.append(
            {
                "type": "object",
                "properties": {kind: _arguments_or_none(cls.__name__, arguments)},
                "required": [kind],
                "additionalProperties": False,
            }
        )
        choices.append(_tagged(kind, arguments))
    definitions["LayerEntry"] = {
        "oneOf": choices,
        "description": "one layer: a one-key mapping `kind: {fields}`, such as `conv: {out: 16}`, or the fields "
                       "with the kind among them, `{kind: conv, out: 16}`",
    }
    schema["properties"]["blocks"] = {
        "type": "object",
        "minProperties": 1,
        "description": "ordered block name → its layers",
        "propertyNames": {"pattern": BLOCK_NAME.pattern, "not": {"enum": sorted(MODULE_ATTRIBUTES)}},
        "additionalProperties": {"type": "array", "minItems": 1, "items": ENTRY},
    }
    schema["patternProperties"] = {"^x-": {"description": "anything YAML anchors point at; ignored"}}
    for name in [key for key in definitions if key in {cls.__name__ for cls in LAYER_KINDS.values()}]:
        del definitions[name]  # the tagged models themselves are not what users write
    _finite_numbers(schema)
    return {"$schema": DIALECT, **copy.deepcopy(schema)}


def _finite_numbers(node: Any) -> None:
    """Give every number without an upper bound the largest finite one: the loader refuses
    `.inf` (and integers too large for a float) in every number field, which a schema without
    a maximum let an editor pass (NaN, which no comparison catches, stays the loader's)."""
    if isinstance(node, dict):
        if node.get("type") == "number" and "maximum" not in node and "exclusiveMaximum" not in node:
            node["maximum"] = sys.float_info.max
        for value in node.values():
            _finite_numbers(value)
    elif isinstance(node, list):
        for value in node:
            _finite_numbers(value)


def _arguments_or_none(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """`conv:` with nothing after it reads as no arguments, which only a kind without required
    fields takes (`gap:`; `conv:` lacks its `out`)."""
    reference = {"$ref": f"#/$defs/{name}Args"}
    return reference if arguments.get("required") else {"anyOf": [reference, {"type": "null"}]}


def _tagged(kind: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The layer with its kind as a field, `{kind: conv, out: 16}`: how `Spec.model_dump()`
    writes layers, which the loader takes too (the key form is the one the guide teaches)."""
    return {
        "type": "object",
        "properties": {"kind": {"const": kind}, **arguments["properties"]},
        "required": ["kind", *arguments.get("required", [])],
        "additionalProperties": False,
    }
