"""`--set PATH=VALUE`: a field changed from the command line is checked like the file's own,
reaches the built module and the run's recorded spec, and a bad edit is a clean error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from blockspec import build_model
from blockspec.analysis import trace
from blockspec.edits import apply_edits
from blockspec.errors import SpecError
from blockspec.load import load_spec
from tests.cli_helpers import ROOT, run_cli
from tests.synthetic import tiny_spec_text, write_colour_folder

FLAGSHIP = ROOT / "architectures" / "flagship.yaml"


def test_edits_reach_nested_fields_list_entries_and_defaults() -> None:
    spec = load_spec(
        FLAGSHIP,
        edits=[
            "train.label_smoothing=0.2",
            "blocks.C1[0].conv.out=24",
            "train.scheduler.cycle_momentum=false",
            "train.tta_shift=1",  # not in the file: left at its default there
        ],
    )
    assert spec.train.label_smoothing == 0.2
    assert spec.blocks["C1"][0].out == 24
    assert spec.train.scheduler.cycle_momentum is False and spec.train.scheduler.pct_start == 0.15
    assert spec.train.tta_shift == 1
    first_conv = next(m for m in build_model(spec).modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.out_channels == 24


def test_a_wider_layer_changes_the_counted_and_the_built_parameters_alike() -> None:
    base = load_spec(FLAGSHIP)
    wider = load_spec(FLAGSHIP, edits=["blocks.C2[0].strided.out=72", "blocks.C2[1].residual.body[1].conv.out=72"])
    count = sum(p.numel() for p in build_model(wider).parameters())
    assert count > sum(p.numel() for p in build_model(base).parameters())
    assert trace(wider).total_params == count


def test_edits_leave_the_document_they_are_given_unchanged() -> None:
    document = {"train": {"optimizer": {"lr": 0.1}}, "blocks": {"C1": [{"conv": {"out": 8}}]}}
    edited = apply_edits(document, ["train.optimizer.lr=0.2", "blocks.C1[0].conv.out=16", "data.root=x"])
    assert document == {"train": {"optimizer": {"lr": 0.1}}, "blocks": {"C1": [{"conv": {"out": 8}}]}}
    assert edited["train"]["optimizer"]["lr"] == 0.2 and edited["blocks"]["C1"][0]["conv"]["out"] == 16
    assert edited["data"] == {"root": "x"}


def test_an_edit_changes_only_its_own_copy_of_an_aliased_block(tmp_path: Path) -> None:
    """`C2: *unit` is the same object as C1 once loaded; editing C1 must leave C2 as written."""
    path = tmp_path / "alias.yaml"
    path.write_text("name: a\nblocks:\n  C1: &unit [conv: {out: 8}]\n  C2: *unit\n  output: [gap: {}, fc: {out: 10}]\n")
    spec = load_spec(path, edits=["blocks.C1[0].conv.out=16"])
    assert (spec.blocks["C1"][0].out, spec.blocks["C2"][0].out) == (16, 8)
    assert trace(spec).total_params == sum(p.numel() for p in build_model(spec).parameters())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("train.label_smoothing", "expected PATH=VALUE"),
        ("train..epochs=3", "expected PATH=VALUE"),
        ("[0]=3", "expected PATH=VALUE"),
        ("train.epochs=[1", "not valid YAML"),
        ("train.epochs=!!int x", "not valid YAML"),  # PyYAML raises ValueError for this one
        ("blocks.C1[9].conv.out=8", "blocks.C1 has 2 entries"),
        ("blocks.C7[0].conv.out=8", "blocks.C7 is not in the spec"),
        ("train.epochs.max=3", "train.epochs is not a mapping"),
        ("train[0]=3", "train is not a list"),
        ("blocks.C1[0].dws.out=8", "blocks.C1[0] is a 'conv' entry, not 'dws': its fields are under blocks.C1[0].conv; "
                                   "to make it a 'dws', replace it: --set 'blocks.C1[0]={dws: {...}}'"),
        ("blocks.C3[1].body[0].dws.out=8", "did you mean blocks.C3[1].residual.body[0].dws.out?"),
        ("blocks.C1[0].out=8", "blocks.C1[0] is a 'conv' entry, not 'out': its fields are under blocks.C1[0].conv; "
                               "did you mean blocks.C1[0].conv.out?"),
        ("blocks.C1[0].cnov.out=8", "did you mean blocks.C1[0].conv.out?"),
        ("data.augment[0].p=0.2", "data.augment[0] is a 'HorizontalFlip' entry, not 'p'"),
        ("blocks.ouptut[0].fc.out=8", "blocks.ouptut is not in the spec, so it has no entry to set; did you mean blocks.output?"),
    ],
)
def test_a_bad_edit_names_itself_and_the_file(edit: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        load_spec(FLAGSHIP, edits=[edit])
    text = str(error.value)
    assert text.startswith(f"{FLAGSHIP}: --set = {edit!r}") and message in text


def test_a_bad_value_set_is_reported_at_its_field_path() -> None:
    with pytest.raises(SpecError) as error:
        load_spec(FLAGSHIP, edits=["train.lable_smoothing=0.2", "blocks.C2[0].strided.out=-4"])
    text = str(error.value)
    assert "with --set train.lable_smoothing=0.2" in text
    assert "train.lable_smoothing = 0.2: unknown field; did you mean 'label_smoothing'?" in text
    assert "blocks.C2[0].out = -4" in text


def test_check_and_build_summary_take_edits(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", str(FLAGSHIP), "--set", "blocks.C3[0].dws.out=200"], capsys)
    assert code == 1 and "✗ max_params" in out and out.rstrip().endswith("1 rule(s) violated: max_params")
    code, out, _ = run_cli(["build-summary", str(FLAGSHIP), "--format", "json", "--set", "blocks.C1[0].conv.out=24"], capsys)
    assert code == 0 and '"total_params": ' in out
    code, _, err = run_cli(["check", str(FLAGSHIP), "--set", "nonsense"], capsys)
    assert code == 2 and "expected PATH=VALUE" in err and "Traceback" not in err


def test_a_run_records_the_edited_spec_eval_takes_edits_resume_refuses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=1))
    out = tmp_path / "run"
    argv = ["train", str(spec_path), "--out", str(out), "--workers", "0", "--set", "train.label_smoothing=0.3"]
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0 and "epoch   1/1" in stdout
    assert yaml.safe_load((out / "spec.yaml").read_text())["train"]["label_smoothing"] == 0.3
    code, _, err = run_cli(["train", "--resume", str(out), "--set", "train.epochs=3"], capsys)
    assert code == 2 and "a resumed run keeps the spec it started with" in err
    plain = run_cli(["eval", "--checkpoint", str(out)], capsys)
    shifted = run_cli(["eval", "--checkpoint", str(out), "--set", "train.tta_shift=2"], capsys)
    assert plain[0] == shifted[0] == 0 and plain[1] != shifted[1]  # other test views, other loss
    code, _, err = run_cli(["eval", "--checkpoint", str(out), "--set", "blocks.C1[0].conv.out=4"], capsys)
    assert code == 2 and err.startswith("error: --set = 'blocks.C1[0].conv.out=4': builds other weights than ")
