"""Where a run's data is, found again from another working directory.

A relative `data.root` is read from the working directory, and the run's spec keeps it as
typed (a run directory copied to another machine finds its data the same way). Checkpoints
therefore also record the folder it named when the run read it, which `eval` and `--resume`
use when the relative root is not found from where they run: an `eval` from a notebook's
subfolder, a resume started from another directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blockspec.spec import Spec
from blockspec.train.overrides import apply_overrides

RECORD = "data_root"
"""The checkpoint key: `data.root` made absolute from the run's working directory."""


def absolute_root(spec: Spec) -> str:
    """The folder `spec.data.root` names from here, as recorded (`..` kept, so the recorded
    path ends with the root as typed)."""
    return str(Path(spec.data.root).expanduser().absolute())


def root_found(spec: Spec, payload: dict[str, Any]) -> Spec:
    """`spec`, the checkpoint's own, reading its data where the run read it when its relative
    root is not found from here; otherwise unchanged. Not for a root given on the command line,
    which means what it says."""
    root = Path(spec.data.root).expanduser()
    recorded = payload.get(RECORD)
    if root.is_absolute() or root.exists() or not isinstance(recorded, str):
        return spec
    where = Path(recorded)
    if where.parts[len(where.parts) - len(root.parts):] != root.parts or not where.exists():
        return spec
    return apply_overrides(spec, data_root=recorded)
