"""Render a run directory's metrics.json and summary.json as a Markdown table for docs/;
given several run directories, their test accuracies side by side, epoch by epoch.

    python benchmarks/run_table.py runs/flagship/20261121-224200
    python benchmarks/run_table.py runs/a runs/b --epochs 1,5,10,15,20,30,40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def render(run_dir: Path) -> str:
    history = json.loads((run_dir / "metrics.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    lines = [
        "| epoch | train loss | train acc % | test loss | test acc % | lr | images/s | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in history:
        lines.append(
            f"| {r['epoch']} | {r['train_loss']:.4f} | {r['train_acc']:.2f} | {r['test_loss']:.4f} | "
            f"{r['test_acc']:.2f} | {r['lr']:.5f} | {r['images_per_second']:,.0f} | {r['seconds']:,.1f} |"
        )
    lines.append("")
    lines.append(
        f"Best test accuracy {summary['best_test_acc']:.2f} % at epoch {summary['best_epoch']}; "
        f"target {summary['target']:g} % reached at epoch {summary['target_epoch'] or '—'}"
        + (f" after {summary['target_seconds']:,.0f} s" if summary.get("target_seconds") else "")
        + "; "
        f"{summary['epochs_completed']} epochs in {summary['total_seconds']:,.0f} s of training and "
        f"evaluation on {summary['device']}; peak host memory {summary['peak_host_memory_mb']:,.0f} MB."
    )
    return "\n".join(lines)


def compare(run_dirs: list[Path], epochs: set[int] | None = None) -> str:
    """Test accuracy % per epoch (all, or those in `epochs`), one column per run (named by its directory)."""
    histories = [{r["epoch"]: r["test_acc"] for r in json.loads((d / "metrics.json").read_text())} for d in run_dirs]
    lines = [
        "| epoch | " + " | ".join(f"`{d.name}` test acc %" for d in run_dirs) + " |",
        "|---:|" + "---:|" * len(run_dirs),
    ]
    shown = set().union(*histories)
    if epochs:
        shown &= epochs
    for epoch in sorted(shown):
        cells = [f"{h[epoch]:.2f}" if epoch in h else "—" for h in histories]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (blockspec train --out)")
    parser.add_argument("--epochs", help="comma-separated epochs to show when comparing runs (default: all)")
    args = parser.parse_args()
    missing = [str(d) for d in args.run_dirs if not (d / "metrics.json").is_file()]
    if missing:
        parser.error(f"no metrics.json in {', '.join(missing)}")
    try:
        epochs = {int(text) for text in args.epochs.split(",")} if args.epochs else None
    except ValueError:
        parser.error(f"--epochs takes comma-separated whole numbers, not {args.epochs!r}")
    dirs = args.run_dirs
    print(render(dirs[0]) if len(dirs) == 1 else compare(dirs, epochs))


if __name__ == "__main__":
    main()
