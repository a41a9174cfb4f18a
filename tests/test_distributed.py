"""`torchrun --nproc_per_node 2 -m blockspec train …` on two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.synthetic import tiny_spec_text, write_colour_folder

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_train_one_run(tmp_path: Path) -> None:
    data = write_colour_folder(tmp_path / "data")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(data, epochs=3))
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "blockspec", "train", str(spec), "--device", "cpu", "--workers", "0", "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "× 2 processes (DDP)" in result.stdout and "96 train" in result.stdout
    assert result.stdout.count("epoch   3/3") == 1  # rank 1 stays silent
    history = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["test_acc"] >= 75
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 3
    assert not (tmp_path / "runs").exists()  # no second run directory from rank 1
