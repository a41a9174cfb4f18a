"""The value types every spec field is written in, shared by the layer kinds and the rest of
the spec: kept apart from the layers (and torch-free) so that the spec, the CLI and the
schema documentation need not reach into layer internals for them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from blockspec.hints import field_hint

INT_LIMIT = 2**31 - 1
"""The largest count, size or seed a spec holds: torch takes shapes as 64-bit integers and
many of its kernels index with 32 bits, so a larger value would crash them, not be refused."""
PositiveInt = Annotated[int, Field(gt=0, le=INT_LIMIT)]
NonNegativeInt = Annotated[int, Field(ge=0, le=INT_LIMIT)]

# What YAML 1.1 leaves a string though users mean a number: an exponent without a dot or
# without a sign (`1e-3`, `5e4`, `1.0e5`). A quoted number ("0.5") stays a string, refused.
_UNRESOLVED_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def yaml_float(value: Any) -> Any:
    """PyYAML reads `1e-3` as a string; accept it as the number users meant."""
    if isinstance(value, str) and _UNRESOLVED_FLOAT.fullmatch(value):
        return float(value)
    return value


Real = Annotated[float, BeforeValidator(yaml_float)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0), BeforeValidator(yaml_float)]  # dropout rates

Norm = Literal["batch", "group", "layer", "none"]
Act = Literal["relu", "relu6", "leaky_relu", "gelu", "silu", "hardswish", "none"]
Order = Literal["conv-norm-act", "conv-act-norm"]


class StrictModel(BaseModel):
    """Refuses unknown keys with the list of allowed ones and the closest match."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = [name for name in cls.model_fields if name != "kind"]
        unknown = [str(key) for key in data if key not in cls.model_fields]  # `kind` is a field of layers only
        if unknown:  # one error for all of them: a validator raises once
            hints = {key: field_hint(key, allowed).strip() for key in unknown[1:]}
            others = "".join(f"; also unknown: {key}" + (f" ({hint})" if hint else "") for key, hint in hints.items())
            raise PydanticCustomError(
                "unknown_field",
                "unknown field; {hint}allowed: {allowed}{others}",
                {"field": unknown[0], "hint": field_hint(unknown[0], allowed), "allowed": ", ".join(allowed) or "none",
                 "others": others},
            )
        return data
