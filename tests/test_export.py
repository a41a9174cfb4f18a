"""Exports reproduce the torch model's outputs; bad checkpoints get a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from blockspec import build_model, load_spec, parse_spec
from blockspec.train.checkpoint import save_atomic
from tests.cli_helpers import run_cli
from tests.synthetic import write_colour_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    spec = load_spec(ROOT / "architectures/reference/fourblocks-128k.yaml")
    torch.manual_seed(0)
    target = tmp_path / "best.pt"
    recorded = {"classes": [f"c{index}" for index in range(10)], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), **recorded, "epoch": 1}, target)
    return target



def test_an_out_that_cannot_be_written_is_refused_before_exporting(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    for out, message in [(tmp_path, "is a folder; give the file to write"),
                         (tmp_path / "a-file" / "m.pt", f"{tmp_path / 'a-file'} is a file, not a folder")]:
        code, _, err = run_cli(["export", "--checkpoint", str(checkpoint), "--out", str(out)], capsys)
        assert (code, err) == (2, f"error: --out = '{out}': {message}\n")
    code, _, err = run_cli(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "new" / "m.pt")], capsys)
    assert code == 0 and (tmp_path / "new" / "m.pt").is_file(), err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a folder no file can be made in: Linux's /proc")
@pytest.mark.parametrize("command", ["export", "preview-augment"])
def test_an_out_the_system_refuses_is_the_flags_problem(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    source = ["--checkpoint", str(checkpoint)] if command == "export" else [
        str(ROOT / "architectures/flagship.yaml"), "--dataset", "imagefolder", "--data-root", str(write_colour_folder(tmp_path))]
    code, _, err = run_cli([command, *source, "--out", "/proc/blockspec-out.png"], capsys)
    assert (code, err) == (2, "error: --out = '/proc/blockspec-out.png': cannot write there (No such file or directory)\n")


def test_a_checkpoint_from_before_the_recorded_statistics_says_what_its_file_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = parse_spec("name: o\nblocks:\n  C1: [conv: {out: 4}]\n  output: [gap: {}, fc: {out: 10}]\n")
    old = tmp_path / "old.pt"
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "epoch": 1}, old)
    code, stdout, err = run_cli(["export", "--checkpoint", str(old), "--out", str(tmp_path / "o.pt")], capsys)
    assert code == 0, err
    assert ("input: float32 batches N×3×32×32 RGB, normalised as the training data set was (this checkpoint predates "
            "recorded statistics); the file records its input (extra file blockspec.json)") in stdout


def test_a_refused_export_leaves_no_folders_behind(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_cli(["export", "--checkpoint", str(checkpoint), "--format", "tflite", "--out", str(tmp_path / "new" / "m")], capsys)
    assert code == 2 and not (tmp_path / "new").exists()


def test_the_exported_file_records_its_input_classes_and_normalisation(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.pt"
    code, stdout, err = run_cli(["export", "--checkpoint", str(checkpoint), "--out", str(out)], capsys)
    assert code == 0, err
    assert ("input: float32 batches N×3×32×32 RGB, each channel (pixel / 255 − mean) / std with mean (0.5000, 0.4000, "
            "0.3000) and std (0.2000, 0.2500, 0.3000), as in training; the file records them (extra file blockspec.json)") in stdout
    extra = {"blockspec.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["blockspec.json"]) == {
        "name": "fourblocks-128k", "input": {"channels": 3, "height": 32, "width": 32}, "channel_order": "RGB",
        "classes": [f"c{index}" for index in range(10)], "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3],
        "normalisation": "each channel (pixel / 255 - mean) / std", "weights": "trained", "epoch": 1,
        "test_time_views": {"flip": False, "shift": 0},
    }


def test_the_exported_file_says_which_weights_and_views_the_runs_accuracy_had(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployer could not tell that the file holds the weight average, of which epoch, nor
    which test-time views `eval` averaged (the note named them, not the shift)."""
    spec = parse_spec("name: t\ninput: {channels: 1, size: 16}\nblocks:\n  C1: [conv: {out: 4}]\n  output: [gap: {}, fc: {out: 10}]\n"
                      "train: {ema: 0.99, tta_flip: true, tta_shift: 2}\n")
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "epoch": 7}, tmp_path / "best.pt")
    code, stdout, err = run_cli(["export", "--checkpoint", str(tmp_path / "best.pt"), "--format", "pt2", "--out",
                                 str(tmp_path / "t.pt2")], capsys)
    assert code == 0, err
    extra = {"blockspec.json": ""}
    torch.export.load(str(tmp_path / "t.pt2"), extra_files=extra)
    metadata = json.loads(extra["blockspec.json"])
    assert (metadata["channel_order"], metadata["weights"], metadata["epoch"]) == ("gray", "EMA average (decay 0.99)", 7)
    assert metadata["test_time_views"] == {"flip": True, "shift": 2} and "(the file records them: test_time_views)" in stdout


def test_an_out_named_for_another_format_is_refused(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A pt2 program was written as `y.onnx` without a word."""
    code, _, err = run_cli(["export", "--checkpoint", str(checkpoint), "--format", "pt2", "--out", str(tmp_path / "y.onnx")],
                           capsys)
    assert code == 2 and "--out = " in err and ".onnx names onnx files, and --format is pt2 (write y.pt2)" in err
    assert not (tmp_path / "y.onnx").exists()
    code, _, err = run_cli(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.ts")], capsys)
    assert code == 0, err  # TorchScript's other usual names stay free


def test_a_checkpoint_whose_own_spec_no_longer_loads_is_exported_with_a_spec_given(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Giving SPEC is how such a checkpoint is exported; reading its own spec for the file's
    metadata refused it."""
    payload = torch.load(checkpoint, weights_only=True)
    payload["spec"] = payload["spec"].replace("train:\n", "train:\n  renamed_since: 1\n", 1)
    old = tmp_path / "old.pt"
    save_atomic(payload, old)
    given = tmp_path / "given.yaml"  # the same input written otherwise: no note that it differs
    given.write_text((ROOT / "architectures/reference/fourblocks-128k.yaml").read_text().replace("size: 32", "size: [32, 32]"))
    for source in (old, checkpoint):
        code, stdout, err = run_cli(["export", str(given), "--checkpoint", str(source), "--out", str(tmp_path / "o.pt")],
                                    capsys)
        assert code == 0 and "note: SPEC's input" not in stdout, err + stdout


def test_a_spec_of_another_input_size_is_said_to_differ_from_the_trained_one(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text((ROOT / "architectures/reference/fourblocks-128k.yaml").read_text().replace("size: 32", "size: 48"))
    code, stdout, err = run_cli(["export", str(bigger), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "b.pt")],
                                capsys)
    assert code == 0, err
    assert ("note: SPEC's input (3×48×48) is not the one the run trained and measured its accuracy on (3×32×32); the "
            "file takes SPEC's") in stdout


def test_export_says_it_leaves_out_the_test_time_views(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's and `eval`'s accuracy average each image with its mirror; the file does not."""
    spec = parse_spec("name: t\nblocks:\n  C1: [conv: {out: 4}]\n  output: [gap: {}, fc: {out: 10}]\ntrain: {tta_flip: true}\n")
    target = tmp_path / "best.pt"
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "epoch": 1}, target)
    code, stdout, err = run_cli(["export", "--checkpoint", str(target), "--out", str(tmp_path / "t.ts")], capsys)
    assert code == 0, err
    assert "note: the exported file is the network alone, without the test-time views (tta_flip)" in stdout


def test_the_cpu_kernel_workarounds_stay_out_of_the_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A layer norm on the image and a strided 1×1 convolution train through other kernels on
    a CPU (tests/test_cpu_kernel_faults.py); traced for export, in evaluation, they are the
    plain layers, so the trace is torch's own and passes its checks."""
    spec = parse_spec("name: k\nblocks:\n  C1: [norm: {type: layer}, strided: {out: 6, k: 1}]\n  output: [gap: {}, fc: {out: 10}]\n")
    target = tmp_path / "best.pt"
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "epoch": 1}, target)
    code, stdout, err = run_cli(["export", "--checkpoint", str(target), "--out", str(tmp_path / "k.ts")], capsys)
    assert code == 0 and "max |exported − torch| = 0.00e+00" in stdout, err


def test_a_checkpoint_with_nan_weights_is_not_exported_as_a_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """NaN outputs differ from torch's by NaN, which no tolerance comparison refuses."""
    spec = parse_spec("name: n\nblocks:\n  C1: [conv: {out: 4}]\n  output: [gap: {}, fc: {out: 10}]\n")
    state = build_model(spec).state_dict()
    state["C1.0.conv.weight"][0, 0, 0, 0] = float("nan")
    target = tmp_path / "best.pt"
    save_atomic({"model": state, "spec": spec.to_yaml(), "epoch": 1}, target)
    code, _, err = run_cli(["export", "--checkpoint", str(target), "--out", str(tmp_path / "n.ts")], capsys)
    assert code == 2 and "the model's outputs are not finite" in err


def test_torchscript_export_matches(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.ts"
    code, stdout, _ = run_cli(["export", "--checkpoint", str(checkpoint), "--format", "torchscript", "--out", str(out)], capsys)
    assert code == 0 and "max |exported − torch|" in stdout
    spec = load_spec(ROOT / "architectures/reference/fourblocks-128k.yaml")
    model = build_model(spec).eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(torch.jit.load(str(out))(x), model(x))


def test_pt2_export_matches_at_any_batch_and_records_its_metadata(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.export's program, TorchScript's successor (deprecated in torch 2.13)."""
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(["export", "--checkpoint", str(checkpoint), "--format", "pt2"], capsys)
    assert code == 0, err
    assert "wrote model.pt2 (pt2)" in stdout and "the file records them (extra file blockspec.json)" in stdout
    extra = {"blockspec.json": ""}
    program = torch.export.load(str(tmp_path / "model.pt2"), extra_files=extra)
    assert json.loads(extra["blockspec.json"])["classes"] == [f"c{index}" for index in range(10)]
    spec = load_spec(ROOT / "architectures/reference/fourblocks-128k.yaml")
    model = build_model(spec).eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    for batch in (1, 7):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x))


def test_exporting_from_python_leaves_the_model_in_its_mode(checkpoint: Path) -> None:
    from blockspec.export import export_model

    spec = load_spec(ROOT / "architectures/reference/fourblocks-128k.yaml")
    model = build_model(spec).train()
    export_model(model, spec, "torchscript", {})
    assert model.training


def test_onnx_export_matches_in_onnxruntime(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    code, _, _ = run_cli(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out)], capsys)
    assert code == 0
    spec = load_spec(ROOT / "architectures/reference/fourblocks-128k.yaml")
    model = build_model(spec).eval()
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    x = torch.randn(5, 3, 32, 32)
    (scores,) = onnxruntime.InferenceSession(str(out)).run(None, {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(scores), model(x).detach(), rtol=1e-4, atol=1e-4)
    properties = {prop.key: prop.value for prop in onnx.load(str(out)).metadata_props}
    assert json.loads(properties["blockspec"])["mean"] == [0.5, 0.4, 0.3]


def test_onnx_without_its_packages_names_them_and_how_to_install(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said `pip install 'blockspec[onnx]'`, which looks for blockspec on PyPI."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("the ONNX packages are installed")
    code, _, err = run_cli(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and f"pip install {' '.join(missing)} (or, in blockspec's checkout, pip install -e \".[onnx]\")" in err


def test_onnx_export_is_named_for_its_format_by_default(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run_cli(["export", "--checkpoint", str(checkpoint), "--format", "onnx"], capsys)
    assert code == 0 and "wrote model.onnx (onnx)" in stdout and not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize(
    ("content", "why"),
    [(b"not a checkpoint", "not a file torch saved"), (b"", "not a file torch saved"),
     ("first half", "the file is cut short or damaged"), ("first half, legacy", "the file is cut short or damaged")],
)
def test_corrupt_checkpoint_is_refused(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | str, why: str
) -> None:
    bad = tmp_path / "bad.pt"
    if content == "first half, legacy":  # torch's format before 1.6, a pickle
        torch.save(torch.load(checkpoint, weights_only=True), bad, _use_new_zipfile_serialization=False)
    whole = bad.read_bytes() if content == "first half, legacy" else checkpoint.read_bytes()
    bad.write_bytes(whole[: len(whole) // 2] if isinstance(content, str) else content)
    code, _, err = run_cli(["export", "--checkpoint", str(bad)], capsys)
    assert code == 2 and f"cannot read it as a checkpoint: {why}" in err and "Traceback" not in err


class _Foreign:
    pass


def test_a_file_holding_other_python_objects_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": _Foreign()}, pickled)
    code, _, err = run_cli(["eval", "--checkpoint", str(pickled)], capsys)
    assert code == 2 and "cannot read it as a checkpoint: it holds Python objects besides tensors and numbers" in err


def test_foreign_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    code, _, err = run_cli(["eval", "--checkpoint", str(foreign)], capsys)
    assert code == 2 and "not a blockspec checkpoint" in err


def test_weights_of_another_spec_are_refused(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = ROOT / "architectures/flagship.yaml"
    code, _, err = run_cli(["export", str(other), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.pt")], capsys)
    assert code == 2 and f"SPEC = '{other}': builds other weights than {checkpoint} holds" in err
    assert "Missing key(s) in state_dict" in err or "size mismatch" in err  # torch's own line, not its header


def test_a_spec_or_edit_that_builds_other_weights_is_blamed_not_the_checkpoint(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint was named for a SPEC file or `--set` edit that changed the network."""
    text = (ROOT / "architectures/reference/fourblocks-128k.yaml").read_text()
    wider = tmp_path / "wider.yaml"
    wider.write_text(text.replace("    - conv: {out: 8}\n", "    - conv: {out: 12}\n", 1))
    code, _, err = run_cli(["export", str(wider), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.pt")], capsys)
    assert code == 2 and err.startswith(f"error: SPEC = '{wider}': builds other weights than {checkpoint} holds: "), err
    code, _, err = run_cli(["eval", "--checkpoint", str(checkpoint), "--set", "blocks.C1[0].conv.out=12"], capsys)
    assert code == 2 and err.startswith(f"error: --set = 'blocks.C1[0].conv.out=12': builds other weights than {checkpoint}"), err
