"""The onecycle schedule the spec describes: peak where `pct_start` puts it, fall shaped by `anneal`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from blockspec.errors import SpecError
from blockspec.load import parse_spec
from blockspec.train.optim import make_optimizer, make_scheduler, momentum_summary, steps_per_batch
from tests.synthetic import tiny_spec_text

STEPS_PER_EPOCH = 20


def schedule_of(scheduler: str, key: str = "lr") -> np.ndarray:
    """`key` (lr or momentum) at every training step, as the run's optimizer would see it."""
    text = tiny_spec_text(Path("unused"), epochs=10, scheduler=scheduler)  # parsing never opens the data folder
    spec = parse_spec(text, "tiny.yaml")
    optimizer = make_optimizer(spec, nn.Linear(2, 2))
    schedule = make_scheduler(spec, optimizer, STEPS_PER_EPOCH)
    values = []
    for _ in range(spec.train.epochs * STEPS_PER_EPOCH):
        values.append(optimizer.param_groups[0][key])
        optimizer.step()
        schedule.step()
    return np.array(values)


def learning_rates(scheduler: str) -> np.ndarray:
    return schedule_of(scheduler, "lr")


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_onecycle_peaks_at_pct_start(anneal: str) -> None:
    rates = learning_rates(f"{{name: onecycle, pct_start: 0.2, anneal: {anneal}}}")
    assert rates.max() == pytest.approx(0.05)  # the spec's lr
    assert int(rates.argmax()) == pytest.approx(0.2 * len(rates), abs=1)
    assert rates[-1] < 1e-5


@pytest.mark.parametrize("pct_start", [0.25, 0.1, 0.05])
def test_a_rise_of_exactly_one_step_schedules_rather_than_dividing_by_zero(pct_start: float) -> None:
    """pct_start × total steps = 1 (a tiny run: 4 steps at 0.25): torch's OneCycleLR alone
    divides by zero at the first step. The rise ends at step 0, so the rate starts at its
    peak and falls from there."""
    spec = parse_spec(tiny_spec_text(Path("unused"), epochs=1, scheduler=f"{{name: onecycle, pct_start: {pct_start}}}"))
    optimizer = make_optimizer(spec, nn.Linear(2, 2))
    total = round(1 / pct_start)
    schedule = make_scheduler(spec, optimizer, total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.05) and np.all(np.diff(rates) < 0)


def test_linear_anneal_falls_in_equal_steps_and_cosine_does_not() -> None:
    def fall(scheduler: str) -> np.ndarray:
        rates = learning_rates(scheduler)
        return np.diff(rates[int(rates.argmax()):])

    linear = fall("{name: onecycle, pct_start: 0.2, anneal: linear}")
    assert np.allclose(linear, linear.mean(), rtol=1e-6, atol=1e-9)
    cosine = fall("{name: onecycle, pct_start: 0.2}")  # the default
    assert abs(cosine[len(cosine) // 2]) > 1.5 * abs(cosine[1])  # steepest mid-way


def test_onecycle_cycles_momentum_against_the_rate_by_default() -> None:
    scheduler = "{name: onecycle, pct_start: 0.2, base_momentum: 0.8, max_momentum: 0.9}"
    momenta, rates = schedule_of(scheduler, "momentum"), learning_rates(scheduler)
    assert momenta[0] == pytest.approx(0.9)
    assert momenta[rates.argmax()] == pytest.approx(0.8)
    assert momenta[-1] == pytest.approx(0.9, abs=1e-4)


def test_cycle_momentum_false_keeps_the_optimizers_momentum() -> None:
    momenta = schedule_of("{name: onecycle, cycle_momentum: false}", "momentum")
    assert np.all(momenta == 0.9)  # optimizer.momentum's default; the cycle would span 0.85–0.95


def test_sgd_without_momentum_under_a_cycling_onecycle_is_a_spec_error() -> None:
    plain_sgd = "{name: sgd, lr: 0.05, momentum: 0}"
    with pytest.raises(SpecError) as error:
        parse_spec(tiny_spec_text(Path("unused"), optimizer=plain_sgd), "tiny.yaml")
    assert str(error.value).startswith("tiny.yaml: train.scheduler.cycle_momentum = True: ")
    assert "cycle_momentum: false" in str(error.value)
    spec = parse_spec(
        tiny_spec_text(Path("unused"), optimizer=plain_sgd, scheduler="{name: onecycle, cycle_momentum: false}"),
        "tiny.yaml",
    )
    assert momentum_summary(spec) == "momentum 0"


@pytest.mark.parametrize(
    ("optimizer", "scheduler", "summary"),
    [
        ("{name: sgd, lr: 0.05}", "{name: onecycle}", "momentum 0.95→0.85→0.95"),
        ("{name: adamw, lr: 0.001}", "{name: onecycle}", "beta1 0.95→0.85→0.95"),
        ("{name: muon, lr: 0.05}", "{name: onecycle}", "momentum 0.95→0.85→0.95"),
        ("{name: sgd, lr: 0.05, momentum: 0.8}", "{name: cosine}", "momentum 0.8"),
        ("{name: adam, lr: 0.001}", "{name: cosine}", ""),
    ],
)
def test_the_run_header_names_the_momentum_really_used(optimizer: str, scheduler: str, summary: str) -> None:
    spec = parse_spec(tiny_spec_text(Path("unused"), optimizer=optimizer, scheduler=scheduler), "tiny.yaml")
    assert momentum_summary(spec) == summary


def test_cosine_warms_up_from_its_first_step_then_falls_over_the_rest() -> None:
    """10 epochs of 20 steps at lr 0.05 with one warm-up epoch: the rate rises by (step+1)/20,
    never 0, peaks at step 19, then follows a half cosine over the 180 steps left."""
    rates = learning_rates("{name: cosine, warmup_epochs: 1}")
    assert rates[:3] == pytest.approx([0.05 / 20, 0.05 * 2 / 20, 0.05 * 3 / 20])
    assert rates[19] == pytest.approx(0.05) and rates[20] == pytest.approx(0.05)
    assert rates[110] == pytest.approx(0.025)
    assert rates[-1] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 179 / 180)))


@pytest.mark.parametrize(("name", "per_batch"), [("onecycle", True), ("cosine", True), ("step", False),
                                                 ("plateau", False), ("none", False)])
def test_which_schedules_move_every_batch(name: str, per_batch: bool) -> None:
    spec = parse_spec(tiny_spec_text(Path("unused"), scheduler=f"{{name: {name}}}"), "tiny.yaml")
    assert steps_per_batch(spec) is per_batch


def test_plateau_decays_when_the_test_accuracy_stops_rising_not_while_it_rises() -> None:
    spec = parse_spec(tiny_spec_text(Path("unused"), scheduler="{name: plateau, patience: 0, factor: 0.5}"), "tiny.yaml")
    optimizer = make_optimizer(spec, nn.Linear(2, 2))
    schedule = make_scheduler(spec, optimizer, 20)
    rates = []
    for accuracy in (40.0, 50.0, 60.0, 55.0):
        schedule.step(accuracy)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.05, 0.05, 0.05, 0.025])


def test_a_run_on_plateau_decays_by_its_own_test_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The rates a run records are torch's ReduceLROnPlateau fed the run's own test accuracies
    (each epoch trains at the rate the previous epochs' accuracies left). At rate 0.005 the
    accuracy rises over the first epochs while the loss falls (here 75 → 78 → 100 %), so a
    schedule fed the loss would decay epochs earlier."""
    import json

    import torch

    from tests.cli_helpers import run_cli
    from tests.synthetic import write_colour_folder

    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=5, optimizer="{name: sgd, lr: 0.005}",
                                   scheduler="{name: plateau, patience: 0, factor: 0.5}"))
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--workers", "0"], capsys)
    assert code == 0, err
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.005)
    replay = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0)
    expected = []
    for record in history:
        expected.append(optimizer.param_groups[0]["lr"])
        replay.step(record["test_acc"])
    assert [record["lr"] for record in history] == pytest.approx(expected)
