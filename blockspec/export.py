"""Export a trained spec to TorchScript or ONNX, and prove the export computes the same.

The numeric check runs the exported file (TorchScript via torch.jit.load, ONNX via
onnxruntime) on random inputs and compares with the eager model.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch

from blockspec.errors import fail
from blockspec.spec import Spec

FORMATS = ("torchscript", "onnx")


def export_model(model: torch.nn.Module, spec: Spec, fmt: str, out: Path, tolerance: float = 1e-4) -> float:
    """Write `model` (built from `spec`) to `out`; returns the largest absolute difference
    between the exported file's outputs and torch's."""
    if fmt not in FORMATS:
        raise fail("--format", f"allowed: {', '.join(FORMATS)}", fmt)
    model.eval()
    sample = torch.randn(4, spec.input.channels, *spec.input.hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(sample)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        scripted = torch.jit.trace(model, sample)
        scripted.save(str(out))
        with torch.no_grad():
            got = torch.jit.load(str(out))(sample)
    else:
        got = _onnx_roundtrip(model, sample, out)
    difference = float((got - expected).abs().max())
    if not math.isfinite(difference):  # NaN compares false with any tolerance
        raise fail("export", "the model's outputs are not finite (NaN or inf): the checkpoint's weights hold such values")
    if difference > tolerance:
        raise fail("export", f"the exported model differs from torch by {difference:.2e} (> {tolerance:g})")
    return difference


def _onnx_roundtrip(model: torch.nn.Module, sample: torch.Tensor, out: Path) -> torch.Tensor:
    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise fail("--format", f"ONNX export needs {', '.join(missing)}: pip install 'blockspec[onnx]'", "onnx")
    import onnxruntime

    torch.onnx.export(
        model, (sample,), str(out), input_names=["images"], output_names=["scores"],
        dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}}, dynamo=False,
    )
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (scores,) = session.run(None, {"images": sample.numpy()})
    return torch.from_numpy(scores)
