"""Stage widths chosen by a small search: every combination of the widths given for a spec's
stages that passes the spec's rules (its parameter budget above all), counted exactly by
blockspec's analysis, and with --train each combination trained side by side on a short
schedule (a OneCycle run of a few epochs: the whole schedule, compressed).

    python benchmarks/width_search.py architectures/flagship.yaml \\
        --stage C1=24,32,40 --stage C2=48,64,80 --stage C3+C4=112,128,144 --min-share 0.9
    python benchmarks/width_search.py architectures/flagship.yaml --stage … --train --out ws --jobs 4 \\
        -- --epochs 10 --dataset imagefolder --data-root ../shared/data/cifar10-jpeg.tar.xz

A stage is one block or several joined by `+` (C3 and C4 must be as wide as each other when C4
opens with a residual on C3's output); every `out` inside it, residual bodies included, is
set to the stage's width, so the spec must give the stage one width throughout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from blockspec.analysis import trace
from blockspec.errors import SpecError
from blockspec.load import load_spec
from blockspec.rules import check_rules


@dataclass(frozen=True)
class Candidate:
    name: str
    widths: tuple[int, ...]
    edits: tuple[str, ...]  # `--set` edits that make the spec this candidate
    params: int
    macs: int
    is_spec: bool  # the spec's own widths


def out_paths(layers: list, prefix: str) -> list[tuple[str, int]]:
    """(edit path, width) of every `out` in a block's layers, residual bodies included."""
    found: list[tuple[str, int]] = []
    for index, layer in enumerate(layers):
        for kind, fields in layer.items():
            path = f"{prefix}[{index}].{kind}"
            fields = fields or {}
            if "out" in fields:
                found.append((f"{path}.out", fields["out"]))
            if isinstance(fields.get("body"), list):
                found.extend(out_paths(fields["body"], f"{path}.body"))
    return found


def stage_paths(document: dict, stage: str) -> tuple[list[str], int]:
    """The `out` paths of a stage (`C3+C4`) and the one width the spec gives them."""
    blocks = document.get("blocks", {})
    paths: list[tuple[str, int]] = []
    for block in stage.split("+"):
        if block not in blocks:
            raise SystemExit(f"stage {stage}: the spec has no block {block} (it has {', '.join(blocks)})")
        paths.extend(out_paths(blocks[block], f"blocks.{block}"))
    widths = sorted({width for _, width in paths})
    if len(widths) != 1:
        raise SystemExit(f"stage {stage}: its layers have widths {widths}; the search sets one width per stage")
    return [path for path, _ in paths], widths[0]


def enumerate_candidates(spec_path: Path, stages: dict[str, list[int]], min_share: float) -> list[Candidate]:
    """Every width combination whose spec passes all its rules and spends at least `min_share`
    of the parameter budget, most parameters first."""
    document = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    located = {stage: stage_paths(document, stage) for stage in stages}
    own = tuple(width for _, width in located.values())
    kept: list[Candidate] = []
    for widths in itertools.product(*stages.values()):
        edits = tuple(f"{path}={width}" for (paths, _), width in zip(located.values(), widths) for path in paths)
        try:
            spec = load_spec(spec_path, edits=list(edits))
        except SpecError as error:
            print(f"skipped {widths}: {error}", file=sys.stderr)
            continue
        analysis = trace(spec)
        budget = spec.rules.max_params
        if not all(rule.ok for rule in check_rules(spec, analysis)):
            continue
        if budget is not None and analysis.total_params < min_share * budget:
            continue
        name = "_".join(f"{stage}-{width}" for stage, width in zip(stages, widths))
        kept.append(Candidate(name, widths, edits, analysis.total_params, analysis.macs, widths == own))
    return sorted(kept, key=lambda c: -c.params)


def train_all(
    spec_path: Path, candidates: list[Candidate], out: Path, jobs: int, options: list[str], deadline: float | None
) -> None:
    """`blockspec train` for each candidate, `jobs` at a time (a GPU runs a few small networks
    at once well); each run's log beside its directory. At `deadline` (Unix time) the runs are
    stopped, keeping the epochs they finished, and the rest are not started."""
    out.mkdir(parents=True, exist_ok=True)
    waiting = list(candidates)
    running: list[subprocess.Popen] = []
    while waiting or running:
        running = [process for process in running if process.poll() is None]
        if deadline is not None and time.time() >= deadline:
            for process in running:
                process.terminate()
            for process in running:
                process.wait()
            print(f"deadline: stopped {len(running)} runs, {len(waiting)} not started", file=sys.stderr)
            return
        while waiting and len(running) < jobs:
            candidate = waiting.pop(0)
            sets = [item for edit in candidate.edits for item in ("--set", edit)]
            command = [sys.executable, "-m", "blockspec", "train", str(spec_path), "--out", str(out / candidate.name)]
            with (out / f"{candidate.name}.log").open("w") as log:  # the run keeps its own copy
                running.append(subprocess.Popen([*command, *sets, *options], stdout=log, stderr=subprocess.STDOUT))
        time.sleep(1)


def table(stages: list[str], candidates: list[Candidate], out: Path | None) -> str:
    """Markdown: one row per candidate; with run directories, its last and best test accuracy."""
    head = [*stages, "parameters", "MACs (M)"]
    if out is not None:
        head += ["epochs", "test acc % (last)", "best (epoch)", "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for c in candidates:
        cells = [f"**{w}**" if c.is_spec else str(w) for w in c.widths] + [f"{c.params:,}", f"{c.macs / 1e6:.1f}"]
        if out is not None:
            cells += run_cells(out / c.name / "metrics.json")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_cells(metrics_file: Path) -> list[str]:
    """Epochs run, last test accuracy, best (epoch) and seconds; dashes for a run not started."""
    if not metrics_file.is_file():
        return ["—"] * 4
    history = json.loads(metrics_file.read_text())
    best = max(history, key=lambda r: (r["test_acc"], -r["epoch"]))
    seconds = sum(r["seconds"] for r in history)
    last = history[-1]
    return [str(last["epoch"]), f"{last['test_acc']:.2f}", f"{best['test_acc']:.2f} ({best['epoch']})", f"{seconds:,.0f}"]


def parse_stage(text: str) -> tuple[str, list[int]]:
    stage, _, widths = text.partition("=")
    try:
        return stage, [int(width) for width in widths.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stage takes NAME=W,W,… with whole widths, not {text!r}") from None


def main() -> None:
    argv = sys.argv[1:]
    options = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--stage", type=parse_stage, action="append", required=True, help="e.g. C3+C4=112,128,144")
    parser.add_argument(
        "--min-share", type=float, default=0.0, help="keep candidates using at least this share of max_params"
    )
    parser.add_argument(
        "--train", action="store_true", help="train every candidate (options for `blockspec train` after --)"
    )
    parser.add_argument("--out", type=Path, default=Path("width-search"), help="run directories and table.md (--train)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--deadline", type=float, help="Unix time at which the runs are stopped (--train)")
    args = parser.parse_args(argv)
    stages = dict(args.stage)
    candidates = enumerate_candidates(args.spec, stages, args.min_share)
    if not candidates:
        raise SystemExit("no width combination passes the spec's rules")
    if args.train:
        train_all(args.spec, candidates, args.out, args.jobs, options, args.deadline)
    text = table(list(stages), candidates, args.out if args.train else None)
    if args.train:
        (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
