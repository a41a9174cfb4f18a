"""A spec's recipe checked as a whole, where one field alone cannot say it is wrong: settings
that cannot work together are refused; settings training would not read (a schedule's field
written for another schedule, an SGD field under Adam) are allowed, since a file tuned for
onecycle and switched to cosine with `--set` still loads, but named, as albumentations' no-op
transforms are."""

from __future__ import annotations

from blockspec.errors import fail
from blockspec.spec import SGD_MOMENTUM, OptimizerSpec, SchedulerSpec, Spec
from blockspec.train.whiten import stem_layer

_SCHEDULE_FIELDS = {
    "onecycle": ("max_lr", "pct_start", "anneal", "cycle_momentum", "base_momentum", "max_momentum"),
    "cosine": ("warmup_epochs",),
    "step": ("step_size", "gamma"),
    "plateau": ("patience", "factor"),
}
_SGD_FIELDS = ("momentum", "nesterov")  # SGD's and Muon's; Adam's first beta is its own (or onecycle's cycle)


def check_recipe(spec: Spec) -> None:
    """Refuse settings every run of the spec would contradict (checked as it loads)."""
    optimizer = spec.train.optimizer
    cycling = spec.train.scheduler.momentum_cycle() is not None
    if cycling and optimizer.name in SGD_MOMENTUM and optimizer.momentum == 0:
        raise fail(  # SGD asked for without momentum, which a cycling onecycle would silently give it
            "train.scheduler.cycle_momentum",
            f"onecycle would move {optimizer.name}'s momentum between base_momentum and max_momentum, but "
            "train.optimizer.momentum is 0; set cycle_momentum: false to train without momentum",
            True,
        )
    if spec.train.whiten_stem:
        stem_layer(spec)  # a first layer the whitening can set
    smallest_side = min(spec.input.hw)
    if spec.train.tta_shift >= smallest_side:  # shifted test views reflect their edges
        raise fail("train.tta_shift", f"must be smaller than the input's side ({smallest_side})", spec.train.tta_shift)


def recipe_notes(spec: Spec) -> list[str]:
    """What training says of the spec's recipe before it starts (and `check` with it): the
    settings it would not read, and the augmentation's transforms that do nothing or are
    said with a caveat."""
    from blockspec.data import read_augment  # albumentations: for the commands that read the augmentation

    return [*unread_settings(spec), *read_augment(spec.data.augment, channels=spec.input.channels).notes]


def unread_settings(spec: Spec) -> list[str]:
    """One note per field set away from its default that this recipe does not use."""
    notes = []
    scheduler, optimizer = spec.train.scheduler, spec.train.optimizer
    for name, fields in _SCHEDULE_FIELDS.items():
        if name != scheduler.name:
            notes += [f"train.scheduler.{field} = {value!r} is {name}'s: the {scheduler.name} schedule does not read it"
                      for field, value in _changed(scheduler, fields)]
    if optimizer.name in ("adam", "adamw"):
        notes += [f"train.optimizer.{field} = {value!r} is SGD's and Muon's: {optimizer.name} does not read it"
                  for field, value in _changed(optimizer, _SGD_FIELDS)]
    if optimizer.name != "muon":
        notes += [f"train.optimizer.muon_lr = {value!r} is Muon's: {optimizer.name} does not read it"
                  for _, value in _changed(optimizer, ("muon_lr",))]
    if scheduler.name == "step" and scheduler.step_size >= spec.train.epochs:
        notes.append(f"train.scheduler.step_size = {scheduler.step_size}: the rate never decays in "
                     f"{spec.train.epochs} epochs")
    return notes


def check_warmup(spec: Spec, epochs_flag: bool = False) -> None:
    """A cosine warm-up as long as the run would raise the rate throughout and never decay it:
    refused for a run about to start (`check` and a new `train`, where `--epochs` may have
    shortened the run: `epochs_flag` names it), not where a trained run's spec is read back."""
    scheduler, epochs = spec.train.scheduler, spec.train.epochs
    if scheduler.name != "cosine" or scheduler.warmup_epochs < epochs:
        return
    why = "the rate would rise for the whole run and never decay"
    if epochs_flag:
        raise fail("--epochs", f"is no longer than train.scheduler.warmup_epochs ({scheduler.warmup_epochs:g}): {why}", epochs)
    raise fail("train.scheduler.warmup_epochs", f"must be less than train.epochs ({epochs}): {why}", scheduler.warmup_epochs)


def _changed(section: SchedulerSpec | OptimizerSpec, fields: tuple[str, ...]) -> list[tuple[str, object]]:
    defaults = type(section).model_fields
    return [(field, getattr(section, field)) for field in fields if getattr(section, field) != defaults[field].default]
