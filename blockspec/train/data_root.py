"""Where a run's data is, found again from another working directory.

A relative `data.root` is read from the working directory, and the run's spec keeps it as
typed (a project copied elsewhere finds its data the same way). Checkpoints therefore also
record the folder the run read it from, which `eval` and `--resume` use when that same
relative root is not found from where they run: an `eval` from a notebook's subfolder, a
resume started from another directory. The spec is left as typed; only the reading moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blockspec.spec import Spec

RECORD = "data_root"
"""The checkpoint key: {"typed": data.root as the spec has it, "read": the folder read}."""


def root_record(spec: Spec, read_from: str) -> dict[str, str]:
    """What checkpoints record of the run's data root, `read_from` made absolute from here."""
    return {"typed": spec.data.root, "read": str(Path(read_from).expanduser().absolute())}


def found_root(spec: Spec, payload: dict[str, Any]) -> str:
    """Where to read `spec`'s data: its root, or the folder the checkpoint's run read when the
    root is the run's own relative one (as typed; another root means what it says) and is not
    found from here."""
    root, record = spec.data.root, payload.get(RECORD)
    if not isinstance(record, dict) or record.get("typed") != root:
        return root  # another root, or a checkpoint from before 2026-12-07
    here = Path(root).expanduser()
    if here.is_absolute() or here.exists() or not Path(record["read"]).exists():
        return root
    return record["read"]
