"""What a run writes, at the edges the training tests do not reach: an atomic write that fails
leaves the old file, content reaches the disk before it replaces the target, partial writes
of a killed run are removed, the confusion matrix is normalised by true class, metrics.csv
keeps each value under its column, the schema refuses a layer with a second key."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from blockspec.atomic import atomic_write
from blockspec.errors import SpecError


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as out:
        out.write(b"new, half")
        raise RuntimeError("killed half-way")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_the_content_reaches_the_disk_before_it_replaces_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    seen = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.append(target.read_bytes()), real(fd)))
    with atomic_write(target) as out:
        out.write(b"new")
    assert seen == [b"old"] and target.read_bytes() == b"new"


def test_holding_a_run_dir_removes_the_partial_writes_a_killed_run_left(tmp_path: Path) -> None:
    from blockspec.train.rundir import hold_run_dir

    (tmp_path / ".last.pt.123-abcd1234.tmp").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"whole")
    with hold_run_dir(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".blockspec.lock", "last.pt"]


def test_links_left_in_a_run_dir_are_never_written_through(tmp_path: Path) -> None:
    """A link named as the write probe or the lock counted as a killed run's leftover, and the
    run wrote 64 kB over its target and created the lock's: a file outside the run directory."""
    import contextlib

    from blockspec.train.rundir import hold_run_dir, prepare_run_dir

    victim = tmp_path / "important.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".write-test").symlink_to(victim)
    with contextlib.ExitStack() as held, pytest.raises(SpecError, match="already exists and is not empty"):
        prepare_run_dir(out, "x", held)
    (out / ".write-test").unlink()
    (out / ".blockspec.lock").symlink_to(tmp_path / "created_by_lock")
    with contextlib.ExitStack() as held, pytest.raises(SpecError, match="already exists and is not empty"):
        prepare_run_dir(out, "x", held)
    with pytest.raises(SpecError, match=r"cannot hold its \.blockspec\.lock \(.*; a link is there: remove it\)"):
        with hold_run_dir(out, "--resume"):  # a resumed run's directory is its own: held, not checked
            pass
    assert victim.read_text() == "precious" and not (tmp_path / "created_by_lock").exists()


def test_confusion_colours_each_row_by_the_share_of_its_true_class() -> None:
    from blockspec.train.plots import confusion_figure

    labels = np.array([0, 0, 0, 1])
    predictions = np.array([0, 0, 1, 1])
    shown = confusion_figure(labels, predictions, ("a", "b")).axes[0].images[0].get_array()
    assert np.allclose(shown, [[2 / 3, 1 / 3], [0.0, 1.0]])


def test_metrics_csv_puts_each_value_under_its_own_column(tmp_path: Path) -> None:
    import csv

    from blockspec.train.records import METRIC_FIELDS, write_metrics

    record = {name: float(index) for index, name in enumerate(METRIC_FIELDS)}
    write_metrics(tmp_path, [record])
    (row,) = csv.DictReader((tmp_path / "metrics.csv").open())
    assert row == {"epoch": "0.0", "train_loss": "1.0", "train_acc": "2.0", "test_loss": "3.0", "test_acc": "4.0",
                   "lr": "5.0", "seconds": "6.0", "images_per_second": "7.0", "peak_host_memory_mb": "8.0",
                   "peak_gpu_memory_mb": "9.0"}


def test_schema_refuses_a_layer_with_a_second_key_and_takes_x_keys() -> None:
    import jsonschema
    import yaml

    from blockspec.schema import spec_json_schema

    validator = jsonschema.Draft202012Validator(spec_json_schema())
    two_keys = yaml.safe_load("name: x\nblocks:\n  C1: [{conv: {out: 8}, note: x}]\n  output: [gap: {}, fc: {out: 10}]\n")
    anchored = yaml.safe_load("name: x\nx-unit: &u [gap: {}, fc: {out: 10}]\nblocks:\n  output: *u\n")
    assert not validator.is_valid(two_keys)
    assert validator.is_valid(anchored)


def test_misclassified_tiles_are_titled_true_then_predicted_in_test_order() -> None:
    from blockspec.train.plots import misclassified_figure

    images = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    labels, predictions = np.array([0, 1, 2, 0]), np.array([0, 2, 2, 1])
    titles = [text.get_text() for text in misclassified_figure(images, labels, predictions, ("a", "b", "c")).axes[0].texts]
    assert titles == ["b → c", "a → b"]
