"""blockspec: compact CNNs as short YAML files, analysed exactly, built and trained.

`build_model` is imported lazily so that analysing a spec never pays for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blockspec.errors import SpecError
from blockspec.load import load_spec, parse_spec
from blockspec.spec import Spec
from blockspec.summary import Summary, summarize

if TYPE_CHECKING:
    from blockspec.build import build_model

__all__ = ["Spec", "SpecError", "Summary", "build_model", "load_spec", "parse_spec", "summarize"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from blockspec.build import build_model

        return build_model
    raise AttributeError(f"module 'blockspec' has no attribute {name!r}")
