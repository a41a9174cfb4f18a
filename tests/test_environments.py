"""Where users run blockspec and the development machine does not: output in an encoding
other than UTF-8 (a file redirected on Windows is cp1252), a dumb terminal (Emacs, IDE
consoles), file names that are not UTF-8, a process without a home directory."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from rich.console import Console

from blockspec import load_spec, summarize
from blockspec.data import load_dataset
from blockspec.render import print_table
from tests.cli_helpers import run_cli
from tests.synthetic import tiny_spec_text, write_colour_folder

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "architectures/flagship.yaml"


def test_output_in_an_encoding_without_the_tools_symbols_replaces_them() -> None:
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    check = subprocess.run([sys.executable, "-m", "blockspec", "check", str(FLAGSHIP)], capture_output=True, env=env)
    assert check.returncode == 0, check.stderr.decode("cp1252")
    assert check.stdout.decode("cp1252").splitlines()[0] == "? max_params: 194,666 parameters (limit 200,000)"
    table = subprocess.run([sys.executable, "-m", "blockspec", "build-summary", str(FLAGSHIP)], capture_output=True,
                           env=env)
    assert table.returncode == 0 and "884,736" in table.stdout.decode("cp1252")


def test_a_dumb_terminal_gets_the_whole_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich holds a dumb terminal at 80 columns unless its height is set too; the table then
    cut its numbers to `884,7…`."""
    monkeypatch.setenv("TERM", "dumb")
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, color_system=None)
    assert console.is_dumb_terminal and console.width == 80
    summary = summarize(load_spec(FLAGSHIP))
    print_table(summary, console)
    assert "…" not in terminal.getvalue()
    assert all(f"{row.macs:,}" in terminal.getvalue() for row in summary.analysis.rows)


def test_folders_named_in_bytes_that_are_not_utf8_train_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data root and a class folder named in Latin-1 (`caf\\xe9`): the class is named with
    the escape in every record and picture, the data root is read as it is."""
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    write_colour_folder(root, train_per_class=4, test_per_class=2)
    for split in ("train", "test"):
        (root / split / "class0").rename(root / split / os.fsdecode(b"cat\xe9"))
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(tmp_path / "unused", epochs=1))
    run = tmp_path / "run"
    code, _, err = run_cli(["train", str(spec), "--data-root", str(root), "--out", str(run), "--workers", "0"], capsys)
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["classes"] == ["cat\\xe9", "class1", "class2", "class3"]
    assert (run / "confusion.png").is_file() and (run / "misclassified.png").is_file()
    code, out, err = run_cli(["eval", "--checkpoint", str(run), "-f", "json"], capsys)
    assert code == 0 and "cat\\xe9" in json.loads(out)["per_class"], err


def test_without_a_home_directory_data_loads_uncached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container run under a user id without a passwd entry, HOME unset: Path.home() fails."""
    def no_home(cls: type) -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(no_home))
    folder = write_colour_folder(tmp_path / "colours", train_per_class=2, test_per_class=1)
    archive = tmp_path / "colours.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname="colours")
    data = load_dataset("imagefolder", archive)
    assert data.classes == ("class0", "class1", "class2", "class3") and len(data.train_labels) == 8
