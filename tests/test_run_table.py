"""benchmarks/run_table.py --digest: each run's line names exactly the spec fields its run
changed against the first run's, beside the accuracies its metrics.json recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import ROOT, metrics
from tests.synthetic import tiny_spec_text, write_colour_folder


def _digest(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "benchmarks/run_table.py", *args, "--digest"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def _row(table: str, run_dir: Path) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| `{run_dir.name}` |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a 2-epoch run, the same spec trained with two fields edited by --set)."""
    root = tmp_path_factory.mktemp("digest")
    spec = root / "tiny.yaml"
    spec.write_text(tiny_spec_text(write_colour_folder(root / "data")))
    edits = ["--set", "train.optimizer.lr=0.02", "--set", "data.augment[1].CoarseDropout.p=0.0"]
    for name, extra in (("base", []), ("edited", edits)):
        command = [sys.executable, "-m", "blockspec", "train", str(spec), *extra]
        command += ["--out", str(root / name), "--workers", "0"]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)
    return root / "base", root / "edited"


def test_digest_names_the_edits_and_the_recorded_accuracies(runs: tuple[Path, Path]) -> None:
    base, edited = runs
    result = _digest(str(base), str(edited), "--epochs", "1,2")
    assert result.returncode == 0, result.stderr
    assert _row(result.stdout, base)[1] == "—"
    assert _row(result.stdout, edited)[1] == "`data.augment[1].CoarseDropout.p=0.0`, `train.optimizer.lr=0.02`"
    for run_dir in runs:
        accuracy = [record["test_acc"] for record in metrics(run_dir)]
        row = _row(result.stdout, run_dir)
        assert row[2:4] == [f"{value:.2f}" for value in accuracy]
        best = max(range(len(accuracy)), key=lambda i: (accuracy[i], -i))
        assert row[5] == f"{accuracy[best]:.2f} ({best + 1})"
        assert row[6] == json.loads((run_dir / "summary.json").read_text())["device"]


def test_prose_and_fields_added_later_are_not_edits(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """A run recorded before `data.alternate_flip` and `train.cuda_graphs` existed has neither
    field in its spec.yaml; it trained as their defaults do, so neither is an edit."""
    base, _ = runs
    reworded = tmp_path / "reworded"
    shutil.copytree(base, reworded)
    spec = yaml.safe_load((reworded / "spec.yaml").read_text())
    spec["description"] = "the same network, described again"
    del spec["data"]["alternate_flip"], spec["train"]["cuda_graphs"]
    (reworded / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = _digest(str(base), str(reworded))
    assert result.returncode == 0, result.stderr
    assert _row(result.stdout, reworded)[1] == "—"


def test_a_spec_the_schema_refuses_is_named_without_a_traceback(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = runs
    stale = tmp_path / "stale"
    shutil.copytree(base, stale)
    spec = yaml.safe_load((stale / "spec.yaml").read_text())
    spec["train"]["field_since_removed"] = 1
    (stale / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = _digest(str(base), str(stale))
    assert result.returncode == 2
    assert f"{stale / 'spec.yaml'}" in result.stderr and "train.field_since_removed" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_without_its_spec_is_refused_by_name(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = runs
    bare = tmp_path / "bare"
    shutil.copytree(base, bare)
    (bare / "spec.yaml").unlink()
    result = _digest(str(base), str(bare))
    assert result.returncode == 2
    assert f"{bare / 'spec.yaml'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_layer_of_another_kind_is_named_once_with_its_changed_fields(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """`strided→conv` and the one field that differs, not every field of both kinds."""
    base, _ = runs
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(base, rebuilt)
    spec = yaml.safe_load((rebuilt / "spec.yaml").read_text())
    (strided_fields,) = spec["blocks"]["C1"][1].values()
    spec["blocks"]["C1"][1] = {"conv": {**strided_fields, "stride": 1}}
    (rebuilt / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = _digest(str(base), str(rebuilt))
    assert result.returncode == 0, result.stderr
    assert _row(result.stdout, rebuilt)[1] == "`blocks.C1[1]: strided→conv`, `blocks.C1[1].conv.stride=1`"


def test_a_layer_added_at_a_blocks_end_is_named_as_a_copy_of_the_one_before(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    """One short entry and the field the copy changes, not the whole block written out."""
    base, _ = runs
    deeper = tmp_path / "deeper"
    shutil.copytree(base, deeper)
    spec = yaml.safe_load((deeper / "spec.yaml").read_text())
    (strided_fields,) = spec["blocks"]["C1"][1].values()
    spec["blocks"]["C1"].append({"strided": {**strided_fields, "dilation": 2}})
    (deeper / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = _digest(str(base), str(deeper))
    assert result.returncode == 0, result.stderr
    assert _row(result.stdout, deeper)[1] == "`blocks.C1[2]: added, as blocks.C1[1]`, `blocks.C1[2].strided.dilation=2`"
    shallower = _digest(str(deeper), str(base))
    assert _row(shallower.stdout, base)[1] == "`blocks.C1[2]: removed`"


def test_a_layer_inserted_inside_a_block_is_one_entry(runs: tuple[Path, Path], tmp_path: Path) -> None:
    """The layers after an inserted one are matched to their own copies, not reported as edited."""
    base, _ = runs
    pooled = tmp_path / "pooled"
    shutil.copytree(base, pooled)
    spec = yaml.safe_load((pooled / "spec.yaml").read_text())
    spec["blocks"]["C1"].insert(1, {"pool": {"type": "avg"}})
    (pooled / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = _digest(str(base), str(pooled))
    assert result.returncode == 0, result.stderr
    assert _row(result.stdout, pooled)[1] == (
        "`blocks.C1[1]: added {pool: {k: 2, padding: 0, repeat: 1, stride: null, type: avg}}`"
    )
    unpooled = _digest(str(pooled), str(base))
    assert _row(unpooled.stdout, base)[1] == "`blocks.C1[1]: removed`"
