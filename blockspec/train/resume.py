"""What a resumed run must be to go on where it stopped: its own directory and last.pt, its
own spec (a command repeating the one that started it is accepted, one changing it is not),
and its own data and process count, so that the schedule, the global batch and the epochs
still to train continue the epochs trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blockspec.errors import fail, flag_name
from blockspec.load import load_spec
from blockspec.spec import Spec
from blockspec.train.checkpoint import TrainedOn, load_checkpoint, spec_inside
from blockspec.train.options import RunOptions
from blockspec.train.overrides import apply_overrides
from blockspec.train.rundir import checkpoint_dir

STATISTICS_NOISE = 1e-5
"""How far (0–1 units) a channel's recorded mean or std may move without the data having
changed: another machine's JPEG decoder can round some pixels the other way."""

_KEEPS = "a resumed run keeps its own spec: leave the file out, or start a new run to train this one"


def check_resumable(checkpoint: dict[str, Any], options: RunOptions) -> None:
    """A run continues from its last.pt (best.pt holds weights only), in its own directory."""
    assert options.resume is not None
    if "optimizer" not in checkpoint or "history" not in checkpoint:
        raise fail(
            "--resume",
            "holds the evaluated weights only (a best.pt); resume from the run directory, whose "
            "last.pt holds the optimizer and history too",
            str(options.resume),
        )
    run_dir = checkpoint_dir(options.resume)
    if options.resume.is_file() and options.resume.name != "last.pt":
        raise fail(
            "--resume",
            f"a run continues from its directory or that directory's last.pt; resuming from this file "
            f"would write into {run_dir}, whose run it is not",
            str(options.resume),
        )
    if options.out is not None and options.out.resolve() != run_dir.resolve():
        raise fail("--out", f"a resumed run continues in its own directory, {run_dir}; omit --out", str(options.out))


def resumed_spec(checkpoint: dict[str, Any], spec: Spec | None, options: RunOptions) -> Spec:
    """The spec the run started with (`spec`, if given, must be it), reading its data where
    the data has moved."""
    own = spec_inside(checkpoint, options.resume)
    if spec is not None and spec != own:
        raise fail("SPEC", f"differs from the spec {options.resume} started with ({first_difference(spec, own)}); {_KEEPS}")
    return apply_overrides(own, data_root=options.moved_data_root) if options.moved_data_root is not None else own


def check_command_repeats_run(
    resume: Path, spec_path: Path | None, edits: list[str] | None, recipe: dict[str, object]
) -> None:
    """SPEC, --set and the recipe flags given with --resume may repeat what started the run
    (its command run again with --resume) but not change it; the data may have moved
    (--data-root), and the run checks it is the same data."""
    given = {name: value for name, value in recipe.items() if value is not None and name != "data_root"}
    if spec_path is None and not edits and not given:
        return
    payload = load_checkpoint(resume, "--resume")
    own = spec_inside(payload, resume)
    requested = apply_overrides(load_spec(spec_path, edits=edits), **given, data_root=own.data.root) if spec_path else None
    if requested == own:  # the command that started it: its --set may name a field --batch-size then rescaled
        return
    keeps = "a resumed run keeps the spec it started with"
    for name, value in given.items():
        changed = apply_overrides(own, **{name: value})
        if changed != own:
            raise fail(flag_name(name), f"{keeps} ({first_difference(changed, own)}); start a new run to change it", value)
    if edits and (changed := spec_inside(payload, resume, edits)) != own:
        raise fail("--set", f"{keeps} ({first_difference(changed, own)}); start a new run to change it", " ".join(edits))
    if requested is not None:
        raise fail("SPEC", f"differs from the spec {resume} started with ({first_difference(requested, own)}); {_KEEPS}",
                   str(spec_path))


def check_same_run(
    checkpoint: dict[str, Any], train_images: int, trained_on: TrainedOn, processes: int, steps_per_epoch: int,
    data_root: str,
) -> None:
    """The data set (`train_images` before any limit, its classes and statistics), the process
    count and the steps an epoch are the ones the checkpoint's run recorded."""
    changed = _data_changes(checkpoint, train_images, trained_on)
    if changed:
        raise fail(
            "--resume",
            f"the data at {data_root} changed since the run started ({changed}): the run would go on "
            "training on other images than its epochs so far; resume it on the data it started with, or start "
            "a new run from its weights (--init-from)",
        )
    recorded_processes = checkpoint.get("processes", processes)  # not recorded before 2026-12-07
    if recorded_processes != processes:  # the global batch would change, even where the step count does not
        raise fail("--resume", f"the run trained in {_processes(recorded_processes)} and this is {_processes(processes)}; "
                   f"resume it in as many as it started with"
                   + (f" (on one machine: torchrun --nproc-per-node {recorded_processes} -m blockspec train --resume …)"
                      if recorded_processes > 1 else
                      " (without torchrun)"))
    recorded = checkpoint.get("steps_per_epoch", steps_per_epoch)
    if recorded != steps_per_epoch:  # the data changed under the run, or its process count
        raise fail(
            "--resume",
            f"the run took {recorded} steps an epoch and its data now gives {steps_per_epoch}, "
            "so its schedule cannot continue where it stopped; resume it on the data and "
            "processes it started with",
        )


def _data_changes(checkpoint: dict[str, Any], train_images: int, trained_on: TrainedOn) -> str:
    """How the data set differs from the one the checkpoint's run recorded ("" if it does
    not): its size, classes, or statistics beyond the noise of another machine's decoder.
    Images swapped one for one are not seen; a checkpoint before 2026-12-07 records less."""
    count = checkpoint.get("train_images")
    if count is not None and count != train_images:
        return f"{count:,} training images then, {train_images:,} now"
    classes = checkpoint.get("classes")
    if classes and tuple(classes) != trained_on.classes:
        return f"classes {', '.join(classes)} then, {', '.join(trained_on.classes)} now"
    for name in ("mean", "std"):
        then, now = checkpoint.get(name), getattr(trained_on, name)
        if then and any(abs(a - b) > STATISTICS_NOISE for a, b in zip(then, now, strict=True)):
            return f"training images' {name} {_channels(then)} then, {_channels(now)} now"
    return ""


def _processes(count: int) -> str:
    return "one process" if count == 1 else f"{count} processes"


def _channels(values: Any) -> str:
    return "/".join(f"{value:.5f}" for value in values)


def first_difference(changed: Spec, own: Spec) -> str:
    """Where two specs first differ, in words: `train.epochs: 3 here, 1 in the run`."""
    path, here, there = _first_difference(changed.model_dump(mode="json"), own.model_dump(mode="json"), "")
    return f"{path or 'the spec'}: {here} here, {there} in the run"


def _first_difference(here: Any, there: Any, path: str) -> tuple[str, str, str]:
    """The path of the first difference and the two values there, as written in a message."""
    if isinstance(here, dict) and isinstance(there, dict):
        for key in [*here, *(key for key in there if key not in here)]:
            if here.get(key) != there.get(key):
                return _first_difference(here.get(key), there.get(key), f"{path}.{key}" if path else str(key))
    if isinstance(here, list) and isinstance(there, list):
        for index, (a, b) in enumerate(zip(here, there)):
            if a != b:
                return _first_difference(a, b, f"{path}[{index}]")
        return path, _entries(len(here)), _entries(len(there))  # whole lists would print every layer's fields
    return path, repr(here), repr(there)


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"
