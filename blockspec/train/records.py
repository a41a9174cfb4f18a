"""The run directory's human- and machine-readable records: metrics and summary."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from blockspec.atomic import atomic_write

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
    with atomic_write(target) as out:
        out.write(text.encode("utf-8"))


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.json and metrics.csv, rewritten whole from the checkpoint's history."""
    write_text_atomic(run_dir / "metrics.json", json.dumps(history, indent=2) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


def is_new_best(history: list[dict[str, Any]]) -> bool:
    """Whether the last epoch beats every earlier one. Strictly: on a tie best.pt keeps the
    first such epoch, the one `summarize_history` names."""
    return all(history[-1]["test_acc"] > record["test_acc"] for record in history[:-1])


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
