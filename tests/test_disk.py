"""A full disk: reported before training when there is no room, and mid-run without losing
what last.pt holds. Uses small real tmpfs mounts (Linux, root); skipped where they cannot be made."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from blockspec.train.rundir import PLOTS_AND_METRICS_BYTES
from tests.cli_helpers import metrics, run_cli, start_blockspec, start_torchrun, wait_for_epochs
from tests.synthetic import tiny_spec_text, write_colour_folder


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """make(kilobytes) → the mount point of a fresh tmpfs of that size."""
    mounts: list[Path] = []

    def make(kilobytes: int) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        if not (sys.platform.startswith("linux") and shutil.which("mount")):
            pytest.skip("needs Linux mount")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(point)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield make
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("disk-data")
    path = folder / "tiny.yaml"
    text = tiny_spec_text(write_colour_folder(folder / "data"), epochs=4, extra="  batch_size: 4")
    path.write_text(text.replace("  batch_size: 16\n", ""))  # many small steps: time to fill the disk
    return path


def test_full_disk_is_reported_before_training(small_disk, spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = small_disk(32) / "run"
    code, stdout, err = run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    assert code == 2
    assert "--out" in err and "No space left on device" in err and "Traceback" not in err
    assert "epoch" not in stdout


def test_too_little_room_for_the_run_is_reported_before_training(
    small_disk, spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = small_disk(2048) / "run"
    code, stdout, err = run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    assert code == 2
    assert "MB free there and the run needs about" in err and f"--resume {out}" in err
    assert "epoch " not in stdout and not (out / "metrics.json").exists()


def test_a_torchrun_run_short_of_room_is_told_to_resume_under_torchrun(small_disk, spec: Path) -> None:
    """The remedy said `blockspec train --resume`, which a run of two processes refuses."""
    out = small_disk(2048) / "run"
    process = start_torchrun([str(spec), "--out", str(out)], out.parent)
    _, err = process.communicate(timeout=180)
    assert process.returncode != 0
    assert err.count("MB free there and the run needs about") == 1, err[-3000:]
    assert f"then continue with `torchrun --nproc-per-node 2 -m blockspec train --resume {out}`" in err, err[-3000:]


def test_room_check_asks_for_two_checkpoints_and_the_plots(
    small_disk, spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the first last.pt the run needs room for best.pt and an atomic save's temporary
    copy (two checkpoints) and the plots: with room for one and a half it is refused, with two
    and a half it trains. A wide network makes a checkpoint large against tmpfs's 4 kB pages."""
    wide = tmp_path / "wide.yaml"
    wide.write_text(spec.read_text().replace("conv: {out: 8}, strided: {out: 16}", "conv: {out: 64}, strided: {out: 384}"))
    probe = small_disk(2048) / "run"  # too small for the run: refused right after its first last.pt
    assert run_cli(["train", str(wide), "--out", str(probe), "--workers", "0"], capsys)[0] == 2
    checkpoint = (probe / "last.pt").stat().st_size
    assert checkpoint > 500_000, checkpoint
    used = -(-checkpoint // 4096) * 4096

    def train_with_room_for(checkpoints: float) -> str:
        kilobytes = (used + PLOTS_AND_METRICS_BYTES + int(checkpoints * checkpoint)) // 1024
        out = small_disk(kilobytes) / "run"
        return run_cli(["train", str(wide), "--out", str(out), "--workers", "0", "--epochs", "1"], capsys)[2]

    assert "MB free there and the run needs about" in train_with_room_for(1.5)
    assert "MB free there" not in train_with_room_for(2.5)


def test_disk_filling_up_mid_run_keeps_last_good_epoch_and_resumes(
    small_disk, spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = small_disk(6144)
    out = disk / "run"
    longer = spec.with_name("longer.yaml")  # epochs enough that it cannot finish before the filler fills the disk
    longer.write_text(spec.read_text().replace("  epochs: 4\n", "  epochs: 12\n"))
    process = start_blockspec(["train", str(longer), "--out", str(out), "--workers", "0"])
    wait_for_epochs(out, 1, process)
    filler = disk / "filler"
    try:  # take every free byte; under load the run may have taken the last ones already
        with filler.open("wb") as stream:
            while True:
                stream.write(b"\0" * 65536)
                stream.flush()
    except OSError:
        pass
    try:
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    kept = torch.load(out / "last.pt", weights_only=True)["epoch"]
    if process.returncode == 0:
        pytest.skip("the run finished before the disk filled up")
    assert process.returncode == 2, err
    assert "could not" in err and "No space left on device" in err and "Traceback" not in err
    assert f"still holds epoch {kept}" in err and kept >= 1
    filler.unlink(missing_ok=True)
    code, _, _ = run_cli(["train", "--resume", str(out), "--workers", "0"], capsys)
    assert code == 0
    assert [r["epoch"] for r in metrics(out)] == list(range(1, 13))


def test_a_file_held_open_a_moment_is_replaced_once_let_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows a file another program holds open (a scan, a viewer) cannot be replaced
    meanwhile: PermissionError, which stopped the run at its next record."""
    import os

    from blockspec.atomic import atomic_write

    target = tmp_path / "metrics.csv"
    target.write_text("old")
    refusals = [PermissionError(13, "Access is denied")] * 2
    replace = os.replace

    def held_twice(source: str | Path, destination: str | Path) -> None:
        if refusals:
            raise refusals.pop()
        replace(source, destination)

    monkeypatch.setattr(os, "replace", held_twice)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(PermissionError):  # elsewhere a refusal is the folder's permissions: said at once
        with atomic_write(target) as out:
            out.write(b"new")
    assert target.read_text() == "old" and len(refusals) == 1
    monkeypatch.setattr(sys, "platform", "win32")
    with atomic_write(target) as out:
        out.write(b"new")
    assert target.read_text() == "new" and not refusals and [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


@pytest.mark.parametrize(("error", "remedy"), [
    (OSError(28, "No space left on device"), "free some space"),
    (PermissionError(13, "Access is denied"), "close any program holding one of the run's files open .*writable"),
    (OSError(5, "Input/output error"), "fix the cause"),
])
def test_a_failed_write_is_said_with_a_remedy_for_its_cause(tmp_path: Path, error: OSError, remedy: str) -> None:
    """Every failed write said "free some space", a file locked by Excel on Windows included."""
    from blockspec.errors import SpecError
    from blockspec.train.rundir import disk_errors_reported

    with pytest.raises(SpecError, match=rf"\({error.strerror}\); {tmp_path}/last.pt still holds epoch 3: {remedy}, then"):
        with disk_errors_reported(tmp_path, "write the metrics", 3, "blockspec"):
            raise error


@pytest.mark.parametrize(("name", "problem"), [
    ("a?b", 'holds one of < > " | ? *'), ("x|y", "holds one of"), ("tiny.", "ends in a dot or a space"),
    ("tiny ", "ends in a dot or a space"), ("con", "a device name of Windows"), ("Nul.tar", "a device name of Windows"),
    ("LPT1", "a device name of Windows"), ("com²", "a device name of Windows"), ("CONOUT$", "a device name of Windows"),
    ("aux-head", None), ("console", None), ("com10", None), ("réseau 2", None),
])
def test_names_windows_cannot_give_a_folder(name: str, problem: str | None) -> None:
    """On Windows `a?b` failed when the run's folder was made, after the data had loaded, as a
    fault of --out, and `tiny.` was quietly written to runs\\tiny. (Refused for a new run without
    --out there, before any work; a spec of such a name stays readable everywhere, its
    checkpoints included.)"""
    from blockspec.load import parse_spec
    from blockspec.train.rundir import windows_folder_problem

    found = windows_folder_problem(name)
    assert found == problem if problem is None else problem in found
    assert parse_spec(f'name: "{name}"\nblocks:\n  C1: [conv: {{out: 8}}]\n  output: [gap: {{}}, fc: {{out: 10}}]\n').name == name


def test_a_new_run_of_such_a_name_is_refused_on_windows_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blockspec.errors import SpecError
    from blockspec.load import parse_spec
    from blockspec.train.options import RunOptions
    from blockspec.train.run import train

    spec = parse_spec(tiny_spec_text(tmp_path / "no-data-here", epochs=1).replace("name: tiny", "name: 'tiny.'"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(SpecError, match=r"^name = 'tiny\.': ends in a dot or a space, which Windows drops from folder "
                                        r"names; rename the network or give --out$"):
        train(spec, RunOptions(workers=0, device="cpu", init_from=str(tmp_path / "none.pt")))  # said before its file
    assert not (tmp_path / "runs").exists()
