"""Test accuracy of a checkpoint, overall and per class; the checkpoint carries its spec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blockspec.data import load_dataset, make_loaders
from blockspec.errors import fail
from blockspec.spec import Spec
from blockspec.train.checkpoint import TrainedOn, model_from_checkpoint
from blockspec.train.data_path import check_data_fits
from blockspec.train.data_root import found_root
from blockspec.train.device import pick_device
from blockspec.train.loop import Batches, evaluate
from blockspec.train.optim import make_loss
from blockspec.train.tta import TTAViews


@dataclass(frozen=True)
class EvalReport:
    spec_name: str
    epoch: int  # the epoch whose weights the checkpoint holds (0: none trained yet)
    views: str  # the test-time views averaged with each image, in words ("" for none)
    images: int
    loss: float
    accuracy: float
    per_class: dict[str, float]


def evaluate_checkpoint(
    payload: dict[str, Any],
    checkpoint_path: Path,
    spec: Spec,
    device: str = "auto",
    limit_test: int | None = None,
    spec_from: tuple[str, str] | None = None,
) -> EvalReport:
    """The checkpoint's weights (`payload`, read from `checkpoint_path`) scored on `spec`'s
    test data: its own spec, or one given or edited (`spec_from`: the flag and value it came
    from, blamed if it builds other weights)."""
    model = model_from_checkpoint(spec, payload, checkpoint_path, spec_from=spec_from)
    recorded_classes = tuple(payload["classes"]) if payload.get("classes") else None
    data = load_dataset(spec.data.dataset, found_root(spec, payload), trained_classes=recorded_classes)
    check_data_fits(spec, data, trained=spec_from is None)  # a SPEC or --set may have changed the input
    trained_on = TrainedOn.recorded(payload, data)
    if not trained_on.mean:  # a test set alone has no train statistics to stand in for unrecorded ones
        raise fail("--checkpoint", f"it does not record its training images' mean and std (written before "
                   f"2026-12-07), and {spec.data.root} holds no train/ and test/ of all its classes to take them from",
                   str(checkpoint_path))
    if trained_on.classes != data.classes:
        raise fail(
            "data.root",
            f"{checkpoint_path} scores the classes {', '.join(trained_on.classes)}, in that order, but this data set has "
            f"{', '.join(data.classes)}: every score would be read as another class's",
            spec.data.root,
        )
    info = pick_device(device, spec.train.amp, spec.train.channels_last)
    _, test_loader = make_loaders(data.limited(test=limit_test), None, spec.train.batch_size, 0, 0, info.pin_memory)
    model = info.place(model)  # the layout the run evaluated in, as load_trained's
    batches = Batches(info, trained_on.mean, trained_on.std)  # as in training, whatever train/ holds now
    views = TTAViews.of(spec.train)
    result = evaluate(model, test_loader, batches, make_loss(spec), views)
    per_class = {
        name: 100.0 * float(np.mean(result.predictions[result.labels == index] == index))
        for index, name in enumerate(data.classes)
        if np.any(result.labels == index)
    }
    return EvalReport(spec.name, int(payload.get("epoch", 0)), views.describe(), len(result.labels), result.loss,
                      result.acc, per_class)
