"""Command-line flags layered over the spec; the result is the effective spec of the run."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import reduce
from typing import Any

from pydantic import ValidationError

from blockspec.errors import SpecError, flag_name, validation_problems
from blockspec.spec import SGD_MOMENTUM, Spec


# The spec field each recipe flag of `train` sets.
FLAG_FIELDS = {"epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.optimizer.lr",
               "dataset": "data.dataset", "data_root": "data.root", "seed": "train.seed", "target": "train.target"}


def apply_overrides(
    spec: Spec,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    seed: int | None = None,
    target: float | None = None,
) -> Spec:
    """A new spec with the given flags applied, validated like the file itself.

    `--lr` sets the optimizer's rate and, for onecycle, its peak (a `max_lr` in the file
    would otherwise silently win); it names SGD's rate alone, so Muon's peak stays as the spec
    had it (scaled with `--batch-size` by the square root, as always). `--batch-size` without `--lr` rescales the spec's rates
    (see `scale_rates`), so a recipe tuned at one batch size stays sensible at another; with
    or without `--lr` it raises the EMA decay to the power of the batch ratio, because the
    decay applies per step: the average then spans the same number of epochs (0.999 at batch
    128 spans about 2.6 epochs of CIFAR-10; left at 0.999, batch 512 would span about 10).
    """
    data = spec.model_dump(mode="python")
    train: dict[str, Any] = data["train"]
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "dataset": dataset, "data_root": data_root,
             "seed": seed, "target": target}
    for name, value in given.items():
        if value is not None:
            *sections, field = FLAG_FIELDS[name].split(".")
            reduce(dict.__getitem__, sections, data)[field] = value
    if lr is not None:
        if train["optimizer"]["name"] == "muon":  # Muon's peak (muon_lr × max_lr / lr) kept as it was
            old = spec.train
            ratio = (old.scheduler.max_lr if old.scheduler.name == "onecycle" else None) or old.optimizer.lr
            train["optimizer"]["muon_lr"] *= ratio / old.optimizer.lr
        train["scheduler"]["max_lr"] = None
    if batch_size is not None and batch_size > 0:
        scale_rates(train, batch_size / spec.train.batch_size, lr_given=lr is not None)
    try:
        return Spec.model_validate(data)
    except ValidationError as error:
        raise SpecError(validation_problems(error, _flag_for)) from None


def blame_flags(error: SpecError, given: dict[str, Any], trained: bool = False) -> SpecError:
    """A problem found during the run with a field a flag set names the flag, not the file's
    field (which may hold another value); `given`: flag name → value, None where not given.
    `trained` (eval, a resumed run): the spec's `input` and `classes` are fixed by its weights,
    so data of another shape is the problem of the flag that chose the data, where one did."""
    flags = {FLAG_FIELDS[name]: flag_name(name) for name, value in given.items() if value is not None}
    data = next((name for name in ("data_root", "dataset") if given.get(name) is not None), None)
    fixed = {"input", "classes"} if trained and data else set()
    return SpecError([replace(problem, path=flag_name(data), value=given[data]) if problem.path in fixed
                      else replace(problem, path=flags.get(problem.path, problem.path)) for problem in error.problems],
                     error.source, alone=error.alone)


def _flag_for(location: tuple[Any, ...]) -> str:
    """The flag a problem's value came from: the field's own (`--epochs`), or for a field the
    flags only rescale (`train.ema`, onecycle's `max_lr`), the field named with its cause."""
    field = str(location[-1])
    if field in ("ema", "max_lr"):
        return f"{'.'.join(map(str, location))} (rescaled by --batch-size)"
    return flag_name(field)


def scale_rates(train: dict[str, Any], batch_ratio: float, lr_given: bool) -> None:
    """Learning rates for a batch `batch_ratio` times the spec's: linear for SGD (Goyal et al.,
    2017: the same number of epochs then takes the same path), square root for Adam/AdamW,
    whose normalised steps would overshoot under linear scaling, and for Muon's `muon_lr`,
    which `--lr` (`lr_given`) does not name; the EMA decay to the power of the ratio."""
    optimizer = train["optimizer"]
    if optimizer["name"] == "muon":
        optimizer["muon_lr"] *= math.sqrt(batch_ratio)
    if not lr_given:
        factor = batch_ratio if optimizer["name"] in SGD_MOMENTUM else math.sqrt(batch_ratio)
        optimizer["lr"] *= factor
        if train["scheduler"]["max_lr"] is not None:
            train["scheduler"]["max_lr"] *= factor
    if train["ema"] is not None:
        train["ema"] = train["ema"] ** batch_ratio
