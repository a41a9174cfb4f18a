"""benchmarks/width_search.py: the candidates' parameter counts are the built models' own, the
edits reach every layer of a stage (residual bodies too), the budget rule prunes, and --train
trains every candidate and tabulates what each run recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blockspec.build import build_model
from blockspec.load import load_spec
from tests.cli_helpers import ROOT
from tests.synthetic import tiny_spec_text, write_colour_folder

sys.path.insert(0, str(ROOT / "benchmarks"))
import width_search  # noqa: E402

FLAGSHIP = ROOT / "architectures" / "flagship.yaml"


def _torch_params(spec_path: Path, edits: tuple[str, ...]) -> int:
    return sum(p.numel() for p in build_model(load_spec(spec_path, edits=list(edits))).parameters())


def test_candidates_count_what_torch_builds_and_respect_the_budget() -> None:
    stages = {"C1": [24, 40], "C2": [56], "C3+C4": [128, 256]}
    candidates = width_search.enumerate_candidates(FLAGSHIP, stages, min_share=0.0)
    assert {c.widths for c in candidates} == {(24, 56, 128), (40, 56, 128)}  # 256 wide breaks 200,000
    for candidate in candidates:
        assert candidate.params == _torch_params(FLAGSHIP, candidate.edits)
        assert not candidate.is_spec
    assert [c.params for c in candidates] == sorted((c.params for c in candidates), reverse=True)


def test_a_stage_width_reaches_residual_bodies_and_the_spec_is_marked() -> None:
    (own,) = width_search.enumerate_candidates(FLAGSHIP, {"C1": [32], "C3+C4": [128]}, min_share=0.0)
    assert own.is_spec and own.params == 194_666
    (wide,) = width_search.enumerate_candidates(FLAGSHIP, {"C1": [40], "C2": [56]}, min_share=0.0)
    model = build_model(load_spec(FLAGSHIP, edits=list(wide.edits)))
    convs = [m for name, m in model.named_modules() if name.startswith("C1") and hasattr(m, "out_channels")]
    assert len(convs) == 3 and {m.out_channels for m in convs} == {40}
    assert [e for e in wide.edits if e.startswith("blocks.C1")] == [
        "blocks.C1[0].conv.out=40",
        "blocks.C1[1].residual.body[0].conv.out=40",
        "blocks.C1[1].residual.body[1].conv.out=40",
    ]


def test_min_share_drops_candidates_far_under_the_budget() -> None:
    stages = {"C1": [24, 32], "C2": [48, 64]}
    all_of_them = width_search.enumerate_candidates(FLAGSHIP, stages, min_share=0.0)
    near_budget = width_search.enumerate_candidates(FLAGSHIP, stages, min_share=0.9)
    assert len(all_of_them) == 4
    assert {c.widths for c in near_budget} == {c.widths for c in all_of_them if c.params >= 180_000}
    assert len(near_budget) < 4


def test_a_stage_of_several_widths_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"stage C1: its layers have widths \[8, 16\]"):
        width_search.stage_paths({"blocks": {"C1": [{"conv": {"out": 8}}, {"strided": {"out": 16}}]}}, "C1")
    with pytest.raises(SystemExit, match="the spec has no block C9"):
        width_search.stage_paths({"blocks": {"C1": []}}, "C9")


def test_train_runs_every_candidate_and_tabulates_its_records(tmp_path: Path) -> None:
    text = tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=1).replace(
        "strided: {out: 16}", "strided: {out: 8}"
    )
    spec = tmp_path / "tiny.yaml"
    spec.write_text(text)
    out = tmp_path / "search"
    command = [sys.executable, "benchmarks/width_search.py", str(spec), "--stage", "C1=4,8", "--train",
               "--out", str(out), "--jobs", "2", "--", "--workers", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = (out / "table.md").read_text().splitlines()[2:]
    assert len(rows) == 2
    for width, row in zip((8, 4), rows):  # most parameters first; the spec's own width in bold
        history = json.loads((out / f"C1-{width}" / "metrics.json").read_text())
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == ("**8**" if width == 8 else "4")
        assert cells[3] == "1" and cells[4] == f"{history[-1]['test_acc']:.2f}"
    assert result.stdout.strip() == (out / "table.md").read_text().strip()


def test_a_passed_deadline_starts_nothing_and_the_table_says_so(tmp_path: Path) -> None:
    out = tmp_path / "search"
    command = [sys.executable, "benchmarks/width_search.py", str(FLAGSHIP), "--stage", "C1=24,32", "--train",
               "--out", str(out), "--deadline", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "deadline: stopped 0 runs, 2 not started" in result.stderr
    rows = (out / "table.md").read_text().splitlines()[2:]
    assert len(rows) == 2 and all(row.endswith("| — | — | — | — |") for row in rows)
    assert not any(path.is_dir() for path in out.iterdir())
