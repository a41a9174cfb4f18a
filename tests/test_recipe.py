"""Recipe settings training would not read are named; a warm-up as long as the run is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from blockspec.load import load_spec
from blockspec.recipe import unread_settings
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "architectures" / "flagship.yaml"


@pytest.mark.parametrize(
    ("edits", "notes"),
    [
        (["train.scheduler={name: cosine, pct_start: 0.5, max_lr: 0.3}"],
         ["train.scheduler.max_lr = 0.3 is onecycle's: the cosine schedule does not read it",
          "train.scheduler.pct_start = 0.5 is onecycle's: the cosine schedule does not read it"]),
        (["train.scheduler={name: onecycle, warmup_epochs: 2}"],
         ["train.scheduler.warmup_epochs = 2.0 is cosine's: the onecycle schedule does not read it"]),
        (["train.optimizer={name: adam, momentum: 0.5, muon_lr: 0.2}"],
         ["train.optimizer.momentum = 0.5 is SGD's and Muon's: adam does not read it",
          "train.optimizer.muon_lr = 0.2 is Muon's: adam does not read it"]),
        (["train.scheduler={name: step, step_size: 50}"], ["train.scheduler.step_size = 50: the rate never decays in 40 epochs"]),
        ([], []),  # the flagship as written reads every field it sets
    ],
)
def test_settings_the_recipe_does_not_read_are_named(edits: list[str], notes: list[str]) -> None:
    """Each was accepted without a word: a peak the cosine schedule never reached, an Adam
    whose first beta stayed 0.9 whatever `momentum` said."""
    assert unread_settings(load_spec(FLAGSHIP, edits=edits)) == notes


def test_check_and_train_print_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["check", str(FLAGSHIP), "--set", "train.scheduler={name: none, base_momentum: 0.1}"], capsys)
    assert code == 0 and "note: train.scheduler.base_momentum = 0.1 is onecycle's: the none schedule" in err


def test_a_cosine_warm_up_as_long_as_the_run_is_refused_for_a_run_about_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rate rose for the whole run and never decayed (3 epochs of a 10-epoch warm-up).
    A trained run's spec read back (eval, --resume, export) is not refused: one trained so
    before the check must stay usable."""
    long = ["--set", "train.scheduler={name: cosine, warmup_epochs: 40}"]
    code, _, err = run_cli(["check", str(FLAGSHIP), *long], capsys)
    assert code == 2 and "train.scheduler.warmup_epochs = 40.0: must be less than train.epochs (40)" in err
    assert load_spec(FLAGSHIP, edits=[long[1]]).train.scheduler.warmup_epochs == 40  # what reads a checkpoint's spec
    code, _, err = run_cli(["train", str(FLAGSHIP), "--set", "train.scheduler={name: cosine, warmup_epochs: 5}",
                            "--epochs", "3", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "error: --epochs = 3: is no longer than train.scheduler.warmup_epochs (5)" in err, err
    assert not (tmp_path / "run").exists()


def _cosine_rates(warmup_epochs: float, steps_per_epoch: int, steps: int, *edits: str) -> tuple[list[float], float]:
    """The first `steps` rates of the flagship's SGD under a cosine schedule, and its `lr`."""
    from blockspec import build_model
    from blockspec.train.optim import make_optimizer, make_scheduler

    spec = load_spec(FLAGSHIP, edits=[f"train.scheduler={{name: cosine, warmup_epochs: {warmup_epochs}}}",
                                      "train.optimizer.name=sgd", *edits])
    optimizer = make_optimizer(spec, build_model(spec))
    scheduler = make_scheduler(spec, optimizer, steps_per_epoch=steps_per_epoch)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates, spec.train.optimizer.lr


def test_a_warm_up_of_a_fraction_of_an_epoch_is_rounded_to_steps_not_truncated() -> None:
    rates, lr = _cosine_rates(0.29, 100, 30)
    assert rates[28] == pytest.approx(lr) and rates[27] < rates[28]  # the 29th step peaks


def test_a_warm_up_rounded_up_to_the_whole_run_still_leaves_a_step_to_decay() -> None:
    rates, lr = _cosine_rates(0.96, 12, 12, "train.epochs=1")
    assert rates[9] == pytest.approx(lr) and rates[11] < rates[10] == rates[9]
