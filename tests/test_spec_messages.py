"""Spec errors, `--set` edits and spec folders at their edges: the index one past the end, an
equals sign inside a value, a rescaled value out of range, the problem count, long values cut,
hints only where they apply, `x-` keys alone dropped, folders read in name order."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from blockspec.errors import SpecError
from blockspec.load import load_spec, parse_spec
from blockspec.train.overrides import apply_overrides
from blockspec.train.resume import first_difference
from tests.cli_helpers import ROOT, run_cli

FLAGSHIP = ROOT / "architectures" / "flagship.yaml"
HEAD = "  output: [gap: {}, fc: {out: 10}]\n"


def test_an_index_one_past_the_end_is_refused_like_any_other() -> None:
    # flagship's C1 has 2 entries: [2] is the first index past the end
    with pytest.raises(SpecError, match=r"blocks\.C1 has 2 entries \(indices from 0\)"):
        load_spec(FLAGSHIP, edits=["blocks.C1[2].conv.out=8"])


def test_an_edit_value_may_hold_an_equals_sign_and_spaces_around_it() -> None:
    spec = load_spec(FLAGSHIP, edits=["description=a=b", "train.epochs = 3"])
    assert spec.description == "a=b" and spec.train.epochs == 3


def test_a_rescaled_max_lr_out_of_range_names_the_field_and_the_flag() -> None:
    text = ("name: t\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD +
            "train:\n  batch_size: 128\n  optimizer: {name: sgd, lr: 0.1}\n  scheduler: {name: onecycle, max_lr: 1.0e+303}\n")
    with pytest.raises(SpecError) as raised:
        apply_overrides(parse_spec(text), batch_size=10**9)
    assert str(raised.value) == "train.scheduler.max_lr (rescaled by --batch-size) = inf: Input should be a finite number"


def test_the_first_difference_names_a_block_the_run_has_and_the_spec_lacks() -> None:
    own = parse_spec("name: t\nblocks:\n  C1: [conv: {out: 8}]\n  C2: [conv: {out: 8}]\n" + HEAD)
    fewer = parse_spec("name: t\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD)
    assert first_difference(fewer, own).startswith("blocks.C2: None here, ")


def test_several_problems_are_counted_in_the_first_line() -> None:
    edits = ["train.lable_smoothing=0.2", "blocks.C2[0].strided.out=-4"]
    with pytest.raises(SpecError) as raised:
        load_spec(FLAGSHIP, edits=edits)
    assert str(raised.value).splitlines()[0] == f"{FLAGSHIP} with --set {' '.join(edits)}: 2 problems"


def test_a_long_value_is_cut_to_80_characters_in_the_message() -> None:
    names = ", ".join(["x" * 30] * 12)
    with pytest.raises(SpecError) as raised:
        parse_spec(f"name: t\nblocks:\n{HEAD}rules: {{require: [{names}]}}\n")
    shown = str(raised.value).split("rules.require = ", 1)[1].split(": unknown feature", 1)[0]
    assert len(shown) == 80 and shown.endswith("...")


def test_a_torch_field_name_is_offered_only_where_blockspec_has_the_field() -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec("name: t\nblocks:\n  C1: [conv: {out: 8}, gap: {kernel_size: 3}]\n  output: [fc: {out: 10}]\n")
    assert "blocks.C1[1].kernel_size = 3: unknown field; allowed: repeat" in str(raised.value)
    assert "did you mean" not in str(raised.value)


def test_a_layer_kind_spelled_out_in_full_is_recognised() -> None:
    with pytest.raises(SpecError, match="unknown layer kind 'convolution'; did you mean 'conv'?"):
        parse_spec("name: t\nblocks:\n  C1: [convolution: {out: 8}]\n" + HEAD)


@pytest.mark.parametrize(("field", "value", "meant"), [("norm", "batchnorm", "batch"), ("act", "hard_swish", "hardswish"),
                                                      ("act", "Leaky-ReLU", "leaky_relu"), ("act", "swish", "silu"), ("norm", "group_normalization", "group")])
def test_an_enumerated_value_in_another_spelling_gets_the_blockspec_word(field: str, value: str, meant: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(f"name: t\ndefaults: {{{field}: {value}}}\nblocks:\n{HEAD}")
    assert str(raised.value).endswith(f"; did you mean '{meant}'?")


def test_only_x_dash_keys_are_dropped(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"xyz = 1: unknown field"):
        parse_spec(f"name: t\nxyz: 1\nblocks:\n{HEAD}")


def test_a_folder_named_like_a_spec_is_not_read_as_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.yaml").mkdir()
    (tmp_path / "good.yaml").write_bytes(FLAGSHIP.read_bytes())
    code, out, err = run_cli(["check", str(tmp_path)], capsys)
    assert (code, err) == (0, ""), out
    assert out.splitlines()[-1] == f"{tmp_path / 'good.yaml'}: all 7 rules hold"


def test_a_folders_specs_are_taken_in_name_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["m.yaml", "b.yaml", "z.yaml", "a.yaml", "q.yml", "c.yaml", "x.yaml", "d.yaml"]
    for name in names:
        (tmp_path / name).write_bytes(FLAGSHIP.read_bytes())
    code, out, err = run_cli(["compare", str(tmp_path), "-f", "json"], capsys)
    assert code == 0, err
    assert [row["file"] for row in json.loads(out)] == [str(tmp_path / name) for name in sorted(names)]
