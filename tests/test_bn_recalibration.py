"""benchmarks/bn_recalibration.py: the weights as trained score what the run recorded, and the
recomputed BatchNorm statistics are the training images' own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from blockspec.data import load_dataset, make_loaders
from blockspec.load import parse_spec
from blockspec.train.checkpoint import load_checkpoint, model_from_checkpoint
from blockspec.train.device import pick_device
from blockspec.train.loop import Batches
from blockspec.train.options import RunOptions
from blockspec.train.run import train
from tests.cli_helpers import ROOT, metrics
from tests.synthetic import tiny_spec_text, write_colour_folder

sys.path.insert(0, str(ROOT / "benchmarks"))
import bn_recalibration  # noqa: E402


def _trained_run(root: Path) -> Path:
    text = tiny_spec_text(write_colour_folder(root / "data"), epochs=2, extra="  ema: 0.9")
    train(
        parse_spec(text, "tiny.yaml"),
        RunOptions(out=root / "run", workers=0, device="cpu"),
        log=lambda _: None,
    )
    return root / "run"


def test_the_table_starts_with_the_recorded_accuracy(tmp_path: Path) -> None:
    run_dir = _trained_run(tmp_path)
    command = [
        sys.executable,
        "benchmarks/bn_recalibration.py",
        str(run_dir / "last.pt"),
        "--device",
        "cpu",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [
        line.split(" | ")
        for line in result.stdout.splitlines()
        if line.startswith("| ") and line[2].isalpha()
    ][1:]
    assert [row[0].removeprefix("| ") for row in rows] == [
        "as trained (averaged with the weights)",
        "recomputed, plain training images",
        "recomputed, through data.augment",
    ]
    assert float(rows[0][1]) == metrics(run_dir)[-1]["test_acc"]


def test_recomputed_statistics_are_the_training_images_own(tmp_path: Path) -> None:
    """The first BatchNorm's input does not depend on any BatchNorm, so its recomputed running
    mean must equal its input's mean over every training image."""
    run_dir = _trained_run(tmp_path)
    payload = load_checkpoint(run_dir / "last.pt")
    spec = parse_spec(payload["spec"], "inside")
    model = model_from_checkpoint(spec, payload, run_dir / "last.pt")
    data = load_dataset(spec.data.dataset, spec.data.root)
    batches = Batches(pick_device("cpu", amp=False, channels_last=False), data.mean, data.std)
    loader, _ = make_loaders(data, None, 16, 0, 0, False)
    first_norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inputs: list[torch.Tensor] = []
    hook = first_norm.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach()))
    averaged_mean = first_norm.running_mean.clone()

    bn_recalibration.recompute_batchnorm(model, loader, batches)

    hook.remove()
    expected = torch.cat(inputs).mean(dim=(0, 2, 3))
    assert torch.cat(inputs).shape[0] == len(data.train_labels)
    torch.testing.assert_close(first_norm.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(first_norm.running_mean, averaged_mean)
