"""The run directory's human- and machine-readable records: metrics and summary."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

METRIC_FIELDS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    "seconds",
    "images_per_second",
    "peak_host_memory_mb",
    "peak_gpu_memory_mb",
)


def write_text_atomic(target: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.json and metrics.csv, rewritten whole from the checkpoint's history."""
    write_text_atomic(run_dir / "metrics.json", json.dumps(history, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


def summarize_history(history: list[dict[str, Any]], target: float) -> dict[str, Any]:
    best = max(history, key=lambda record: record["test_acc"], default=None)
    reached = next((r["epoch"] for r in history if r["test_acc"] >= target), None)
    return {
        "best_test_acc": best["test_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "target": target,
        "target_epoch": reached,
        # time-to-target: training and evaluation seconds of the epochs up to the first hit
        "target_seconds": (
            round(sum(r["seconds"] for r in history if r["epoch"] <= reached), 3) if reached else None
        ),
        "epochs_completed": len(history),
        "total_seconds": round(sum(r["seconds"] for r in history), 3),
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
