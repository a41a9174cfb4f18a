"""The onecycle schedule the spec describes: peak where `pct_start` puts it, fall shaped by `anneal`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from blockspec.load import parse_spec
from blockspec.train.optim import make_optimizer, make_scheduler
from tests.synthetic import tiny_spec_text

STEPS_PER_EPOCH = 20


def learning_rates(scheduler: str) -> np.ndarray:
    """The rate of every training step, as the run's optimizer would see it."""
    text = tiny_spec_text(Path("unused"), epochs=10, scheduler=scheduler)  # parsing never opens the data folder
    spec = parse_spec(text, "tiny.yaml")
    optimizer = make_optimizer(spec, nn.Linear(2, 2))
    schedule = make_scheduler(spec, optimizer, STEPS_PER_EPOCH)
    rates = []
    for _ in range(spec.train.epochs * STEPS_PER_EPOCH):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return np.array(rates)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_onecycle_peaks_at_pct_start(anneal: str) -> None:
    rates = learning_rates(f"{{name: onecycle, pct_start: 0.2, anneal: {anneal}}}")
    assert rates.max() == pytest.approx(0.05)  # the spec's lr
    assert int(rates.argmax()) == pytest.approx(0.2 * len(rates), abs=1)
    assert rates[-1] < 1e-5


def test_linear_anneal_falls_in_equal_steps_and_cosine_does_not() -> None:
    def fall(scheduler: str) -> np.ndarray:
        rates = learning_rates(scheduler)
        return np.diff(rates[int(rates.argmax()):])

    linear = fall("{name: onecycle, pct_start: 0.2, anneal: linear}")
    assert np.allclose(linear, linear.mean(), rtol=1e-6, atol=1e-9)
    cosine = fall("{name: onecycle, pct_start: 0.2}")  # the default
    assert abs(cosine[len(cosine) // 2]) > 1.5 * abs(cosine[1])  # steepest mid-way
