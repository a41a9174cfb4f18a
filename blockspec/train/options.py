"""The run options, in a module of their own so that the run and the choice of its data path
both use them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    """How to run, as opposed to what to train (that is the spec)."""

    device: str = "auto"
    workers: int = 2
    loader: str = "auto"
    out: Path | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    resume: Path | None = None
    stop_at_target: bool = False  # time-to-accuracy runs: end after the first epoch at the target
