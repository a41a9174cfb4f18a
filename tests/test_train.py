"""`blockspec train` / `eval` end to end on tiny data: artefacts, determinism, resume, errors."""

from __future__ import annotations

import json
import re
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from blockspec.load import parse_spec
from blockspec.train.device import pick_device
from blockspec.train.options import RunOptions
from blockspec.train.records import is_new_best, summarize_history
from blockspec.train.run import run_summary
from tests.cli_helpers import (
    interrupted_run,
    metrics,
    run_cli,
    start_blockspec,
    wait_for_epochs,
    without_timing,
)
from tests.synthetic import tiny_spec_text, write_colour_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_folder(tmp_path_factory.mktemp("colours"))


def write_spec(folder: Path, data_root: Path, epochs: int = 2, extra: str = "", **spec_parts: str) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(tiny_spec_text(data_root, epochs, extra, **spec_parts))
    return path


def finished_run(folder: Path, data_root: Path, capsys: pytest.CaptureFixture[str], name: str = "run",
                 epochs: int = 1) -> tuple[Path, Path]:
    """(spec, run directory) of the tiny spec trained to its end, for the commands that take a run."""
    spec = write_spec(folder, data_root, epochs=epochs)
    out = folder / name
    assert run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)[0] == 0
    return spec, out



def test_train_writes_every_artefact(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, data_root)
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["train", str(spec), "--out", str(out), "--workers", "0", "--target", "50"], capsys)
    assert code == 0
    assert "best test accuracy" in stdout and "epoch   2/2" in stdout
    for name in ("spec.yaml", "metrics.json", "metrics.csv", "summary.json", "best.pt", "last.pt",
                 "curves.png", "misclassified.png", "confusion.png"):
        assert (out / name).is_file(), name
    history = metrics(out)
    assert [r["epoch"] for r in history] == [1, 2]
    assert set(history[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr",
                               "seconds", "images_per_second", "peak_host_memory_mb", "peak_gpu_memory_mb"}
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_loss,train_acc")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_test_acc"] == max(r["test_acc"] for r in history)
    assert summary["target"] == 50 and summary["total_seconds"] > 0
    assert summary["peak_host_memory_mb"] > 0
    assert summary["run_options"] == {"limit_train": None, "limit_test": None, "loader": "auto", "workers": 0,
                                      "stop_at_target": False, "init_from": None}
    assert summary["augmentation"] == "batched tensor (cpu)" and summary["cuda_graph"] is None
    assert summary["classes"] == sorted(path.name for path in (data_root / "train").iterdir())
    last = torch.load(out / "last.pt", weights_only=True)
    assert {"model", "spec", "optimizer", "scheduler", "epoch", "rng", "history"} <= set(last)
    assert last["epoch"] == 2
    best = torch.load(out / "best.pt", weights_only=True)
    assert "model" in best and "name: tiny" in best["spec"]
    for picture in ("curves.png", "misclassified.png", "confusion.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_metrics(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, data_root)
    runs = []
    for name in ("a", "b"):
        code, _, _ = run_cli(["train", str(spec), "--out", str(tmp_path / name), "--workers", "0"], capsys)
        assert code == 0
        runs.append(without_timing(metrics(tmp_path / name)))
    assert runs[0] == runs[1]
    code, _, _ = run_cli(["train", str(spec), "--out", str(tmp_path / "c"), "--workers", "0", "--seed", "7"], capsys)
    assert without_timing(metrics(tmp_path / "c")) != runs[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="off CUDA only")
def test_cuda_graphs_and_compile_off_cuda_are_ignored_and_said_to_be(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    runs = []
    for name, field in (("plain", None), ("graphs", "cuda_graphs"), ("compile", "compile")):
        sets = ["--set", f"train.{field}=true"] if field else []
        code, stdout, _ = run_cli(["train", str(spec), "--out", str(tmp_path / name), "--workers", "0", *sets], capsys)
        assert code == 0
        assert ("train.cuda_graphs ignored (NVIDIA CUDA and one process only)" in stdout) == (field == "cuda_graphs")
        assert ("train.compile ignored (CUDA only)" in stdout) == (field == "compile")
        runs.append(without_timing(metrics(tmp_path / name)))
    assert runs[0] == runs[1] == runs[2]


def test_stop_at_target_ends_after_the_first_epoch_at_the_target(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=4)
    out = tmp_path / "run"
    args = ["train", str(spec), "--out", str(out), "--workers", "0", "--target", "1", "--stop-at-target"]
    code, stdout, _ = run_cli(args, capsys)  # any accuracy of 4 classes reaches 1 %
    assert code == 0
    assert "stopping: the target 1% is reached" in stdout and "epoch   2/4" not in stdout
    assert [r["epoch"] for r in metrics(out)] == [1]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert json.loads((out / "summary.json").read_text())["target_epoch"] == 1


def test_recorded_rate_is_the_one_the_last_update_used(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not the rate a per-batch schedule moves on to after the final step: a linear onecycle
    carried one step past its end goes below zero."""
    spec = write_spec(tmp_path, data_root, scheduler="{name: onecycle, anneal: linear}")
    code, _, _ = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--workers", "0"], capsys)
    assert code == 0
    final = 0.05 / 25 / 1e4  # OneCycleLR's defaults: initial = peak / 25, final = initial / 1e4
    assert metrics(tmp_path / "run")[-1]["lr"] == pytest.approx(final)


def test_tiny_data_is_learnt(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The loop really trains: colours are easy, so 6 epochs reach high accuracy."""
    spec = write_spec(tmp_path, data_root, epochs=6)
    code, _, _ = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--workers", "0"], capsys)
    assert code == 0
    assert metrics(tmp_path / "run")[-1]["test_acc"] >= 90


@pytest.mark.parametrize("recipe", ["", "  ema: 0.9\n  tta_flip: true\n  tta_shift: 1"])
def test_eval_reports_the_checkpoint_accuracy(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], recipe: str
) -> None:
    """`eval` of last.pt reproduces the run's last evaluation: the EMA weights, not the raw
    ones that last.pt also keeps for resuming, under the spec's test-time views."""
    spec = write_spec(tmp_path, data_root, extra=recipe)
    out = tmp_path / "run"
    run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    code, stdout, _ = run_cli(["eval", "--checkpoint", str(out / "last.pt"), "--device", "cpu"], capsys)
    assert code == 0
    last = metrics(out)[-1]
    assert f"test accuracy {last['test_acc']:.2f}%" in stdout
    assert f"(loss {last['test_loss']:.4f})" in stdout
    assert "class3" in stdout
    code, stdout, _ = run_cli(["eval", "--checkpoint", str(out / "last.pt"), "--device", "cpu", "-f", "json"], capsys)
    report = json.loads(stdout)
    assert code == 0 and report["accuracy"] == pytest.approx(last["test_acc"]) and report["epoch"] == last["epoch"]
    assert set(report["per_class"]) == {"class0", "class1", "class2", "class3"} and report["images"] == 32


def test_eval_on_data_whose_classes_differ_from_the_runs_is_refused(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Class folder names set the score order: data with one folder renamed would score the
    same images against shuffled labels, 0 % where the run measured far more."""
    import shutil

    _, out = finished_run(tmp_path, data_root, capsys)
    renamed = tmp_path / "renamed"
    shutil.copytree(data_root, renamed, ignore=shutil.ignore_patterns(".blockspec-cache"))
    for split in ("train", "test"):
        (renamed / split / "class0").rename(renamed / split / "z_class0")
    for checkpoint in ("best.pt", "last.pt"):
        code, _, err = run_cli(["eval", "--checkpoint", str(out / checkpoint), "--data-root", str(renamed)], capsys)
        assert code == 2 and (
            "test/ holds classes the checkpoint was not trained on: z_class0 (it scores class0, class1, class2, "
            "class3)" in err
        ), err


def test_eval_normalises_as_the_run_did_whatever_train_holds_now(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image folder's mean and std come from its train/ images: checkpoints record them, so
    the same test images score the same beside train/ images of other colours."""
    import shutil

    _, out = finished_run(tmp_path, data_root, capsys)
    darker = tmp_path / "darker"
    shutil.copytree(data_root, darker, ignore=shutil.ignore_patterns(".blockspec-cache"))
    for image in (darker / "train").rglob("*.png"):
        Image.open(image).point(lambda value: value // 3).save(image)
    recorded = torch.load(out / "best.pt", weights_only=True)
    assert len(recorded["mean"]) == len(recorded["std"]) == 3
    scores = [run_cli(["eval", "--checkpoint", str(out / "best.pt"), *flags], capsys)
              for flags in ([], ["--data-root", str(darker)])]
    assert scores[0][0] == scores[1][0] == 0 and scores[0][1] == scores[1][1]


def test_a_class_count_other_than_the_datas_says_what_to_set(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message ended mid-sentence ("…has 4 classes; the spec says")."""
    spec = write_spec(tmp_path, data_root, epochs=1)
    code, _, err = run_cli(["train", str(spec), "--set", "classes=5", "--set", "blocks.output[1].fc.out=5"], capsys)
    assert code == 2 and err.rstrip().endswith(
        "classes = 5: data set 'imagefolder' has 4 classes; set `classes` and the last layer's `out` to 4"), err


def test_eval_reads_a_test_folder_alone_with_some_of_the_trained_classes(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints record their classes and statistics, so a held-out set needs no train/
    folder; its classes, some or all of the trained ones, are scored by the checkpoint's order
    (also with a train/ of all of them beside it, which was refused as a mismatched set)."""
    import shutil
    import tarfile

    _, out = finished_run(tmp_path, data_root, capsys)
    code, full, _ = run_cli(["eval", "--checkpoint", str(out)], capsys)
    per_class = {line.split()[0]: line for line in full.splitlines()[1:]}
    only = tmp_path / "only"
    for name in ("class1", "class3"):
        shutil.copytree(data_root / "test" / name, only / "test" / name)
    with tarfile.open(tmp_path / "only.tar", "w") as bundle:
        bundle.add(only / "test", arcname="test")
    beside = tmp_path / "beside"  # a train/ of all the classes beside it, as a project keeps it: not needed
    shutil.copytree(only, beside)
    shutil.copytree(data_root / "train", beside / "train")
    with tarfile.open(tmp_path / "beside.tar", "w") as bundle:
        bundle.add(beside, arcname="test")  # its top folder named like a split
    same = tmp_path / "same"  # a train/ of the same classes: still some of the trained ones
    shutil.copytree(only, same)
    for name in ("class1", "class3"):
        shutil.copytree(data_root / "train" / name, same / "train" / name)
    for root in (only, tmp_path / "only.tar", beside, tmp_path / "beside.tar", same):
        code, stdout, err = run_cli(["eval", "--checkpoint", str(out), "--data-root", str(root)], capsys)
        assert code == 0, err
        assert stdout.splitlines()[1:] == [per_class["class1"], per_class["class3"]]
        assert "on 16 images" in stdout
    (only / "test" / "class3").rename(only / "test" / "dog")
    code, _, err = run_cli(["eval", "--checkpoint", str(out), "--data-root", str(only)], capsys)
    assert code == 2 and "test/ holds classes the checkpoint was not trained on: dog (it scores class0, class1, " in err
    code, _, err = run_cli(["eval", "--checkpoint", str(out), "--data-root", str(tmp_path / "run")], capsys)
    assert code == 2 and "no test/ folder in" in err and "Traceback" not in err
    (only / "test" / "class2").mkdir()
    code, _, err = run_cli(["eval", "--checkpoint", str(out), "--data-root", str(only)], capsys)
    assert code == 2 and "class2 holds no images" in err and err.rstrip().endswith("evaluation reads root/test/<class>/<images>")
    (only / "test" / "class2").rmdir()
    small = write_colour_folder(tmp_path / "small", size=8)
    shutil.rmtree(small / "train")
    code, _, err = run_cli(["eval", "--checkpoint", str(out), "--data-root", str(small)], capsys)
    assert code == 2 and "the test images of data set 'imagefolder' are 3×8×8" in err, err  # not its absent train images


def test_eval_on_data_that_does_not_fit_names_the_checkpoint_and_the_flag(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = finished_run(tmp_path, data_root, capsys)
    small = write_colour_folder(tmp_path / "small", size=8)
    for command in (["eval", "--checkpoint", str(out / "best.pt")], ["train", "--resume", str(out)]):
        # the weights fix the input: the data the flag chose is what does not fit (it blamed `input`)
        code, _, err = run_cli([*command, "--data-root", str(small)], capsys)
        assert code == 2 and err.startswith(f"error: --data-root = '{small}': the spec expects 3×16×16 images"), err
        assert err.rstrip().endswith("are 3×8×8; give data of the checkpoint's own shape")
    code, _, err = run_cli(["eval", "--checkpoint", str(out / "best.pt"), "--data-root", str(tmp_path / "none")], capsys)
    assert code == 2 and err.startswith(f"error: --data-root = '{tmp_path / 'none'}'"), err


LIMITS = ["--limit-train", "40", "--limit-test", "16"]


@pytest.mark.parametrize(("workers", "limits"), [("0", []), ("1", []), ("0", LIMITS)])
def test_sigkill_mid_epoch_then_resume_loses_and_doubles_nothing(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], workers: str, limits: list[str]
) -> None:
    """Killed after its first epoch and resumed, the run equals an uninterrupted one exactly
    (the weight average, lookahead and flip-TTA evaluation included); a run on part of the data
    resumes on that part without being told again. Eight epochs: on part of the data an epoch
    takes a quarter of a second, and the kill must land before the last."""
    spec = write_spec(
        tmp_path, data_root, epochs=8, extra="  batch_size: 4\n  ema: 0.99\n  lookahead: {every: 3}\n  tta_flip: true"
    )
    spec.write_text(spec.read_text().replace("  batch_size: 16\n", ""))
    _, stdout, _ = run_cli(["train", str(spec), "--out", str(tmp_path / "straight"), "--workers", workers, *limits], capsys)
    assert "EMA 0.99, lookahead every 3 steps" in stdout  # the header names both averages
    run_dir = tmp_path / "killed"
    process = start_blockspec(["train", str(spec), "--out", str(run_dir), "--workers", workers, *limits])
    wait_for_epochs(run_dir, 1, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done_before_kill = len(metrics(run_dir))
    assert 1 <= done_before_kill < 8
    code, _, _ = run_cli(["train", "--resume", str(run_dir), "--workers", workers], capsys)
    assert code == 0
    history = metrics(run_dir)
    assert [r["epoch"] for r in history] == list(range(1, 9))
    assert without_timing(history) == without_timing(metrics(tmp_path / "straight"))


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--limit-train", "48"], "--limit-train = 48: the run being resumed started with 40 and keeps that"),
        (["--epochs", "3"], "--epochs = 3: a resumed run keeps the spec it started with (train.epochs: 3 here, 1 in the run)"),
        (["--set", "train.seed=5"], "--set = 'train.seed=5': a resumed run keeps the spec it started with (train.seed: 5 here"),
        (["--workers", "1"], "--workers = 1: the run being resumed started with 0 and keeps that"),
        # given at their default values, still given
        (["--workers", "2"], "--workers = 2: the run being resumed started with 0 and keeps that"),
        (["--loader", "auto"], "--loader = 'auto': the run being resumed started with 'albumentations' and keeps that"),
        (["--stop-at-target"], "--stop-at-target = True: the run being resumed started without it and keeps that"),
        (["--out", "elsewhere"], "--out = 'elsewhere': a resumed run continues in its own directory"),
    ],
)
def test_resume_refuses_flags_that_would_change_the_run(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    out = tmp_path / "run"
    run_cli(["train", str(spec), "--out", str(out), "--workers", "0", "--loader", "albumentations", *LIMITS], capsys)
    code, _, err = run_cli(["train", "--resume", str(out), *flags], capsys)
    assert code == 2 and says in err and "Traceback" not in err


def test_resume_needs_a_last_pt_in_a_run_directory(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    out = tmp_path / "run"
    run_cli(["train", str(spec), "--out", str(out), "--workers", "0", *LIMITS], capsys)
    code, _, err = run_cli(["train", "--resume", str(out / "best.pt")], capsys)
    assert code == 2 and "Traceback" not in err
    assert "--resume" in err and "holds the evaluated weights only (a best.pt)" in err
    code, _, err = run_cli(["train", "--resume", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and f"--resume = '{tmp_path / 'nowhere'}': no such checkpoint file" in err


def test_run_files_get_the_users_permissions(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Atomic writes go through a temporary file; it must not leave them private (0600)."""
    spec = write_spec(tmp_path, data_root, epochs=1)
    out = tmp_path / "run"
    umask = os.umask(0o022)
    try:
        run_cli(["train", str(spec), "--out", str(out), "--workers", "0", *LIMITS], capsys)
    finally:
        os.umask(umask)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.iterdir()}
    assert set(modes) >= {"last.pt", "best.pt", "metrics.json", "summary.json", "spec.yaml", "curves.png"}
    assert set(modes.values()) == {0o644}, modes


def test_one_training_image_is_refused_before_training(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--limit-train", "1"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "--limit-train = 1: training needs at least 2 images a process; this gives 1" in err


def test_a_batch_of_one_is_refused_where_batch_norm_cannot_train_on_it(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Batch norm after global pooling sees one value a channel in a batch of one: torch would
    stop at that layer mid-epoch; the run is refused before it starts."""
    spec = write_spec(tmp_path, data_root, epochs=1)
    spec.write_text(spec.read_text().replace("gap: {}", "gap: {}, norm: {}"))
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--batch-size", "1"], capsys)
    assert (code, "Traceback" in err) == (2, False)
    # the flag, not the file's field (which says 16)
    assert err == ("error: --batch-size = 1: the batch norm at output.1 gets one value a channel from one image, "
                   "and cannot train on it: use batches of 2 or more images\n")
    assert not (tmp_path / "run").exists()


def test_a_batch_of_one_trains_where_batch_norm_sees_whole_maps(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each batch norm here normalises a 16×16 or 8×8 map: one image gives it statistics."""
    spec = write_spec(tmp_path, data_root, epochs=1)
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--batch-size", "1", *LIMITS], capsys)
    assert code == 0, err
    assert len(metrics(tmp_path / "run")) == 1


def test_a_batch_larger_than_the_training_set_is_pointed_out(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every step then takes the whole set, a smaller batch than the rates were set for."""
    spec = write_spec(tmp_path, data_root, epochs=1)
    code, stdout, err = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--batch-size", "64", *LIMITS], capsys)
    assert code == 0, err
    assert ("note: batch 64 is more than the 40 training images: each step takes all 40, while the learning rate and "
            "the EMA decay are set for batches of 64") in stdout


def test_an_out_that_is_a_file_is_refused_as_a_file(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "notes.txt")], capsys)
    assert code == 2 and f"--out = '{tmp_path / 'notes.txt'}': is a file, not a run directory" in err


@pytest.mark.parametrize("device", ["cpu:abc", "auto:1", "cpu:"])
def test_malformed_device_is_refused(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], device: str) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--device", device], capsys)
    assert code == 2 and f"--device = '{device}': unknown device" in err


def test_ctrl_c_after_the_last_steps_still_stops_the_run(tmp_path: Path, data_root: Path) -> None:
    """A Ctrl-C that lands after the last training step (in the evaluation, the saves) ends the
    run as interrupted, rather than being dropped. Sent from the run's own log line."""
    spec = parse_spec(write_spec(tmp_path, data_root, epochs=2).read_text())
    out = tmp_path / "run"
    stop = interrupted_run(spec, RunOptions(out=out, workers=0, limit_train=40, limit_test=16), at="epoch   2/2")
    assert "holds epoch 2" in str(stop) and len(metrics(out)) == 2


def test_ctrl_c_before_the_first_epoch_says_nothing_was_trained(tmp_path: Path, data_root: Path) -> None:
    """Ctrl-C while the data loads or the model is built (here: at the line that follows both)
    used to end the command with exit 130 and no word; now it says where the run stood."""
    spec = parse_spec(write_spec(tmp_path, data_root, epochs=1).read_text())
    out = tmp_path / "run"
    stop = interrupted_run(spec, RunOptions(out=out, workers=0, limit_train=40, limit_test=16), at=f"{spec.name}: ")
    assert str(stop) == "interrupted before training began; nothing was trained" and stop.exit_code == 130
    assert not (out / "last.pt").exists()


def test_ctrl_c_before_a_resumed_run_trains_leaves_it_as_it_was(tmp_path: Path, data_root: Path) -> None:
    spec = parse_spec(write_spec(tmp_path, data_root, epochs=2).read_text())
    out = tmp_path / "run"
    interrupted_run(spec, RunOptions(out=out, workers=0, limit_train=40, limit_test=16), at="epoch   1/2")
    stop = interrupted_run(None, RunOptions(resume=out, workers=0), at="resuming ")
    assert str(stop) == "interrupted before training resumed; the run is as it was" and len(metrics(out)) == 1


def test_ctrl_c_in_the_final_records_reports_the_last_epoch(tmp_path: Path, data_root: Path) -> None:
    """After the last epoch the loop no longer holds Ctrl-C: one there (the last line is logged
    after the final plots) still names the epoch last.pt holds and how to finish the records."""
    spec = parse_spec(write_spec(tmp_path, data_root, epochs=1).read_text())
    out = tmp_path / "run"
    stop = interrupted_run(spec, RunOptions(out=out, workers=0, limit_train=40, limit_test=16), at="best test accuracy")
    assert f"holds epoch 1. Resume with: blockspec train --resume {out}" in str(stop)


def test_a_relative_data_root_is_found_from_another_directory(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run keeps `data.root` as typed, relative to where it ran; `eval` and `--resume` from
    another directory (a notebook's subfolder) read the data where the run did, rather than
    failing to find it, and score the same."""
    spec = write_spec(tmp_path, data_root, epochs=2)
    out = tmp_path / "run"
    monkeypatch.chdir(data_root.parent)
    interrupted_run(parse_spec(spec.read_text().replace(str(data_root), data_root.name)), RunOptions(out=out, workers=0),
                    at="epoch   1/2")
    assert parse_spec((out / "spec.yaml").read_text()).data.root == data_root.name
    here = run_cli(["eval", "--checkpoint", str(out / "best.pt"), "-f", "json"], capsys)
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    there = run_cli(["eval", "--checkpoint", str(out / "best.pt"), "-f", "json"], capsys)
    assert there == here and here[0] == 0
    code, _, err = run_cli(["train", "--resume", str(out)], capsys)
    assert code == 0 and len(metrics(out)) == 2, err
    resumed = torch.load(out / "last.pt", weights_only=True)
    assert parse_spec(resumed["spec"]).data.root == data_root.name  # only the reading moved: the spec keeps its root
    for other in (["--data-root", f"./{data_root.name}"], ["--set", f"data.root=./{data_root.name}"]):
        code, _, err = run_cli(["eval", "--checkpoint", str(out), *other], capsys)  # another root means what it says
        assert code == 2 and "folder does not exist" in err, err


def test_resume_takes_the_runs_own_spec_file_and_refuses_another(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    out = tmp_path / "run"
    run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    code, _, _ = run_cli(["train", str(spec), "--resume", str(out), "--workers", "0"], capsys)
    assert code == 0
    spec.write_text(spec.read_text().replace("epochs: 1", "epochs: 2"))
    code, _, err = run_cli(["train", str(spec), "--resume", str(out), "--workers", "0"], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"SPEC = '{spec}': differs from the spec {out} started with (train.epochs: 2 here, 1 in the run)" in err


def test_the_command_that_started_a_run_resumes_it_when_run_again_with_resume(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flags, edits and the spec file that repeat the run's own values were refused as if they
    changed it; the run's data may also have moved."""
    import shutil

    spec = write_spec(tmp_path, data_root, epochs=5)
    out = tmp_path / "run"
    command = ["train", str(spec), "--epochs", "1", "--batch-size", "32", "--seed", "0", "--dataset", "imagefolder",
               "--set", "train.label_smoothing=0.1", "--out", str(out), "--workers", "0"]
    assert run_cli(command, capsys)[0] == 0
    moved = tmp_path / "moved"
    shutil.copytree(data_root, moved, ignore=shutil.ignore_patterns(".blockspec-cache"))
    for again in (command[1:], command[2:]):  # with the spec file, and without it
        code, stdout, err = run_cli(["train", *again[:again.index("--out")], "--resume", str(out), "--workers", "0",
                                     "--data-root", str(moved)], capsys)
        assert code == 0, err
        assert "best test accuracy" in stdout
    code, _, err = run_cli(["train", "--resume", str(out), "--batch-size", "64"], capsys)
    assert code == 2 and "--batch-size = 64: a resumed run keeps the spec it started with (train.batch_size: 64 here" in err
    rescaled = tmp_path / "rescaled"  # a --set of a field --batch-size then rescaled: refused, as if it changed it
    command = [*command[:command.index("--out")], "--set", "train.ema=0.99", "--out", str(rescaled), "--workers", "0"]
    assert run_cli(command, capsys)[0] == 0
    code, _, err = run_cli([*command, "--resume", str(rescaled)], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--resume", str(out), "--set", "train.nope=1"], capsys)
    assert code == 2 and err.startswith(f"error: {out} (spec inside) with --set train.nope=1: train.nope = 1: unknown"), err


def test_resume_on_data_that_changed_size_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More images would mean more steps an epoch than the schedule was built for (and other
    images than the epochs so far: the recorded count says so first)."""
    root = write_colour_folder(tmp_path / "colours", train_per_class=8, test_per_class=2)
    spec = write_spec(tmp_path, root, epochs=1)
    out = tmp_path / "run"
    run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    write_colour_folder(tmp_path / "colours", train_per_class=24, test_per_class=2)
    code, _, err = run_cli(["train", "--resume", str(out), "--workers", "0"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "changed since the run started (32 training images then, 96 now)" in err
    checkpoint = torch.load(out / "last.pt", weights_only=True)  # as written before 2026-12-06, without the records
    for record in ("train_images", "classes", "mean", "std"):
        del checkpoint[record]
    torch.save(checkpoint, out / "last.pt")
    code, _, err = run_cli(["train", "--resume", str(out), "--workers", "0"], capsys)
    assert code == 2 and "the run took 2 steps an epoch and its data now gives 6" in err


@pytest.mark.parametrize(("signum", "code", "says"), [(signal.SIGINT, 130, "interrupted; "),
                                                    (signal.SIGTERM, 143, "stopped by SIGTERM; ")])
def test_ctrl_c_or_sigterm_saves_and_exits_cleanly(tmp_path: Path, data_root: Path, signum: int, code: int,
                                                    says: str) -> None:
    """SIGTERM is how docker stop, Kubernetes and SLURM end a job: without a handler the run
    died mid-step, with no word of what last.pt holds."""
    spec = write_spec(tmp_path, data_root, epochs=50, extra="  batch_size: 4")
    spec.write_text(spec.read_text().replace("  batch_size: 16\n", ""))
    run_dir = tmp_path / "interrupted"
    process = start_blockspec(["train", str(spec), "--out", str(run_dir), "--workers", "0"])
    wait_for_epochs(run_dir, 1, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert says in stderr and "Resume with: blockspec train --resume" in stderr and "Traceback" not in stderr
    saved = torch.load(run_dir / "last.pt", weights_only=True)
    assert saved["epoch"] == len(metrics(run_dir)) >= 1


def test_existing_run_dir_is_not_overwritten(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, data_root)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(["train", str(spec), "--out", str(out)], capsys)
    assert code == 2 and "already exists" in err
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("augment", "expected"),
    [
        ("    - Cutot: {p: 0.5}\n", "data.augment[0]"),
        ("    - HorizontalFlip: {prob: 0.5}\n", "data.augment[0].HorizontalFlip.prob"),
        ("    - Normalize: {}\n", "data.augment[0]"),
        # refused only against the data's channels, in the dry run: both paths must make it
        (
            "    - CoarseDropout: {hole_height_range: [4, 4], hole_width_range: [4, 4], fill: [10, 20]}\n",
            "data.augment[0].CoarseDropout.fill = [10, 20]: one value a channel: the images have 3",
        ),
        (
            "    - CoarseDropout: {hole_height_range: [24, 24], hole_width_range: [4, 4]}\n",
            "data.augment[0].CoarseDropout.hole_height_range = [24, 24]: holes of at least 24 px do not fit the images' "
            "height of 16 px; keep the range's lower end at most 16",
        ),
        (  # the flip alternate_flip takes out of the pipeline still counts in the positions
            "    - HorizontalFlip: {p: 0.5}\n"
            "    - CoarseDropout: {hole_height_range: [4, 4], hole_width_range: [4, 4], fill: [10, 20]}\n"
            "  alternate_flip: true\n",
            "data.augment[1].CoarseDropout.fill = [10, 20]: one value a channel: the images have 3",
        ),
    ],
)
@pytest.mark.parametrize("loader", ["gpu", "albumentations"])
def test_augmentation_errors_stop_before_training(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], augment: str, expected: str, loader: str
) -> None:
    text = tiny_spec_text(data_root)
    start = text.index("  augment:\n") + len("  augment:\n")
    end = text.index("train:")
    (tmp_path / "bad.yaml").write_text(text[:start] + augment + text[end:])
    command = ["train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "run"), "--loader", loader]
    code, _, err = run_cli(command, capsys)
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_forcing_the_batched_path_names_what_keeps_the_augmentation_off_it(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tiny_spec_text(data_root).replace("fill: mean, p: 0.5}", "fill: mean, p: 0.5}\n    - Affine: {rotate: 5, interpolation: 0}")
    (tmp_path / "nearest.yaml").write_text(text)
    command = ["train", str(tmp_path / "nearest.yaml"), "--out", str(tmp_path / "run"), "--loader", "gpu"]
    code, _, err = run_cli(command, capsys)
    assert code == 2 and (
        "--loader = 'gpu': the spec's augmentation has no batched equivalent: data.augment[2].Affine.interpolation = 0: "
        "the batched warp is bilinear (1); use --loader albumentations"
    ) in err


def test_a_data_error_with_a_field_set_on_the_command_line_names_the_edit(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file says 16×16; the --set edit made it 32: the error must not read as the file's."""
    spec = write_spec(tmp_path, data_root, epochs=1)
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "run"), "--set", "input.size=32"], capsys)
    assert code == 2 and err.startswith(f"error: {spec} with --set input.size=32: input: the spec expects 3×32×32"), err


def test_spec_and_data_must_agree(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tiny_spec_text(data_root).replace("input: {channels: 3, size: 16}", "input: {channels: 1, size: 16}")
    (tmp_path / "gray.yaml").write_text(text)
    code, _, err = run_cli(["train", str(tmp_path / "gray.yaml"), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "expects 1×16×16 images" in err and "3×16×16" in err


def test_log_softmax_head_trains_with_nll() -> None:
    from blockspec import load_spec
    from blockspec.train.optim import make_loss

    spec = load_spec(ROOT / "architectures/reference/dilation-transition-189k.yaml")
    assert isinstance(make_loss(spec), torch.nn.NLLLoss)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=3)
    out = tmp_path / "run"
    code, _, err = run_cli(
        ["train", str(spec), "--out", str(out), "--workers", "0", "--lr", "1e30"], capsys
    )
    assert code == 2 and "the training loss became" in err and "last.pt keeps" in err
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["epoch"] == 0 and all(torch.isfinite(t).all() for t in saved["model"].values() if t.is_floating_point())


def test_summary_memory_peak_covers_the_processes_before_a_resume(data_root: Path, tmp_path: Path) -> None:
    """An epoch recorded by an earlier process keeps its (higher) peak in the summary."""
    spec = parse_spec(tiny_spec_text(data_root), "tiny.yaml")
    info = pick_device("cpu")
    earlier = {"epoch": 1, "test_acc": 50.0, "seconds": 1.0, "peak_host_memory_mb": 10.0**7, "peak_gpu_memory_mb": None}
    now = {**earlier, "epoch": 2, "peak_host_memory_mb": 1.0}
    summary = run_summary(spec, [earlier, now], info, {})
    assert summary["peak_host_memory_mb"] == 10.0**7
    assert summary["peak_gpu_memory_mb"] is None
    assert 0 < run_summary(spec, [now], info, {})["peak_host_memory_mb"] < 10.0**7


def test_time_to_target_sums_the_epochs_up_to_the_first_hit() -> None:
    history = [{"epoch": e, "test_acc": a, "seconds": s} for e, a, s in ((1, 40.0, 1.5), (2, 86.0, 2.0), (3, 84.0, 4.0))]
    summary = summarize_history(history, 85.0)
    assert (summary["target_epoch"], summary["target_seconds"], summary["total_seconds"]) == (2, 3.5, 7.5)
    assert summarize_history(history, 90.0)["target_seconds"] is None


@pytest.mark.parametrize("accuracies", [(50.0, 60.0, 60.0, 55.0), (7.8, 7.8, 7.8), (10.0, 20.0, 30.0), (30.0, 20.0, 30.0)])
def test_best_pt_is_saved_at_the_epoch_the_summary_names(accuracies: tuple[float, ...]) -> None:
    """best.pt is rewritten whenever is_new_best says so: the last such epoch must be the one
    summary.json reports, ties included (the first of equal epochs)."""
    history = [{"epoch": e, "test_acc": a, "seconds": 1.0} for e, a in enumerate(accuracies, 1)]
    saved_at = [record["epoch"] for index, record in enumerate(history) if is_new_best(history[: index + 1])]
    assert saved_at[-1] == summarize_history(history, 100.0)["best_epoch"]


def test_learning_curves_are_redrawn_at_most_once_an_interval_and_always_at_the_end(tmp_path: Path) -> None:
    from blockspec.train.plots import CurvesPicture

    def record(epoch: int) -> dict[str, float]:
        return {"epoch": epoch, "train_loss": 2.0 / epoch, "test_loss": 2.1 / epoch,
                "train_acc": 30.0 + 10 * epoch, "test_acc": 28.0 + 10 * epoch}

    target = tmp_path / "curves.png"
    curves = CurvesPicture(target, interval=3600.0)
    history = [record(1)]
    curves.update(history)  # the first epoch is always drawn
    first = target.read_bytes()
    history.append(record(2))
    curves.update(history)  # within the interval: not redrawn
    assert target.read_bytes() == first
    curves.finish(history)
    second = target.read_bytes()
    assert second != first
    target.unlink()
    curves.finish(history)  # already shows both epochs
    assert not target.exists()
    every_epoch = CurvesPicture(target, interval=0.0)
    every_epoch.update(history)
    history.append(record(3))
    every_epoch.update(history)
    assert target.read_bytes() != second


@pytest.mark.parametrize("epochs", [1, 3, 40])
def test_learning_curves_mark_each_epoch_at_whole_epoch_ticks(epochs: int) -> None:
    """A one-epoch history (a smoke run, a run stopped after its first epoch) drew lines of
    one point, which show nothing, under ticks at 0.96 … 1.04."""
    from blockspec.train.plots import curves_figure

    history = [{"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.1 / e, "train_acc": 9.0 * e, "test_acc": 8.0 * e}
               for e in range(1, epochs + 1)]
    figure = curves_figure(history)
    for axis in figure.axes:
        assert all(line.get_marker() == "o" for line in axis.get_lines())
        low, high = axis.get_xlim()
        ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert ticks and all(float(tick).is_integer() for tick in ticks) and 1 <= min(ticks) and max(ticks) <= epochs


@pytest.mark.parametrize("size", [10, 45, 100])
def test_confusion_picture_stays_readable_at_any_class_count(size: int) -> None:
    """100 classes drew a 6,000 × 5,500 pixel picture with no class named: the figure is capped,
    every class is named up to 60 (every tenth index beyond), counts are written up to 20, and
    the colour is each true class's fraction, so a class with few images reads like the rest."""
    from blockspec.train.plots import confusion_figure

    classes = tuple(f"class{i}" for i in range(size))
    labels = np.repeat(np.arange(size), 3)
    labels = np.concatenate([labels, np.zeros(30, dtype=np.int64)])  # class 0 has eleven times the images
    predictions = labels.copy()
    figure = confusion_figure(labels, predictions, classes)
    axis = figure.axes[0]
    width, height = figure.get_size_inches() * 100
    assert max(width, height) <= 1700
    names = [tick.get_text() for tick in axis.get_yticklabels()]
    assert names == (list(classes) if size <= 60 else [str(i) for i in range(0, size, 10)])
    assert len(axis.texts) == (size * size if size <= 20 else 0)
    diagonal = axis.images[0].get_array()
    assert np.allclose(np.diag(diagonal), 1.0)  # every class right every time, whatever its count


def test_importing_training_leaves_matplotlib_backend_alone() -> None:
    """Training's plots chose the Agg backend at import, which broke a notebook's inline plots."""
    code = ("import matplotlib; matplotlib.use('svg'); import blockspec.train.run, blockspec.data.preview; "
            "print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "svg"


@pytest.mark.parametrize(("done", "total", "epochs"), [(60, 391, 40), (1000, 1563, 100), (5, 5, 1)])
def test_progress_bar_keeps_its_rate_within_80_columns(done: int, total: int, epochs: int) -> None:
    """tqdm's default layout with four postfix fields ran past 80 columns and the rate was cut off."""
    from tqdm import tqdm

    from blockspec.progress import BAR_FORMAT
    from blockspec.train.loop import bar_text

    line = tqdm.format_meter(done, total, 3725.0, ncols=80, prefix=f"epoch {epochs}/{epochs}",
                             postfix=bar_text(12.3456, 100.0, 123456.0), bar_format=BAR_FORMAT)
    assert len(line) <= 80 and line.endswith("loss 12.346 acc 100.0% 123,456 img/s")
    assert "|" in line and f"{done}/{total}" in line


def test_misclassified_picture_shows_each_wrong_image(tmp_path: Path) -> None:
    """Solid-colour test images: the picture holds the colour of every wrong prediction
    among the first 25 and none of the right ones."""
    import matplotlib.image

    from blockspec.train.plots import plot_misclassified

    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], dtype=np.uint8)
    images = np.broadcast_to(colours[:, None, None, :], (4, 16, 16, 3)).copy()
    labels, predictions = np.array([0, 1, 2, 3]), np.array([1, 1, 0, 3])  # images 0 and 2 are wrong
    target = tmp_path / "misclassified.png"
    plot_misclassified(images, labels, predictions, ("a", "b", "c", "d"), target)
    pixels = (matplotlib.image.imread(target)[..., :3] * 255).round().astype(int).reshape(-1, 3)
    shown = {tuple(c) for c in colours if (np.abs(pixels - c).max(axis=1) <= 2).sum() > 100}
    assert shown == {(200, 30, 30), (30, 30, 200)}


def test_a_run_directory_held_by_a_live_run_is_refused(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two runs into one --out would interleave their checkpoints and records; the lock is
    the operating system's, taken here as another process would take it."""
    from blockspec.train.rundir import hold_run_dir

    spec = write_spec(tmp_path, data_root, epochs=1)
    out = tmp_path / "run"
    out.mkdir()
    with hold_run_dir(out):
        code, _, err = run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    assert code == 2 and f"--out = '{out}': another blockspec run is writing to this run directory" in err
    code, _, err = run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)
    assert code == 0, err  # the lock a finished (or killed) run leaves behind holds nothing
    with hold_run_dir(out):  # a resume into a live run names the flag it was given
        code, _, err = run_cli(["train", "--resume", str(out), "--workers", "0"], capsys)
    assert code == 2 and f"--resume = '{out}': another blockspec run is writing to this run directory" in err


def test_a_folder_in_the_way_of_a_new_run_suggests_resuming_only_a_run(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.png").write_bytes(b"")
    code, _, err = run_cli(["train", str(spec), "--out", str(other)], capsys)
    assert code == 2 and f"--out = '{other}': the folder already exists and is not empty; choose another --out" in err
    run = tmp_path / "run"
    assert run_cli(["train", str(spec), "--out", str(run), "--workers", "0"], capsys)[0] == 0
    code, _, err = run_cli(["train", str(spec), "--out", str(run)], capsys)
    assert code == 2 and f"not empty; continue it with `--resume {run}` or choose another --out" in err


def test_resuming_a_run_that_ended_restores_its_records(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed (or out of disk) between the last epoch's last.pt and its records: the resume
    the error message suggests has no epoch to train but must still write them, and clears
    the half-written files the kill left."""
    spec, out = finished_run(tmp_path, data_root, capsys, epochs=2)
    complete = metrics(out)
    (out / "metrics.json").write_text(json.dumps(complete[:1]))
    (out / "metrics.csv").write_text((out / "metrics.csv").read_text().splitlines(keepends=True)[0])
    (out / "spec.yaml").unlink()
    (out / ".curves.png.4242-0badf00d.tmp").write_bytes(b"half a picture")  # the kill's leftover
    code, _, err = run_cli(["train", "--resume", str(out)], capsys)
    assert code == 0, err
    assert metrics(out) == complete and len((out / "metrics.csv").read_text().splitlines()) == 3
    assert not list(out.glob(".*.tmp"))
    assert parse_spec((out / "spec.yaml").read_text()) == parse_spec(spec.read_text())


def test_a_run_stopped_at_its_target_stays_stopped_when_resumed(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=3)
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["train", str(spec), "--out", str(out), "--workers", "0", "--target", "1", "--stop-at-target"], capsys)
    assert code == 0 and "stopping: the target 1% is reached" in stdout and len(metrics(out)) == 1
    code, _, err = run_cli(["train", "--resume", str(out)], capsys)
    assert code == 0, err
    assert len(metrics(out)) == 1 and torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


def test_a_checkpoint_moved_into_another_run_is_not_resumed_there(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, data_root, epochs=1)
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        assert run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)[0] == 0
    moved = second / "from-first.pt"
    moved.write_bytes((first / "last.pt").read_bytes())
    before = (second / "summary.json").read_text()
    code, _, err = run_cli(["train", "--resume", str(moved)], capsys)
    assert code == 2 and "a run continues from its directory or that directory's last.pt" in err
    assert (second / "summary.json").read_text() == before


def test_a_resumed_run_reads_its_data_where_it_has_moved(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose data.root is relative, resumed from another folder after its data moved:
    neither the root nor the folder the run recorded leads to the data, and --data-root says
    where it is now (what it is, the run checks)."""
    import shutil

    shutil.copytree(data_root, tmp_path / "start" / "data")
    spec = tmp_path / "relative.yaml"
    spec.write_text(tiny_spec_text(Path("data"), epochs=1))
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "start")
    assert run_cli(["train", str(spec), "--out", str(out), "--workers", "0"], capsys)[0] == 0
    trained = metrics(out)
    moved = (tmp_path / "start" / "data").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "--resume", str(out)], capsys)
    assert code == 2 and "data.root = 'data'" in err
    code, _, err = run_cli(["train", "--resume", str(out), "--data-root", str(moved)], capsys)
    assert code == 0, err
    assert metrics(out) == trained


def test_start_from_copies_every_tensor_that_fits_and_leaves_the_rest_as_built() -> None:
    from blockspec.build import build_model
    from blockspec.train.init_weights import StartWeights, start_from

    text = "name: t\ninput: {size: 16}\nclasses: CLASSES\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: CLASSES}]\n"
    torch.manual_seed(0)
    source = build_model(parse_spec(text.replace("CLASSES", "4")))
    torch.manual_seed(1)
    target = build_model(parse_spec(text.replace("CLASSES", "3")))
    head_before = target.state_dict()["output.1.linear.weight"].clone()
    report = start_from(target, StartWeights(source.state_dict(), "a.pt"))
    assert report == ("started from a.pt: 7 of 9 tensors; left as built: output.1.linear.weight (3×8 here, 4×8 there), "
                      "output.1.linear.bias (3 here, 4 there)")
    mine, theirs = target.state_dict(), source.state_dict()
    assert all(torch.equal(mine[name], theirs[name]) for name in mine if not name.startswith("output.1"))
    assert torch.equal(mine["output.1.linear.weight"], head_before)


def test_init_from_fine_tunes_a_run_for_other_classes_and_is_kept_on_resume(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    spec, first = finished_run(tmp_path, data_root, capsys, "first")
    three = tmp_path / "three"
    shutil.copytree(data_root, three, ignore=shutil.ignore_patterns(".blockspec-cache", "class3"))
    text = spec.read_text().replace("classes: 4", "classes: 3").replace("fc: {out: 4}", "fc: {out: 3}")
    (tmp_path / "three.yaml").write_text(text.replace(f"root: {data_root}", f"root: {three}"))
    out = tmp_path / "tuned"
    code, stdout, err = run_cli(["train", str(tmp_path / "three.yaml"), "--out", str(out), "--workers", "0",
                                 "--init-from", str(first / "best.pt")], capsys)
    assert code == 0, err
    assert f"started from {first / 'best.pt'}: 14 of 16 tensors; left as built: output.1.linear.weight (3×16 here, 4×16 there)" in stdout
    assert json.loads((out / "summary.json").read_text())["run_options"]["init_from"] == str(first / "best.pt")
    code, stdout, err = run_cli(["train", "--resume", str(out), "--init-from", str(first / "best.pt")], capsys)
    assert code == 0 and "started from" not in stdout, err  # the run's weights are its own by now
    code, _, err = run_cli(["train", "--resume", str(out), "--init-from", str(first / "last.pt")], capsys)
    assert code == 2 and "--init-from = " in err and "the run being resumed started with" in err


def test_init_from_takes_a_plain_state_dict_and_refuses_what_fits_nothing(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from blockspec.build import build_model

    spec = write_spec(tmp_path, data_root, epochs=1)
    torch.save(build_model(parse_spec(spec.read_text())).state_dict(), tmp_path / "state.pt")
    code, stdout, err = run_cli(["train", str(spec), "--out", str(tmp_path / "a"), "--workers", "0",
                                 "--init-from", str(tmp_path / "state.pt")], capsys)
    assert code == 0 and f"started from {tmp_path / 'state.pt'}: 16 of 16 tensors\n" in stdout, err
    torch.save({"a.weight": torch.zeros(3)}, tmp_path / "other.pt")
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "b"), "--init-from", str(tmp_path / "other.pt")],
                           capsys)
    assert code == 2 and "none of its 1 tensors has a name and shape of this network's (its first: a.weight 3;" in err
    code, _, err = run_cli(["train", str(spec), "--out", str(tmp_path / "c"), "--init-from", str(spec)], capsys)
    assert code == 2 and "cannot read it as a checkpoint: not a file torch saved" in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()  # refused before the run directory


def test_init_from_keeps_the_whitened_first_layer_the_spec_asks_for(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint's first layer (whitened on other data, or trained) replaced the frozen
    whitening of this run's data, while the header still said the layer was a whitening."""
    spec, first = finished_run(tmp_path, data_root, capsys, "first")
    out = tmp_path / "whitened"
    code, stdout, err = run_cli(["train", str(spec), "--out", str(out), "--workers", "0", "--init-from", str(first),
                                 "--set", "train.whiten_stem=frozen"], capsys)
    assert code == 0, err
    assert ("15 of 16 tensors; left as built: C1.0.conv.weight (the patch whitening of this run's data, "
            "train.whiten_stem: frozen)") in stdout
    theirs = torch.load(first / "last.pt", weights_only=True)["model"]["C1.0.conv.weight"]
    mine = torch.load(out / "last.pt", weights_only=True)["model"]["C1.0.conv.weight"]
    assert not torch.equal(mine, theirs)


def test_training_leaves_no_progress_bar_thread_behind(tmp_path: Path, data_root: Path) -> None:
    """tqdm starts a monitor thread with any bar, disabled ones too, and never stops it: a
    thread alive through interpreter shutdown, a candidate for a DDP worker's rare abort at exit."""
    spec = write_spec(tmp_path, data_root, epochs=1)
    code = ("import threading\nfrom blockspec.cli import main\n"
            f"try:\n    main(['train', {str(spec)!r}, '--out', {str(tmp_path / 'run')!r}, '--workers', '0'])\n"
            "except SystemExit as stop:\n    assert not stop.code\n"
            "print(sorted(thread.name for thread in threading.enumerate()))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "['MainThread']", result.stdout


def test_resuming_a_run_stopped_before_its_first_save_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C while the data loads leaves the run directory holding its lock alone."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".blockspec.lock").touch()
    code, _, err = run_cli(["train", "--resume", str(run_dir)], capsys)
    assert code == 2 and "a run directory without a checkpoint: its run stopped before saving one" in err


def test_init_from_a_run_directory_that_never_saved_says_so(tmp_path: Path, data_root: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "stopped"
    run_dir.mkdir()
    (run_dir / ".blockspec.lock").touch()
    code, _, err = run_cli(["train", str(write_spec(tmp_path, data_root)), "--init-from", str(run_dir)], capsys)
    assert code == 2 and f"--init-from = '{run_dir}': a run directory without a checkpoint" in err


def _long_run_with_workers(tmp_path: Path, data_root: Path, run_dir: Path) -> subprocess.Popen:
    """`blockspec train` of 50 short epochs on the albumentations path with 2 DataLoader
    workers, in a process group of its own."""
    spec = write_spec(tmp_path, data_root, epochs=50, extra="  batch_size: 4")
    spec.write_text(spec.read_text().replace("  batch_size: 16\n", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "blockspec", "train", str(spec), "--out", str(run_dir), "--workers", "2",
         "--loader", "albumentations"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_the_workers_end_with_the_last_epoch(tmp_path: Path, data_root: Path) -> None:
    """They persist from epoch to epoch; left alive past the last, they held memory through the
    final records, and one ended there was said as an internal error, "a bug in blockspec"."""
    import multiprocessing

    from blockspec.load import load_spec
    from blockspec.train.options import RunOptions
    from blockspec.train.run import train

    before = {process.pid for process in multiprocessing.active_children()}
    at_the_end = []

    def log(line: str) -> None:  # its last line comes after the final records and plots
        if line.startswith("best test accuracy"):
            at_the_end.append({process.pid for process in multiprocessing.active_children()} - before)

    options = RunOptions(out=tmp_path / "run", workers=2, loader="albumentations")
    train(load_spec(write_spec(tmp_path, data_root, epochs=2)), options, log=log)
    assert at_the_end == [set()]


def test_sigterm_to_the_whole_process_group_stops_the_run_cleanly(tmp_path: Path, data_root: Path) -> None:
    """systemd, SLURM's scancel and `kill -- -PGID` signal the DataLoader workers too: a worker
    ended mid-batch made the run an internal error (exit 70)."""
    run_dir = tmp_path / "run"
    process = _long_run_with_workers(tmp_path, data_root, run_dir)
    wait_for_epochs(run_dir, 2, process)  # the workers live from epoch to epoch: alive now
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "stopped by SIGTERM; " in stderr and "internal error" not in stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the workers through Linux's /proc")
@pytest.mark.parametrize("killed", [1, None], ids=["one", "all"])
def test_a_dataloader_worker_killed_is_said_as_the_memory_and_the_epoch_kept_not_a_bug(
    tmp_path: Path, data_root: Path, killed: int | None
) -> None:
    """The system's out-of-memory killer ending a DataLoader worker was reported as an internal
    error, "a bug in blockspec" (exit 70); so was the end of a second one, which torch reported
    in turn while the first was said."""
    run_dir = tmp_path / "run"
    process = _long_run_with_workers(tmp_path, data_root, run_dir)
    try:
        wait_for_epochs(run_dir, 2, process)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:  # again if one ended as its epoch did
            for worker in _children(process.pid)[:killed]:
                os.kill(worker, signal.SIGKILL)
            time.sleep(0.2)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    kept = len(metrics(run_dir))
    assert process.returncode == 2, stderr
    assert re.search(rf"^error: --workers = 2: a DataLoader worker process ended in epoch {kept + 1} \(DataLoader worker "
                     rf"\(pid.*\d+\)[^;]*; if the system ended it, the memory ran out: free some, then `blockspec train "
                     rf"--resume {re.escape(str(run_dir))}` \({re.escape(str(run_dir / 'last.pt'))} holds epoch {kept}; a new "
                     rf"run with fewer --workers needs less\)$", stderr, re.MULTILINE), stderr
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == kept


@pytest.mark.parametrize("workers", [0, 1])
def test_a_connection_error_of_the_data_sets_own_is_not_taken_for_a_worker_ending(workers: int) -> None:
    """A worker ended by the system can reset the connection its batch came through before
    torch sees it has ended, and that ConnectionResetError is said as the worker's end
    (`_long_run_with_workers` with every worker killed, under load); one the data set itself
    raises (say, reading over a network) stays its own error."""
    from torch.utils.data import DataLoader

    from blockspec.data.loader import is_worker_death

    class Remote(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> int:
            raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(ConnectionResetError) as raised:
        list(DataLoader(Remote(), num_workers=workers))
    assert not is_worker_death(raised.value)


def test_a_worker_out_of_shared_memory_is_told_to_raise_that_limit_not_to_free_memory() -> None:
    """torch's SIGBUS message: freeing memory and resuming (with the run's --workers) fails again."""
    from blockspec.train.rundir import worker_death_error

    said = ("DataLoader worker (pid 4242) is killed by signal: Bus error. It is possible that dataloader's workers are "
            "out of shared memory. Please try to raise your shared memory limit.")
    error = worker_death_error(RuntimeError(said), 3, Path("run"), 2, 2, "torchrun --nproc-per-node 2 -m blockspec")
    assert str(error) == (
        "--workers = 2: a DataLoader worker process ended in epoch 3 (DataLoader worker (pid 4242) is killed by signal: "
        "Bus error); the workers ran out of shared memory (/dev/shm, 64 MB in a container started without a larger "
        "--shm-size): raise its limit, then `torchrun --nproc-per-node 2 -m blockspec train --resume run` (run/last.pt "
        "holds epoch 2; a new run with --workers 0 needs none)")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += map(int, (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that ended
            pass
    return found
