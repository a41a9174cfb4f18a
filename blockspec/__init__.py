"""blockspec: compact CNNs as short YAML files, analysed exactly, built and trained.

`build_model` and `load_trained` are imported lazily so that analysing a spec never pays for
importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from blockspec.errors import SpecError
from blockspec.load import load_spec, parse_spec
from blockspec.spec import Spec
from blockspec.summary import Summary, summarize

if TYPE_CHECKING:
    from blockspec.build import build_model
    from blockspec.trained import TrainedModel, load_trained

__all__ = ["Spec", "SpecError", "Summary", "TrainedModel", "build_model", "load_spec", "load_trained", "parse_spec",
           "summarize"]
__version__ = "0.1.0"


_LAZY = {"build_model": "blockspec.build", "load_trained": "blockspec.trained", "TrainedModel": "blockspec.trained"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'blockspec' has no attribute {name!r}")


def __dir__() -> list[str]:
    """What tab completion should offer: the public names, the lazy ones included, and the
    subpackages loaded, not this module's own imports (`Any`, `importlib`)."""
    modules = {name for name, value in globals().items() if isinstance(value, type(importlib)) and name != "importlib"}
    return sorted({*__all__, "__version__", *modules})
