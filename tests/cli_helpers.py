"""Running the CLI the way a shell would, and reading what a run left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blockspec.cli import main
from blockspec.spec import Spec
from blockspec.train.options import RunOptions
from blockspec.train.run import TrainingInterrupted, train

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `blockspec ARGV`."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


TIMING = {"seconds", "images_per_second", "peak_host_memory_mb", "peak_gpu_memory_mb"}


def metrics(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "metrics.json").read_text())


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING} for record in history]


def wait_for_epochs(run_dir: Path, count: int, process: subprocess.Popen, limit: float = 120) -> None:
    """Block until the run in `run_dir` has recorded `count` epochs (the process must live)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if (run_dir / "metrics.json").exists() and len(metrics(run_dir)) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("training did not reach the epoch in time")


def start_blockspec(argv: list[str]) -> subprocess.Popen:
    """`blockspec ARGV` as a child that answers Ctrl-C even when this test runs as a shell's
    background job (those inherit SIGINT ignored, and Python then never raises
    KeyboardInterrupt)."""
    return subprocess.Popen(
        [sys.executable, "-m", "blockspec", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_default_sigint,
    )


def start_torchrun(spec_or_resume: list[str], cwd: Path, program: tuple[str, ...] = ("-m", "blockspec")) -> subprocess.Popen:
    """`torchrun --nproc_per_node 2 -m blockspec train …` on the CPU, two gloo processes, with
    no DataLoader workers unless `spec_or_resume` says --workers."""
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *program, "train", "--device", "cpu", "--workers", "0", *spec_or_resume],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def python_ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler in this process for the block: a test run as a shell's
    background job inherits SIGINT ignored, and the handling under test would not be there."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupted_run(spec: Spec | None, options: RunOptions, at: str, signum: int = signal.SIGINT) -> TrainingInterrupted:
    """Train, sending this process `signum` when the run logs a line starting with `at`; the run
    must end as TrainingInterrupted (a KeyboardInterrupt escaping it fails the test, not the session)."""
    def log(line: str) -> None:
        if line.startswith(at):
            signal.raise_signal(signum)

    with python_ctrl_c(), pytest.raises((TrainingInterrupted, KeyboardInterrupt)) as stop:
        train(spec, options, log=log)
    assert isinstance(stop.value, TrainingInterrupted), f"the signal escaped as {stop.value!r}"
    return stop.value
