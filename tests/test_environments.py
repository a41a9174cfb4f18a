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

import numpy as np
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


def test_training_runs_where_python_has_no_resource_module(tmp_path: Path) -> None:
    """Windows has no `resource` (getrusage): `train` failed there on import. The run trains,
    its host memory peak unknown rather than made up."""
    root = write_colour_folder(tmp_path / "colours", train_per_class=4, test_per_class=2)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(root, epochs=1))
    run = tmp_path / "run"
    program = "import sys; sys.modules['resource'] = None; from blockspec.cli import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", program, "train", str(spec), "--out", str(run), "--workers", "0",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["peak_host_memory_mb"] is None and summary["epochs_completed"] == 1
    assert json.loads((run / "metrics.json").read_text())[0]["peak_host_memory_mb"] is None


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


def test_names_recorded_raw_before_readable_names_read_as_readable(tmp_path: Path) -> None:
    """Checkpoints and caches written before 2026-12-07 hold a Latin-1 folder's name raw."""
    import numpy as np

    from blockspec import build_model, parse_spec
    from blockspec.data.imagefolder import from_arrays
    from blockspec.train.checkpoint import load_checkpoint, save_atomic

    raw = os.fsdecode(b"cat\xe9")
    spec = parse_spec(tiny_spec_text(tmp_path, epochs=1))
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "classes": [raw, "dog"]},
                tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["classes"] == ["cat\\xe9", "dog"]
    empty = np.zeros((0, 2, 2, 3), dtype=np.uint8)
    cached = {"train_images": empty, "train_labels": np.zeros(0), "test_images": empty, "test_labels": np.zeros(0),
              "classes": np.asarray([raw, "dog"]), "mean": np.zeros(3), "std": np.ones(3)}
    assert from_arrays(cached).classes == ("cat\\xe9", "dog")


@pytest.mark.parametrize(("written", "read"), [("caté".encode(), "caté"), (b"caf\x82", "café")])
def test_a_zip_without_the_utf8_flag_names_classes_as_the_zipping_system_did(tmp_path: Path, written: bytes,
                                                                           read: str) -> None:
    """Zip tools on Linux store UTF-8 names without the UTF-8 flag (Python's zipfile read
    `caté` as `cat├⌐`), Windows ones cp437 (`café` is `caf\\x82` there)."""
    import zipfile

    folder = write_colour_folder(tmp_path / "colours", train_per_class=2, test_per_class=1)
    placeholder = b"class0"[: len(written) - 1] + b"#" if len(written) <= 6 else b""
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(folder.rglob("*.png")):
            bundle.write(file, str(file.relative_to(tmp_path)).replace("class0", placeholder.decode()))
    archive.write_bytes(archive.read_bytes().replace(placeholder, written))  # the name's bytes, no flag
    assert load_dataset("imagefolder", archive).classes == tuple(sorted([read, "class1", "class2", "class3"]))


def test_main_gives_a_calling_program_its_streams_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from blockspec.cli import main

    out = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    monkeypatch.setattr(sys, "stdout", out)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(FLAGSHIP)])
    assert exit_info.value.code in (0, None) and out.errors == "strict"
    out.flush()
    assert out.buffer.getvalue().startswith(b"? max_params: 194,666 parameters")


def test_predicts_json_names_a_file_named_in_other_bytes_readably(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    data = write_colour_folder(tmp_path / "data", train_per_class=4, test_per_class=2)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(data, epochs=1))
    run = tmp_path / "run"
    assert run_cli(["train", str(spec), "--out", str(run), "--workers", "0"], capsys)[0] == 0
    image = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.png"))
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(image)
    code, out, err = run_cli(["predict", str(image), "--checkpoint", str(run), "-f", "json"], capsys)
    assert code == 0, err
    assert json.loads(out.encode("utf-8", "strict"))[0]["file"] == f"{tmp_path}/caf\\xe9.png"


def test_a_checkpoint_whose_classes_are_not_names_is_refused(tmp_path: Path) -> None:
    from blockspec import SpecError, build_model, parse_spec
    from blockspec.train.checkpoint import load_checkpoint, save_atomic

    spec = parse_spec(tiny_spec_text(tmp_path, epochs=1))
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "classes": [0, 1]},
                tmp_path / "edited.pt")
    with pytest.raises(SpecError, match="classes are not a list of names"):
        load_checkpoint(tmp_path / "edited.pt")
