"""Render a run directory's metrics.json and summary.json as a Markdown table for docs/;
given several run directories, their test accuracies side by side, epoch by epoch, or with
--digest one line per run: what its spec.yaml changes against the first run's, and the figures
the flagship's targets are judged by.

    python benchmarks/run_table.py runs/flagship/20261121-224200
    python benchmarks/run_table.py runs/a runs/b --epochs 1,5,10,15,20,30,40
    python benchmarks/run_table.py runs/a runs/b runs/c --digest --epochs 15,40
"""

from __future__ import annotations

import argparse
import json
from difflib import SequenceMatcher
from pathlib import Path

import yaml

from blockspec.errors import SpecError
from blockspec.load import load_spec


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


def recorded_settings(spec_path: Path) -> dict:
    """A run's spec.yaml as the current schema reads it, prose dropped: a field added after the
    run was recorded takes its default there, so it is not mistaken for an edit."""
    settings = yaml.safe_load(load_spec(spec_path).to_yaml())
    settings.pop("description", None)
    return settings


def spec_changes(base: object, other: object, path: str = "") -> list[str]:
    """`path=value` for each field that differs, in field order. A section set to null is
    the same as an empty one; a layer or transform
    whose kind changed is one `path: old→new` line followed by the fields the new one sets
    differently (`blocks.C2[0]: strided→conv`, `blocks.C2[0].conv.stride=1`), not every
    field of both kinds."""
    if isinstance(base, dict) or isinstance(other, dict):
        base, other = base or {}, other or {}
        if isinstance(base, dict) and isinstance(other, dict):
            if len(base) == len(other) == 1 and base.keys() != other.keys():
                (old, old_fields), (new, new_fields) = *base.items(), *other.items()
                return [f"{path}: {old}→{new}", *spec_changes(old_fields, new_fields, f"{path}.{new}")]
            keys = sorted(set(base) | set(other))
            return [
                change
                for key in keys
                for change in spec_changes(base.get(key), other.get(key), f"{path}.{key}" if path else str(key))
            ]
    if isinstance(base, list) and isinstance(other, list):
        if len(base) == len(other) or all(isinstance(item, dict) for item in base + other):
            return list_changes(base, other, path)
    if base == other:
        return []
    return [f"{path}={flow(other) if isinstance(other, list | dict) else other}"]


def flow(value: list | dict) -> str:
    """A list or mapping on one line, as YAML writes it inline."""
    return yaml.safe_dump(value, default_flow_style=True, width=1_000).strip()


def list_changes(base: list, other: list, path: str) -> list[str]:
    """Lists of layers (or transforms) are aligned by kind first, so a layer inserted or removed
    anywhere in a block is one entry and the layers after it are not reported as changed; the
    rest is compared item by item. An added item is named as a copy of the one before it plus the
    fields it changes (`blocks.C4[1]: added, as blocks.C4[0]`) when it is of the same kind, not
    written out whole with every default; paths index the edited list, removed items the base."""
    if not all(isinstance(item, dict) for item in base + other):
        pairs = enumerate(zip(base, other))
        return [change for i, (old, new) in pairs for change in spec_changes(old, new, f"{path}[{i}]")]
    kinds = [tuple(item) for item in base], [tuple(item) for item in other]
    matcher = SequenceMatcher(a=kinds[0], b=kinds[1], autojunk=False)
    changes: list[str] = []
    for _, base_start, base_end, other_start, other_end in matcher.get_opcodes():
        paired = min(base_end - base_start, other_end - other_start)
        for offset in range(paired):
            i = other_start + offset
            changes += spec_changes(base[base_start + offset], other[i], f"{path}[{i}]")
        changes += [f"{path}[{i}]: removed" for i in range(base_start + paired, base_end)]
        for i in range(other_start + paired, other_end):
            changes += added(other, i, path)
    return changes


def added(items: list[dict], i: int, path: str) -> list[str]:
    """The entry for `items[i]`, which the base list does not have."""
    if i > 0 and items[i].keys() == items[i - 1].keys():
        copy = f"{path}[{i}]: added, as {path}[{i - 1}]"
        return [copy, *spec_changes(items[i - 1], items[i], f"{path}[{i}]")]
    return [f"{path}[{i}]: added {flow(items[i])}"]


def digest(run_dirs: list[Path], epochs: list[int]) -> str:
    """One row per run: its spec edits against the first run, accuracy at `epochs`, the first
    epoch at the first run's target, the best epoch, and the device and precision it trained on
    (both from summary.json), so runs in different precisions are not compared unawares."""
    specs = [recorded_settings(d / "spec.yaml") for d in run_dirs]
    summaries = [json.loads((d / "summary.json").read_text()) for d in run_dirs]
    target = summaries[0]["target"]
    lines = [
        f"| run | changes against `{run_dirs[0].name}` | "
        + " | ".join(f"test acc % at {epoch}" for epoch in epochs)
        + f" | first epoch ≥ {target:g} % | best (epoch) | device |",
        "|---|---|" + "---:|" * (len(epochs) + 2) + "---|",
    ]
    for run_dir, spec, summary in zip(run_dirs, specs, summaries):
        accuracy = {r["epoch"]: r["test_acc"] for r in json.loads((run_dir / "metrics.json").read_text())}
        reached = next((epoch for epoch in sorted(accuracy) if accuracy[epoch] >= target), "—")
        best = max(accuracy, key=lambda epoch: (accuracy[epoch], -epoch))
        changes = ", ".join(f"`{change}`" for change in spec_changes(specs[0], spec)) or "—"
        cells = [f"{accuracy[epoch]:.2f}" if epoch in accuracy else "—" for epoch in epochs]
        lines.append(
            f"| `{run_dir.name}` | {changes} | "
            + " | ".join(cells)
            + f" | {reached} | {accuracy[best]:.2f} ({best}) | {summary['device']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories (blockspec train --out)")
    parser.add_argument(
        "--epochs", help="comma-separated epochs to show when comparing runs (default: all; with --digest: the last)"
    )
    parser.add_argument("--digest", action="store_true", help="one line per run: spec edits and target figures")
    args = parser.parse_args()
    missing = [str(d) for d in args.run_dirs if not (d / "metrics.json").is_file()]
    if missing:
        parser.error(f"no metrics.json in {', '.join(missing)}")
    try:
        epochs = [int(text) for text in args.epochs.split(",")] if args.epochs else None
    except ValueError:
        parser.error(f"--epochs takes comma-separated whole numbers, not {args.epochs!r}")
    dirs = args.run_dirs
    if args.digest:
        lacking = [f"{d / name}" for d in dirs for name in ("spec.yaml", "summary.json") if not (d / name).is_file()]
        if lacking:
            parser.error(f"--digest needs each run's spec.yaml and summary.json; missing: {', '.join(lacking)}")
        last_epoch = max(r["epoch"] for r in json.loads((dirs[0] / "metrics.json").read_text()))
        try:
            print(digest(dirs, epochs or [last_epoch]))
        except SpecError as error:
            parser.error(f"a run's spec.yaml no longer validates: {error}")
        return
    print(render(dirs[0]) if len(dirs) == 1 else compare(dirs, set(epochs) if epochs else None))


if __name__ == "__main__":
    main()
