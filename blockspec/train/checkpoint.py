"""Checkpoints that survive a SIGKILL: written to a temporary file, then renamed.

Everything in them is a tensor, number, string, list or dict, so `torch.load(...,
weights_only=True)` opens them and a foreign file cannot run code.
"""

from __future__ import annotations

import io
import math
import pickle
import random
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from blockspec.atomic import atomic_write
from blockspec.build import build_model
from blockspec.errors import fail
from blockspec.filenames import readable_name
from blockspec.load import parse_spec
from blockspec.modules import BlockNet
from blockspec.spec import Spec
from blockspec.train.rundir import LOCK_FILE

if TYPE_CHECKING:
    from blockspec.data.imagedata import ImageData

FORMAT = "blockspec-checkpoint-v1"


@dataclass(frozen=True)
class TrainedOn:
    """What a checkpoint's scores mean and what its inputs must be: the class names in score
    order, and the per-channel mean and std (0–1 units) the training images were normalised
    with. An image folder's statistics come from its train/ images, so a checkpoint evaluated
    or exported without them would be fed inputs scaled another way."""

    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, data: ImageData) -> TrainedOn:
        return cls(tuple(data.classes), tuple(data.mean), tuple(data.std))

    @classmethod
    def recorded(cls, payload: dict[str, Any], data: ImageData) -> TrainedOn:
        """The checkpoint's record; what it lacks (checkpoints before 2026-12-06 lack it all,
        then until 2026-12-07 the statistics) taken from `data`."""
        return cls(*(tuple(payload.get(name) or getattr(data, name)) for name in cls.names()))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The checkpoint's keys that hold the record."""
        return tuple(field.name for field in fields(cls))

    def record(self) -> dict[str, list]:
        return {name: list(getattr(self, name)) for name in self.names()}


def save_atomic(payload: dict[str, Any], target: Path) -> None:
    """Write `payload` so that `target` is always either the old or the new complete file.

    Serialised in memory first: torch's zip writer turns a failed write (a full disk) into an
    opaque RuntimeError, while a plain file write raises the OSError that says what happened.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    with atomic_write(target) as out:
        out.write(buffer.getbuffer())


def load_checkpoint(path: Path, flag: str = "--checkpoint") -> dict[str, Any]:
    """A blockspec checkpoint, or a SpecError naming `flag` and saying why the file is not one."""
    path, payload = _read_torch_file(path, flag)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise fail(flag, "not a blockspec checkpoint (no model/spec inside)", str(path))
    if not isinstance(payload.get("spec"), str) or not isinstance(payload.get("model"), dict):
        raise fail(flag, "a blockspec checkpoint without its spec or weights (edited or written by something else)",
                   str(path))
    classes = payload.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(name, str) for name in classes)):
        raise fail(flag, "a blockspec checkpoint whose classes are not a list of names (edited or written by "
                   "something else)", str(path))
    wrong = next(((name, what) for name, (what, fits) in _FIELDS.items() if name in payload and not fits(payload[name])), None)
    if wrong is not None:
        raise fail(flag, f"a blockspec checkpoint whose {wrong[0]} is not {wrong[1]} (edited or written by something "
                   "else)", str(path))
    if classes:  # recorded raw before 2026-12-07: folders named in bytes that are not UTF-8
        payload["classes"] = [readable_name(name) for name in classes]
    return payload


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, (int, float)) and math.isfinite(item) for item in value)


_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    # what each field a command reads must be, checked before any reads it: a wrong type failed deep inside as a bug
    **{name: ("a count", _count) for name in ("epoch", "train_images", "steps_per_epoch", "processes")},
    **{name: ("a list of numbers", _finite_numbers) for name in ("mean", "std")},
    **{name: ("a mapping", lambda value: isinstance(value, dict)) for name in ("ema", "scheduler", "lookahead", "run_options")},
    "optimizer": ("an optimizer's state", lambda value: isinstance(value, dict) and isinstance(value.get("param_groups"), list)),
    "rng": ("the random generators' state", lambda value: isinstance(value, dict)
            and {"torch", "cuda", "numpy_keys", "numpy_pos", "python"} <= value.keys()),
    "history": ("a list of epochs' records", lambda value: isinstance(value, list) and all(isinstance(r, dict) for r in value)),
}


def _read_torch_file(path: Path, flag: str) -> tuple[Path, Any]:
    """The file (a run directory's last.pt) and what torch reads from it with weights only, or a
    SpecError naming `flag` and saying why it cannot be read."""
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        if path.name == "last.pt" and (path.parent / LOCK_FILE).exists():
            raise fail(flag, "a run directory without a checkpoint: its run stopped before saving one, so there is "
                       "nothing to continue or load; start the run again", str(path.parent))
        raise fail(flag, "no such checkpoint file", str(path))
    export = _exported_kind(path)  # before torch reads it, which warns about such files first
    if export:
        raise fail(flag, f"it is {export} of a network (`blockspec export`), not a checkpoint; give the run's best.pt "
                   "or last.pt", str(path))
    try:
        with warnings.catch_warnings():  # torch's remarks on a file it then refuses come before our answer
            warnings.simplefilter("ignore")
            return path, torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (any unreadable file gets an answer, no traceback)
        raise fail(flag, f"cannot read it as a checkpoint: {_why_unreadable(path, error)}", str(path)) from None


def _why_unreadable(path: Path, error: Exception) -> str:
    """torch's files are zip archives (pickles before torch 1.6): one holding Python objects
    besides tensors is refused by weights_only loading, as every file not blockspec's own; one
    that cannot be read at all was cut short or damaged (copied while written, a full disk)."""
    with open(path, "rb") as file:
        head = file.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch's zip, or its legacy format (a pickle)
        return "not a file torch saved"
    if isinstance(error, pickle.UnpicklingError):
        return "it holds Python objects besides tensors and numbers (blockspec loads with weights_only=True and reads only its own)"
    return f"the file is cut short or damaged ({type(error).__name__}: {str(error).splitlines()[0][:120]})"


def _exported_kind(path: Path) -> str | None:
    """What a file `blockspec export` wrote is, by the members torch puts in it; None for any
    other file."""
    try:
        with zipfile.ZipFile(path) as bundle:
            names = bundle.namelist()
    except (zipfile.BadZipFile, OSError):  # not a zip: a pickle, or no torch file at all
        return None
    if any(name.endswith("/archive_format") for name in names):
        return "a torch.export program (.pt2)"
    if any("/code/__torch__/" in name for name in names):
        return "a TorchScript export"
    return None


def spec_inside(payload: dict[str, Any], path: Path | str, edits: list[str] | None = None) -> Spec:
    """The spec a checkpoint (read from `path`) trained, checked as a file's is (with `--set`
    `edits` applied), its errors naming "PATH (spec inside)"."""
    return parse_spec(payload["spec"], source=f"{path} (spec inside)", edits=edits)


def model_from_checkpoint(
    spec: Spec, payload: dict[str, Any], path: Path, flag: str = "--checkpoint", spec_from: tuple[str, str] | None = None
) -> BlockNet:
    """`spec`'s module holding the checkpoint's evaluated weights; when they do not fit, a
    SpecError quoting the first mismatch torch names (its first line only says "Error(s)"),
    blamed on the checkpoint, or on `spec_from` (flag, value: a SPEC file or `--set` edits)
    where the spec is not the checkpoint's own."""
    model = build_model(spec)
    try:
        model.load_state_dict(evaluated_weights(payload))
    except RuntimeError as error:
        first = (str(error).splitlines()[1:2] or [str(error)])[0].strip()
        if spec_from is not None:
            raise fail(spec_from[0], f"builds other weights than {path} holds: {first}", spec_from[1]) from None
        raise fail(flag, f"its weights do not fit spec '{spec.name}': {first}", str(path)) from None
    return model


def evaluated_weights(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a run evaluates: its EMA average when it keeps one, else the model's.

    last.pt holds both (training resumes from the raw weights), so `evaluate` and `export`
    must pick the average to reproduce the accuracy that metrics.json reports.
    """
    average = payload.get("ema") or {}
    if not average:
        return payload["model"]
    return {name.removeprefix("module."): value for name, value in average.items() if name.startswith("module.")}


def load_weights(path: Path, flag: str) -> dict[str, torch.Tensor]:
    """The weights to start a run from: a blockspec checkpoint's evaluated ones, or a plain
    state dict saved with `torch.save(model.state_dict(), path)`."""
    path, payload = _read_torch_file(path, flag)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return evaluated_weights(payload)
    if isinstance(payload, dict) and payload and all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in payload.items()
    ):
        return payload
    raise fail(flag, "neither a blockspec checkpoint nor a state dict (names → tensors)", str(path))


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_pos": int(numpy_state[2]),
        "python": [list(part) if isinstance(part, tuple) else part for part in random.getstate()],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # the GPUs visible now, of those the run saw: resumed where fewer are visible (Colab,
        # CUDA_VISIBLE_DEVICES=0) the others' states have no device to go to
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
