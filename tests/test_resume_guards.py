"""What a stop or a resume must not get wrong at the edges: other data under a resumed run,
SIGTERM before training, a second Ctrl-C just after a save, a run killed in its first save."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blockspec.load import parse_spec
from blockspec.train.options import RunOptions
from blockspec.train.run import TrainingInterrupted, train
from tests.cli_helpers import ROOT, interrupted_run, metrics, python_ctrl_c, run_cli
from tests.synthetic import tiny_spec_text, write_colour_folder


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    return write_colour_folder(tmp_path / "data")  # 24 a class: 6 steps an epoch at batch 16


def _stopped_after_epoch_1(tmp_path: Path, data_root: Path) -> Path:
    out = tmp_path / "run"
    interrupted_run(parse_spec(tiny_spec_text(data_root, epochs=2)), RunOptions(out=out, workers=0), at="epoch   1/2")
    return out


def test_resume_refuses_data_with_more_images(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two more images a class keep the 6 steps an epoch, so only the recorded count tells."""
    out = _stopped_after_epoch_1(tmp_path, data_root)
    for folder in (data_root / "train").iterdir():
        for number in (0, 1):
            shutil.copy(folder / f"{number:04d}.png", folder / f"extra{number}.png")
    code, _, err = run_cli(["train", "--resume", str(out), "--workers", "0"], capsys)
    assert code == 2 and f"the data at {data_root} changed since the run started (96 training images then, 104 now)" in err
    assert len(metrics(out)) == 1


def test_resume_refuses_data_whose_images_changed(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _stopped_after_epoch_1(tmp_path, data_root)
    image = data_root / "train" / "class0" / "0000.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    code, _, err = run_cli(["train", "--resume", str(out), "--workers", "0"], capsys)
    assert code == 2 and "changed since the run started (training images' mean " in err


def test_resume_takes_the_same_data_moved(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _stopped_after_epoch_1(tmp_path, data_root)
    moved = data_root.rename(tmp_path / "moved")
    code, _, err = run_cli(["train", "--resume", str(out), "--workers", "0", "--data-root", str(moved)], capsys)
    assert code == 0 and len(metrics(out)) == 2, err


def test_sigterm_before_training_says_so(tmp_path: Path, data_root: Path) -> None:
    """SIGTERM while the data loads or the model builds ended the process without a word. In
    a child process, whose SIGTERM is Python's default, as a command's is (and which, unlike
    this one, may die of it)."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(data_root, epochs=1))
    child = subprocess.run([sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from blockspec.load import load_spec
from blockspec.train.options import RunOptions
from blockspec.train.run import TrainingInterrupted, train
def log(line):
    if line.startswith("tiny: "):
        signal.raise_signal(signal.SIGTERM)
try:
    train(load_spec({str(spec)!r}), RunOptions(out=Path({str(tmp_path / "run")!r}), workers=0), log=log)
except TrainingInterrupted as stop:
    print(stop.exit_code, stop, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
"""], cwd=ROOT, capture_output=True, text=True, check=False)
    assert child.returncode == 0, (child.returncode, child.stderr)
    assert child.stdout == "143 stopped by SIGTERM before training began; nothing was trained True\n"


def test_a_second_ctrl_c_just_after_a_save_names_the_saved_epoch(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C twice as epoch 1's last.pt lands (the second stops at once): the message named
    epoch 0, the one the loop had counted, while the file held epoch 1."""
    out = tmp_path / "run"
    real_replace = os.replace
    saves = []

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        real_replace(source, target)
        if Path(target) == out / "last.pt":
            saves.append(target)
            if len(saves) == 2:  # epoch 0's, then epoch 1's
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    stop = interrupted_run(parse_spec(tiny_spec_text(data_root, epochs=2)), RunOptions(out=out, workers=0), at="never")
    assert "last.pt holds epoch 1. Resume with" in str(stop)


def test_a_run_killed_in_its_first_save_can_start_again(tmp_path: Path, data_root: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Killed while writing its first last.pt, a run left its lock and the half-written file:
    resuming says to start again, and starting again said the folder was not empty."""
    out = tmp_path / "run"
    out.mkdir()
    killed = subprocess.run(
        [sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from blockspec.atomic import atomic_write
from blockspec.train.rundir import hold_run_dir
with hold_run_dir(Path({str(out)!r})), atomic_write(Path({str(out)!r}) / "last.pt") as half:
    half.write(b"PK")
    os.kill(os.getpid(), signal.SIGKILL)
"""], cwd=ROOT, check=False)
    assert killed.returncode == -signal.SIGKILL and any(path.name.endswith(".tmp") for path in out.iterdir())
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(data_root, epochs=1))
    code, _, err = run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    assert code == 0, err
    assert not any(path.name.endswith(".tmp") for path in out.iterdir())


def test_a_ctrl_c_while_the_stop_is_reported_leaves_the_report_whole(
    tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """People press Ctrl-C again: one while the run read what last.pt holds said "nothing was
    trained", though an epoch was saved. Here every checkpoint read after epoch 1 comes with one."""
    import torch

    real_load = torch.load

    def load(*args: object, **kwargs: object) -> object:
        signal.raise_signal(signal.SIGINT)
        return real_load(*args, **kwargs)

    def log(line: str) -> None:
        if line.startswith("epoch   1/3"):
            monkeypatch.setattr(torch, "load", load)
            signal.raise_signal(signal.SIGINT)

    out = tmp_path / "run"
    with python_ctrl_c(), pytest.raises((TrainingInterrupted, KeyboardInterrupt)) as stop:
        train(parse_spec(tiny_spec_text(data_root, epochs=3)), RunOptions(out=out, workers=0), log=log)
    assert str(stop.value) == f"interrupted; {out / 'last.pt'} holds epoch 1. Resume with: blockspec train --resume {out}"


def test_ctrl_c_after_the_first_save_says_how_to_resume(tmp_path: Path, data_root: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    real_replace = os.replace

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        real_replace(source, target)
        if Path(target) == out / "spec.yaml":
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    stop = interrupted_run(parse_spec(tiny_spec_text(data_root, epochs=2)), RunOptions(out=out, workers=0), at="never")
    assert str(stop) == f"interrupted; {out / 'last.pt'} holds epoch 0. Resume with: blockspec train --resume {out}"


def test_sigterm_dropped_by_a_finaliser_still_stops_the_run(tmp_path: Path, data_root: Path) -> None:
    """Python prints and drops an exception raised inside a finaliser: a SIGTERM that lands in
    one before training must still stop the run (at the loop's first check), not be lost."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(data_root, epochs=2))
    child = subprocess.run([sys.executable, "-c", f"""
import os, signal
from pathlib import Path
from blockspec.load import load_spec
from blockspec.train.options import RunOptions
from blockspec.train.run import TrainingInterrupted, train
class Finalised:
    def __del__(self):
        signal.raise_signal(signal.SIGTERM)
def log(line):
    if line.startswith("tiny: "):
        Finalised()
try:
    train(load_spec({str(spec)!r}), RunOptions(out=Path({str(tmp_path / "run")!r}), workers=0), log=log)
except TrainingInterrupted as stop:
    print(stop.exit_code, stop)
"""], cwd=ROOT, capture_output=True, text=True, check=False)
    assert child.stdout.startswith("143 stopped by SIGTERM; "), (child.stdout, child.stderr)
    assert "holds epoch 0" in child.stdout


@pytest.mark.parametrize("made", ["file", "folder"])
def test_a_users_hidden_tmp_entry_is_not_taken_for_a_half_written_checkpoint(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], made: str
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    if made == "file":
        (out / ".notes.tmp").write_text("mine")
    else:
        (out / ".last.pt.1-deadbeef.tmp").mkdir()
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(data_root, epochs=1))
    code, _, err = run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    assert code == 2 and "the folder already exists and is not empty" in err, err
    assert len(list(out.iterdir())) == 1


@pytest.mark.skipif(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM is taken by the test runner")
def test_a_signal_on_the_heels_of_a_stop_does_not_cut_its_report_short(tmp_path: Path, data_root: Path) -> None:
    """Ctrl-C and SIGTERM together (`docker stop` after a Ctrl-C): the second used to land in the
    report of the first and escape as a bare SIGTERM."""
    both = {signal.SIGINT, signal.SIGTERM}

    def log(line: str) -> None:
        if line.startswith("tiny: "):
            signal.pthread_sigmask(signal.SIG_BLOCK, both)
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, both)  # both at once: SIGINT's handler first

    with python_ctrl_c(), pytest.raises((TrainingInterrupted, KeyboardInterrupt)) as stop:
        train(parse_spec(tiny_spec_text(data_root, epochs=1)), RunOptions(out=tmp_path / "run", workers=0), log=log)
    assert str(stop.value) == "interrupted before training began; nothing was trained", repr(stop.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_run_resumes_where_fewer_gpus_are_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint saved with two GPUs visible holds two CUDA generator states; resumed with
    one (Colab, CUDA_VISIBLE_DEVICES=0) the second had no device: IndexError."""
    import torch

    from blockspec.train.checkpoint import restore_rng, rng_state

    state = rng_state()  # this machine's: no CUDA state
    state["cuda"] = [torch.full((16,), 1, dtype=torch.uint8), torch.full((16,), 2, dtype=torch.uint8)]
    restored: dict[int, torch.Tensor] = {}

    def set_rng_state(new_state: torch.Tensor, device: int = 0) -> None:  # as torch's, on one visible GPU
        if device >= torch.cuda.device_count():
            raise IndexError("tuple index out of range")
        restored[device] = new_state

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)  # what torch's set_rng_state_all calls
    restore_rng(state)
    assert list(restored) == [0] and torch.equal(restored[0], state["cuda"][0])
