"""`train.whiten_stem`: the first convolution starts as a patch whitening of the training
images, checked against numpy's own eigen-decomposition and against a real training run."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional

from blockspec.build import build_model
from blockspec.data import load_dataset
from blockspec.data.loader import normalize_batch
from blockspec.load import parse_spec
from blockspec.spec import Spec
from blockspec.summary import summarize
from blockspec.train.whiten import apply_whitening, stem_conv, whitening_filters
from tests.cli_helpers import metrics, run_cli, start_blockspec, wait_for_epochs, without_timing
from tests.synthetic import tiny_spec_text, write_colour_folder

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def whitened_spec(first_layer: str = "conv: {out: 16}", mode: str = "frozen") -> Spec:
    return parse_spec(
        f"""
name: w
input: {{channels: 3, size: 16}}
classes: 4
blocks:
  C1: [{first_layer}, conv: {{out: 8}}]
  output: [gap: {{}}, fc: {{out: 4}}]
train: {{whiten_stem: {mode}}}
"""
    )


def smooth_images(count: int = 300, size: int = 16) -> np.ndarray:
    """Images whose neighbouring pixels and channels are correlated, as in photographs."""
    rng = np.random.default_rng(1)
    coarse = torch.from_numpy(rng.normal(size=(count, 3, size // 4, size // 4))).float()
    smooth = functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    mixed = smooth + 0.5 * smooth.mean(1, keepdim=True) + 0.1 * torch.randn(count, 3, size, size)
    pixels = (128 + 40 * mixed).clamp(0, 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def patch_matrix(images: np.ndarray) -> np.ndarray:
    """Every normalised 3×3 patch as a row, in the conv weight's (channel, row, column) order."""
    x = (images.astype(np.float64) / 255 - MEAN) / STD  # N, H, W, C
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # N, H-2, W-2, C, 3, 3
    return windows.reshape(-1, 27)


def test_filters_whiten_the_patches_they_were_computed_from() -> None:
    images = smooth_images()
    spec = whitened_spec()
    filters = whitening_filters(spec, images, MEAN, STD)
    assert filters.shape == (16, 3, 3, 3)
    x = normalize_batch(torch.from_numpy(images).permute(0, 3, 1, 2), MEAN, STD)
    outputs = functional.conv2d(x.double(), filters.double()).transpose(0, 1).reshape(16, -1)
    covariance = torch.cov(outputs[:8])
    assert torch.allclose(covariance, torch.eye(8, dtype=torch.float64), atol=0.02), covariance
    assert torch.equal(filters[8:], -filters[:8])  # ± pairs, so no sign is lost to the activation


def test_filters_follow_the_largest_variances_numpy_finds() -> None:
    images = smooth_images()
    filters = whitening_filters(whitened_spec(), images, MEAN, STD).double().reshape(16, 27)
    patches = patch_matrix(images)
    variances = np.linalg.eigvalsh(np.cov(patches, rowvar=False))[::-1]
    directions = filters[:8] / filters[:8].norm(dim=1, keepdim=True)
    captured = np.var(patches @ directions.numpy().T, axis=0)
    assert np.allclose(captured, variances[:8], rtol=1e-3), (captured, variances[:8])
    assert variances[0] > 20 * variances[7]  # the data is far from white, so the order matters


def test_odd_filter_count_keeps_the_extra_direction_positive() -> None:
    filters = whitening_filters(whitened_spec("conv: {out: 7}"), smooth_images(60), MEAN, STD)
    assert filters.shape == (7, 3, 3, 3)
    assert torch.equal(filters[4:], -filters[:3])


@pytest.mark.parametrize(
    ("first_layer", "says"),
    [
        ("dws: {out: 16}", "needs the first layer (blocks.C1[0]) to be a full convolution (conv, dilated or strided with groups 1), not dws"),
        ("conv: {out: 3, groups: 3}", "not conv with groups 3"),
        ("conv: {out: 60}", "has 60 filters but its 3×3 patches of 3 channels have 27 directions, enough for 54 (± pairs); lower its out or raise its k, or start it at random (whiten_stem: false)"),
        ("dilated: {out: 4, dilation: 8}", "sees 17×17 windows, larger than the 16×16 images"),
    ],
)
def test_a_first_layer_that_cannot_whiten_is_a_spec_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first_layer: str, says: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        f"name: w\ninput: {{channels: 3, size: 16}}\nclasses: 4\nblocks:\n  C1: [{first_layer}]\n"
        "  output: [gap: {}, fc: {out: 4}]\ntrain: {whiten_stem: init}\n"
    )
    code, _, err = run_cli(["check", str(path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{path}: train.whiten_stem = 'init': " in err and says in err


@pytest.mark.parametrize("mode", ["frozen", "init"])
def test_the_summary_counts_as_trainable_what_training_trains(mode: str) -> None:
    """And so does the built module, before training touches it (a script counting its
    trainable parameters got the frozen stem's too)."""
    spec = whitened_spec("conv: {out: 16, k: 5}", mode)
    model = build_model(spec)
    built = sum(p.numel() for p in model.parameters() if p.requires_grad)
    apply_whitening(model, spec, None)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert built == trained
    summary = summarize(spec)
    assert summary.trainable_params == summary.to_dict()["trainable_params"] == trained
    assert trained == summary.analysis.total_params - (16 * 3 * 25 if mode == "frozen" else 0)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_folder(tmp_path_factory.mktemp("colours"))


def train_whitened(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str], mode: str, epochs: int
) -> tuple[Path, Path]:
    """The tiny spec with `whiten_stem: MODE`, trained to the end: (spec file, run directory)."""
    spec, run = tmp_path / f"{mode}.yaml", tmp_path / mode
    text = tiny_spec_text(data_root, epochs).replace("  batch_size: 16\n", "  batch_size: 4\n")
    spec.write_text(text.replace("train:\n", f"train:\n  whiten_stem: {mode}\n"))
    code, stdout, err = run_cli(["train", str(spec), "--out", str(run), "--workers", "0"], capsys)
    assert code == 0, err
    assert f"first layer a patch whitening ({mode})" in stdout
    return spec, run


def trained_stem(run_dir: Path) -> torch.Tensor:
    spec = parse_spec((run_dir / "spec.yaml").read_text())
    model = build_model(spec)
    model.load_state_dict(torch.load(run_dir / "last.pt", weights_only=True)["model"])
    return stem_conv(model).weight.detach()


def expected_filters(run_dir: Path, data_root: Path) -> torch.Tensor:
    """The filters computed again, outside the run, from the same images and seed."""
    spec = parse_spec((run_dir / "spec.yaml").read_text())
    data = load_dataset("imagefolder", str(data_root))
    return whitening_filters(spec, data.train_images, data.mean, data.std)


def test_frozen_stem_keeps_its_filters_through_training_and_resume(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, straight = train_whitened(tmp_path, data_root, capsys, "frozen", epochs=3)
    filters = expected_filters(straight, data_root)
    assert torch.equal(trained_stem(straight), filters)
    assert metrics(straight)[-1]["test_acc"] > 50  # four colours: the layers after it learnt

    killed = tmp_path / "killed"
    process = start_blockspec(["train", str(spec), "--out", str(killed), "--workers", "0"])
    wait_for_epochs(killed, 1, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert 1 <= len(metrics(killed)) < 3
    code, _, err = run_cli(["train", "--resume", str(killed), "--workers", "0"], capsys)
    assert code == 0, err
    assert torch.equal(trained_stem(killed), filters)
    assert without_timing(metrics(killed)) == without_timing(metrics(straight))


def test_init_stem_starts_at_the_filters_and_then_trains(
    tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = train_whitened(tmp_path, data_root, capsys, "init", epochs=1)
    filters, trained = expected_filters(run, data_root), trained_stem(run)
    assert not torch.equal(trained, filters)
    assert (trained - filters).norm() < 0.2 * filters.norm()  # moved from there, not from a random start
