"""Export a trained spec to torch.export's program (.pt2), TorchScript or ONNX, and prove
the export computes the same.

The numeric check loads the exported file back (torch.export.load, torch.jit.load, or
onnxruntime) and compares its outputs on random inputs with the eager model's. The file
carries what a user of it needs besides the weights (the input size, the classes in score
order, the normalisation the training images had) as JSON: the extra file `blockspec.json`
of a .pt2 or TorchScript file, ONNX's metadata property `blockspec`. torch 2.13 deprecates
TorchScript in favour of torch.export; every format takes any batch size.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from blockspec.errors import fail, is_out_of_memory
from blockspec.spec import Spec
from blockspec.train.checkpoint import TrainedOn

FORMATS = ("torchscript", "onnx", "pt2")
SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx", "pt2": ".pt2"}
Result = TypeVar("Result")
METADATA_KEY = "blockspec"  # ONNX's metadata property; the extra file of .pt2 and TorchScript adds ".json"


def export_model(
    model: torch.nn.Module, spec: Spec, fmt: str, metadata: dict[str, Any], tolerance: float = 1e-4
) -> tuple[bytes, float]:
    """The exported file of `model` (built from `spec`), `metadata` inside it, and the largest
    absolute difference between that file's outputs and torch's. `model` is left in the mode
    it came in (it is exported in evaluation mode)."""
    if fmt not in FORMATS:
        raise fail("--format", f"allowed: {', '.join(FORMATS)}", fmt)
    was_training = model.training
    try:
        exported, got, expected = _exported(model.eval(), spec, fmt, metadata)
    finally:
        model.train(was_training)
    if got.shape != expected.shape:  # a batch size the file holds as a constant
        raise fail("export", f"the exported file gives scores of shape {list(got.shape)} for a batch of "
                   f"{len(expected)} images, torch's model {list(expected.shape)}")
    difference = float((got - expected).abs().max())
    if not math.isfinite(difference):  # NaN compares false with any tolerance
        raise fail("export", "the model's outputs are not finite (NaN or inf): the checkpoint's weights hold such values")
    if difference > tolerance:
        raise fail("export", f"the exported model differs from torch by {difference:.2e} (> {tolerance:g})")
    return exported, difference


def _exported(
    model: torch.nn.Module, spec: Spec, fmt: str, metadata: dict[str, Any]
) -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """The file's bytes, its outputs once loaded back, and torch's, on a batch other than the
    one it was exported from: another size and other values, which a trace that baked in
    either (a batch size turned into a constant, a branch taken on the data) would not pass."""
    image = (spec.input.channels, *spec.input.hw)
    sample = torch.randn(4, *image, generator=torch.Generator().manual_seed(0))
    check = torch.randn(3, *image, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(check)
    if fmt == "onnx":
        return (*_onnx_roundtrip(model, sample, check, metadata), expected)
    extra_files = {f"{METADATA_KEY}.json": json.dumps(metadata)}
    buffer = io.BytesIO()
    if fmt == "pt2":
        if "dynamic_shapes" not in inspect.signature(torch.export.export).parameters:
            raise fail("--format", f"pt2 needs torch 2.2 or newer (a batch of any size); this is {torch.__version__}", fmt)
        program = torch.export.export(model, (sample,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.export.save(program, buffer, extra_files=extra_files)
        loaded = torch.export.load(io.BytesIO(buffer.getvalue())).module()
    else:
        torch.jit.save(torch.jit.trace(model, sample), buffer, _extra_files=extra_files)
        loaded = torch.jit.load(io.BytesIO(buffer.getvalue()))
    with torch.no_grad():
        return buffer.getvalue(), _run_exported(lambda: loaded(check), check), expected


def _run_exported(run: Callable[[], Result], check: torch.Tensor) -> Result:
    """`run`'s result; what the loaded file raises (but for running out of memory) is an
    export that fails where torch does not. TorchScript's interpreter puts the cause last."""
    try:
        return run()
    except Exception as error:
        if is_out_of_memory(error):
            raise
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise fail("export", f"the exported file fails on a batch of {len(check)} images, which torch's model runs: "
                   f"{lines[-1].strip() if lines else type(error).__name__}") from None


def _onnx_roundtrip(
    model: torch.nn.Module, sample: torch.Tensor, check: torch.Tensor, metadata: dict[str, Any]
) -> tuple[bytes, torch.Tensor]:
    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise fail("--format", f"ONNX export needs {', '.join(missing)}: pip install {' '.join(missing)} "
                   "(or, in blockspec's checkout, pip install -e \".[onnx]\")", "onnx")
    import onnx
    import onnxruntime

    buffer = io.BytesIO()
    torch.onnx.export(
        model, (sample,), buffer, input_names=["images"], output_names=["scores"],
        dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}}, dynamo=False,
    )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata)})
    exported = proto.SerializeToString()
    session = onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"])
    (scores,) = _run_exported(lambda: session.run(None, {"images": check.numpy()}), check)
    return exported, torch.from_numpy(scores)


def export_metadata(spec: Spec, payload: dict[str, Any], trained: Spec) -> dict[str, Any]:
    """What the exported file carries besides the network (built from `spec`): its input and
    channel order, the classes in score order, the normalisation its training images had
    (checkpoints before 2026-12-07 did not record it, nor those before 2026-12-06 the classes),
    which weights it holds, and the test-time views the run's accuracy averaged, which the file
    leaves out (`trained`: the checkpoint's own spec)."""
    metadata: dict[str, Any] = {
        "name": spec.name,
        "input": {"channels": spec.input.channels, "height": spec.input.hw[0], "width": spec.input.hw[1]},
    }
    if spec.input.channels in _CHANNEL_ORDERS:
        metadata["channel_order"] = _CHANNEL_ORDERS[spec.input.channels]
    for name in TrainedOn.names():
        if payload.get(name):
            metadata[name] = list(payload[name])
    if "mean" in metadata and "std" in metadata:
        metadata["normalisation"] = "each channel (pixel / 255 - mean) / std"
    metadata["weights"] = f"EMA average (decay {trained.train.ema:g})" if trained.train.ema else "trained"
    if "epoch" in payload:
        metadata["epoch"] = int(payload["epoch"])
    metadata["test_time_views"] = {"flip": trained.train.tta_flip, "shift": trained.train.tta_shift}
    return metadata


_CHANNEL_ORDERS = {1: "gray", 3: "RGB"}  # as PIL decodes (OpenCV reads BGR)


def input_description(metadata: dict[str, Any], fmt: str) -> str:
    """One line on what to feed the exported file, and where the file records it."""
    size = metadata["input"]
    order = f" {metadata['channel_order']}" if metadata.get("channel_order") == "RGB" else ""
    shape = f"float32 batches N×{size['channels']}×{size['height']}×{size['width']}{order}"
    where = f"metadata property '{METADATA_KEY}'" if fmt == "onnx" else f"extra file {METADATA_KEY}.json"
    if "mean" not in metadata:
        recorded = ", ".join(key for key in ("input", "classes") if key in metadata)
        return (f"input: {shape}, normalised as the training data set was (this checkpoint predates recorded "
                f"statistics); the file records its {recorded} ({where})")
    return (f"input: {shape}, each channel (pixel / 255 − mean) / std with mean ({_numbers(metadata['mean'])}) "
            f"and std ({_numbers(metadata['std'])}), as in training; the file records them ({where})")


def export_notes(spec: Spec, trained: Spec) -> list[str]:
    """What the exported file (built from `spec`) does not carry of the run (`trained`: the
    checkpoint's own spec): the input it measured its accuracy on, and its test-time views."""
    notes = []
    if _input_words(spec) != _input_words(trained):
        notes.append(f"SPEC's input ({_input_words(spec)}) is not the one the run trained and measured its accuracy "
                     f"on ({_input_words(trained)}); the file takes SPEC's")
    views = [name for name in ("tta_flip", "tta_shift") if getattr(trained.train, name)]
    if views:
        notes.append(f"the exported file is the network alone, without the test-time views ({', '.join(views)}) that "
                     "`eval` and the run's accuracy average: apply them around it to score as they do (the file records "
                     "them: test_time_views)")
    return notes


def _input_words(spec: Spec) -> str:
    return f"{spec.input.channels}×{spec.input.hw[0]}×{spec.input.hw[1]}"


def _numbers(values: list[float]) -> str:
    return ", ".join(f"{value:.4f}" for value in values)
