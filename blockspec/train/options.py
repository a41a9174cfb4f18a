"""The run options, in a module of their own so that the run and the choice of its data path
both use them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from blockspec.errors import fail, flag_name


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
    init_from: str | None = None  # a checkpoint or state dict whose weights the run starts from
    moved_data_root: str | None = None  # a resumed run's data.root, where its data now lives
    # which of the options kept on resume the user gave, at whatever value (the CLI knows);
    # None: those that differ from their defaults
    given: frozenset[str] | None = None


# The options that decide what a run trains on, how its images are augmented and when it
# ends: a resumed run takes them from its checkpoint, or its data, step count and schedule
# would change (the albumentations path's random streams are per DataLoader worker, so
# `workers` counts too), and a time-to-accuracy run would train on past its target; and the
# weights it started from, which its records name.
_KEPT_ON_RESUME = ("limit_train", "limit_test", "loader", "workers", "stop_at_target", "init_from")


def kept_on_resume(options: RunOptions) -> dict[str, Any]:
    """What a checkpoint records of the run's options."""
    return {name: getattr(options, name) for name in _KEPT_ON_RESUME}


def resumed_options(options: RunOptions, recorded: dict[str, Any] | None) -> RunOptions:
    """The options of a resumed run: the recorded ones restored, a flag contradicting them
    refused. Checkpoints written before they were recorded leave the options as given."""
    if recorded is None:
        return options
    defaults = RunOptions()
    for name, value in recorded.items():
        given = getattr(options, name)
        was_given = name in options.given if options.given is not None else given != getattr(defaults, name)
        if was_given and given != value:
            raise fail(
                flag_name(name),
                f"the run being resumed started {'without it' if value is None or value is False else f'with {value!r}'} and keeps "
                "that; omit the flag",
                given,
            )
    return replace(options, **recorded)
