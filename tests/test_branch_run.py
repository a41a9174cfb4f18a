"""benchmarks/branch_run.py: a run branched before its switch epoch trains exactly what the
run with the switch from scratch trains, and branches that would differ are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blockspec.load import parse_spec
from blockspec.train.options import RunOptions
from blockspec.train.run import TrainingInterrupted, train
from tests.cli_helpers import ROOT, metrics, run_cli, without_timing
from tests.synthetic import tiny_spec_text, write_colour_folder

SWITCH = ["--set", "data.augment_off.last_epochs=1", "--set", "data.augment_off.transforms=[CoarseDropout]"]


def _branch(run_dir: Path, new_dir: Path, edits: list[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "benchmarks/branch_run.py", str(run_dir), str(new_dir), *edits]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(a 3-epoch run's directory holding epoch 2, the spec text it was started from)."""
    root = tmp_path_factory.mktemp("branch")
    text = tiny_spec_text(write_colour_folder(root / "data"), epochs=3)
    run_dir = root / "plain"

    def stop_after_epoch_2(line: str) -> None:  # the way Ctrl-C after epoch 2 ends a run
        if line.startswith("epoch   2/"):
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(parse_spec(text, "plain.yaml"), RunOptions(out=run_dir, workers=0), log=stop_after_epoch_2)
    assert len(metrics(run_dir)) == 2
    return run_dir, text


def test_the_branch_equals_the_run_with_the_switch_from_scratch(
    stopped_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, text = stopped_run
    result = _branch(run_dir, tmp_path / "branch", SWITCH)
    assert result.returncode == 0, result.stderr
    assert "branched after epoch 2" in result.stdout
    code, out, _ = run_cli(["train", "--resume", str(tmp_path / "branch")], capsys)
    assert code == 0 and "epochs 3–3 without CoarseDropout" in out
    scratch = tmp_path / "scratch.yaml"
    scratch.write_text(text)
    code, _, _ = run_cli(["train", str(scratch), *SWITCH, "--out", str(tmp_path / "scratch"), "--workers", "0"], capsys)
    assert code == 0
    assert without_timing(metrics(tmp_path / "branch")) == without_timing(metrics(tmp_path / "scratch"))
    assert len(metrics(run_dir)) == 2  # the source run is left as it was


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        (["--set", "train.label_smoothing=0.2"], "a branch may only change data.augment_off"),
        (["--set", "data.augment_off.last_epochs=2"], "switches from epoch 2; the branch starts after epoch 2"),
        (["--set", "data.augment_off.last_epochs=one"], "data.augment_off.last_epochs"),
    ],
)
def test_branches_that_would_train_something_else_are_refused(
    stopped_run: tuple[Path, str], tmp_path: Path, edits: list[str], message: str
) -> None:
    result = _branch(stopped_run[0], tmp_path / "branch", edits)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "branch").exists()


def test_an_existing_directory_is_not_overwritten(stopped_run: tuple[Path, str], tmp_path: Path) -> None:
    (tmp_path / "branch").mkdir()
    result = _branch(stopped_run[0], tmp_path / "branch", SWITCH)
    assert result.returncode == 1 and "already exists" in result.stderr
    assert list((tmp_path / "branch").iterdir()) == []
