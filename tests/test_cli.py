"""The commands as users run them: output formats, exit codes, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from blockspec import load_spec
from blockspec.analysis import trace
from tests.synthetic import write_colour_folder
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
FOURBLOCKS = ROOT / "architectures/reference/fourblocks-128k.yaml"
FLAGSHIP = ROOT / "architectures/flagship.yaml"



def test_json_summary_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["build-summary", str(FOURBLOCKS), "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["name"] == "fourblocks-128k"
    assert data["total_params"] == data["trainable_params"] == 127_738
    assert data["receptive_field"] == 41
    assert data["macs"] > 0
    first = data["layers"][0]
    assert {"block", "name", "kind", "out_shape", "rf", "jump", "params", "macs"} <= set(first)
    assert first["out_shape"] == [8, 32, 32]
    assert {rule["name"]: rule["ok"] for rule in data["rules"]}["min_rf"] is False


def test_table_and_markdown_show_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    code, table, _ = run_cli(["build-summary", str(FLAGSHIP)], capsys)
    assert code == 0 and "C4.0" in table and "Receptive field" in table and "✓" in table
    code, md, _ = run_cli(["build-summary", str(FLAGSHIP), "-f", "markdown"], capsys)
    layers = len(trace(load_spec(FLAGSHIP)).rows)
    assert code == 0 and md.count("\n| ") == 1 + layers  # header + one row per layer
    assert "| output | output.1 | fc |  | 10 |" in md


def test_the_table_on_a_narrow_terminal_keeps_every_digit() -> None:
    """Squeezed to 80 columns, rich cut the cells to `884,7…`; the table keeps its width."""
    import io

    from rich.console import Console

    from blockspec.render import print_table
    from blockspec.summary import summarize

    terminal = io.StringIO()
    summary = summarize(load_spec(FLAGSHIP))
    print_table(summary, Console(file=terminal, width=80, force_terminal=True, color_system=None))
    cells = terminal.getvalue()
    assert "…" not in cells
    assert all(f"{row.params:,}" in cells and f"{row.macs:,}" in cells for row in summary.analysis.rows)


def test_the_table_shows_k_s_d_p_in_that_order_and_json_names_each() -> None:
    from blockspec import parse_spec, summarize
    from blockspec.render import markdown

    spec = parse_spec("name: x\nblocks:\n  C1: [conv: {out: 8, dilation: 2, padding: 1}]\n"
                      "  output: [gap: {}, fc: {out: 10}]\n")
    summary = summarize(spec)
    assert "| C1 | C1.0 | conv | 3/1/2/1 | 8×30×30 | 5 | 1 |" in markdown(summary)
    data = summary.to_dict()
    assert {key: data["layers"][0][key] for key in ("k", "stride", "dilation", "padding")} == {
        "k": 3, "stride": 1, "dilation": 2, "padding": 1}
    assert data["receptive_field_layer"] == "C1.0"


def test_the_table_counts_a_frozen_whitening_stem_as_not_trainable() -> None:
    from blockspec import build_model, parse_spec, summarize
    from blockspec.render import markdown

    spec = parse_spec("name: w\ninput: {size: 16}\nblocks:\n  C1: [conv: {out: 16, k: 5}, conv: {out: 8}]\n"
                      "  output: [gap: {}, fc: {out: 10}]\ntrain: {whiten_stem: frozen}\n")
    summary = summarize(spec)
    trainable = sum(p.numel() for p in build_model(spec).parameters() if p.requires_grad)
    assert trainable == summary.analysis.total_params - 16 * 3 * 5 * 5
    assert f"Trainable params: {trainable:,}" in str(summary) and f"Trainable params: {trainable:,}" in markdown(summary)


AUGMENTED = """name: a
blocks:
  C1: [conv: {out: 8}]
  output: [gap: {}, fc: {out: 10}]
data:
  augment: [TRANSFORM]
"""


@pytest.mark.parametrize(
    "transform", ["ShiftScaleRotate: {shift_limit: 0.1, p: 0.5}", "PadIfNeeded: {min_height: 40, min_width: 40}, RandomCrop: {height: 32, width: 32}",
                  "GridDistortion: {}", "OpticalDistortion: {}", "ElasticTransform: {}"],
)
def test_check_says_what_training_would_note_about_the_augmentation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], transform: str
) -> None:
    """Each of these reflected the border in albumentations 1.x and fills it black in 2.x."""
    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("TRANSFORM", transform))
    code, _, err = run_cli(["check", str(spec)], capsys)
    name = transform.split(":")[0]
    assert code == 0 and f"note: data.augment[0].{name}: without border_mode, albumentations 2.x fills" in err


def test_check_says_why_the_augmentation_would_run_per_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("TRANSFORM", "Affine: {rotate: 10, interpolation: 0}"))
    code, _, err = run_cli(["check", str(spec)], capsys)
    assert code == 0 and ("note: augmentation runs per image in albumentations, not batched, since "
                          "data.augment[0].Affine.interpolation = 0: the batched warp is bilinear (1)") in err


def test_check_tries_the_augmentation_on_an_image_of_the_specs_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What training's dry run would refuse is knowable from the spec: the data must have its
    input shape. With alternate_flip, the pipeline training plans (the leading flip out) sets
    the note: a later flip is then its only one."""
    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("name: a\n", "name: a\ninput: {size: 16}\n").replace(
        "[TRANSFORM]", "[HorizontalFlip: {}, HorizontalFlip: {}, CoarseDropout: {hole_height_range: [20, 24], "
        "hole_width_range: [2, 4]}]\n  alternate_flip: true"))
    code, _, err = run_cli(["check", str(spec)], capsys)
    assert code == 2 and "per image" not in err and (
        "data.augment[2].CoarseDropout.hole_height_range = [20, 24]: holes of at least 20 px do not fit the images' "
        "height of 16 px") in err


def test_a_fill_albumentations_refuses_lists_blockspecs_mean_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("TRANSFORM", "CoarseDropout: {hole_height_range: [4, 4], hole_width_range: [4, 4], fill: bogus}"))
    code, _, err = run_cli(["check", str(spec)], capsys)
    assert code == 2 and "CoarseDropout.fill = 'bogus': " in err and err.endswith("; or 'mean' (the data set's mean colour)\n")


def test_input_size_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["build-summary", str(FOURBLOCKS), "-f", "json", "--input-size", "64", "64"], capsys)
    assert code == 0 and json.loads(out)["layers"][0]["out_shape"] == [8, 64, 64]


def test_verify_at_a_size_whose_maps_exceed_the_memory_is_refused_before_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 100,000² image's first 32-channel map takes 1,192 GiB: the forward pass would swap or
    be killed, not fail cleanly."""
    code, _, err = run_cli(["build-summary", str(FLAGSHIP), "--input-size", "100000", "100000", "--verify"], capsys)
    assert code == 2 and "more than the" in err and "GiB of memory available" in err, err
    assert "blocks.C1[0]: at a 100000×100000 input its output alone takes 1,192.1 GiB" in err, err


def test_verify_builds_and_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["build-summary", str(FLAGSHIP), "--verify"], capsys)
    assert code == 0 and out.endswith("✓ built module agrees: 194,666 parameters, 9 layer shapes and MACs, receptive "
                                      "field 45 (input gradients)\n")
    code, out, _ = run_cli(["build-summary", str(FLAGSHIP), "--verify", "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["verify"] == {"agrees": True, "module_params": 194_666, "receptive_field": "agrees",
                                                   "problems": []}


@pytest.mark.parametrize(
    "layers",
    ["[conv: {out: 8, padding: 0}, norm: {type: layer}, act: {type: relu}]",  # a norm of a constant map: no gradient
     "[conv: {out: 8, norm: group}, residual: {body: [conv: {out: 8}, conv: {out: 8, norm: group}], zero_init: true}]"],
)
def test_verify_counts_global_context_as_not_compared(layers: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A group or layer norm's statistics reach the whole input; the probe crashed (exit 70)
    where they left no gradient at all."""
    spec = tmp_path / "global.yaml"
    spec.write_text(f"name: g\ninput: {{size: 16}}\nblocks:\n  C1: {layers}\n"
                    "  output: [gap: {}, flatten: {}, fc: {out: 10}]\n")
    code, out, err = run_cli(["build-summary", str(spec), "--verify"], capsys)
    assert code == 0, err
    assert out.rstrip().endswith("receptive field not compared: global context (a group or layer norm, a squeeze-excite) "
                                 "reaches the whole input")


def test_check_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["check", str(FLAGSHIP)], capsys)
    assert code == 0 and "all 7 rules hold" in out
    code, out, err = run_cli(["check", str(FOURBLOCKS)], capsys)
    assert code == 1 and "✗ min_rf: receptive field 41 (need ≥ 45)" in out
    # the verdict goes where the rules and a passing verdict go: a CI log of stdout keeps it
    assert out.splitlines()[-1] == f"{FOURBLOCKS}: 1 rule(s) violated: min_rf" and err == ""


def test_check_of_several_specs_and_folders_reports_each_then_exits_by_the_worst(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As `blockspec check architectures/` in CI: a line for each spec, the rules a spec
    violates below it, a count; exit 1 if any rule fails, 2 if a spec does not load (after
    the others are checked)."""
    code, out, err = run_cli(["check", str(ROOT / "architectures")], capsys)
    files = sorted((ROOT / "architectures").rglob("*.yaml"))
    verdicts = [line for line in out.splitlines() if not line.startswith("  ")]
    assert code == 1 and err == "" and len(files) >= 7
    assert verdicts[:-1] == [line for line in verdicts if line.split(": ")[0] in map(str, files)]
    assert f"{FLAGSHIP}: all 7 rules hold" in verdicts
    assert f"{FOURBLOCKS}: 1 rule(s) violated: min_rf\n  ✗ min_rf: receptive field 41 (need ≥ 45)\n" in out
    failing = sum(line.startswith("  ✗") for line in out.splitlines())
    assert failing >= 5 and "✓" not in out.replace("✓ all", "")
    assert verdicts[-1].startswith(f"{len(files)} specs: ")

    folder = tmp_path / "specs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "good.yml").write_bytes(FLAGSHIP.read_bytes())
    (folder / "broken.yaml").write_text("name: x\nblocks: [\n")
    (folder / "notes.txt").write_text("not a spec")
    code, out, err = run_cli(["check", str(folder), str(FOURBLOCKS), str(FOURBLOCKS)], capsys)
    assert code == 2 and err.startswith(f"error: {folder / 'broken.yaml'}: invalid YAML")
    assert out.splitlines() == [
        f"{folder / 'sub' / 'good.yml'}: all 7 rules hold",
        f"{FOURBLOCKS}: 1 rule(s) violated: min_rf",
        "  ✗ min_rf: receptive field 41 (need ≥ 45)",
        "3 specs: 1 with every rule holding, 1 with rules violated, 1 not loaded",
    ]
    (folder / "broken.yaml").write_text("name: x\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n")
    code, out, _ = run_cli(["check", str(folder)], capsys)  # a spec without rules was counted as holding them
    assert code == 0 and out.splitlines()[-1] == "2 specs: 1 with every rule holding, 1 with no rules, 0 with rules violated, 0 not loaded"


def test_check_of_a_folder_without_specs_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a spec")
    code, out, err = run_cli(["check", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err == f"error: SPEC = '{tmp_path}': is a folder without .yaml or .yml files below it\n"


def test_compare_puts_each_specs_numbers_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    """Each row's numbers are the spec's own: parameters as torch counts them in the built
    module, MACs and receptive field as build-summary reports them."""
    from blockspec import build_model

    files = [FLAGSHIP, FOURBLOCKS]
    code, out, _ = run_cli(["compare", *map(str, files), "-f", "json"], capsys)
    rows = json.loads(out)
    assert code == 0 and [row["file"] for row in rows] == list(map(str, files))
    for path, row in zip(files, rows, strict=True):
        _, single, _ = run_cli(["build-summary", str(path), "-f", "json"], capsys)
        summary = json.loads(single)
        assert row == {"file": str(path), **{key: value for key, value in summary.items() if key != "layers"}}
        assert row["total_params"] == sum(p.numel() for p in build_model(load_spec(path)).parameters())
    code, md, _ = run_cli(["compare", *map(str, files), "-f", "markdown"], capsys)
    assert code == 0 and md.splitlines()[2:] == [
        f"| {FLAGSHIP} | flagship | 194,666 | {rows[0]['macs']:,} | 45 | 10 | ✓ all 7 |",
        f"| {FOURBLOCKS} | fourblocks-128k | 127,738 | {rows[1]['macs']:,} | 41 | 10 | ✗ min_rf |",
    ]
    code, table, _ = run_cli(["compare", str(FLAGSHIP), "--input-size", "64", "64"], capsys)
    assert code == 0 and f"{trace(load_spec(FLAGSHIP, input_size=(64, 64))).macs:,}" in table


BROKEN = {
    "invalid_yaml": ("name: x\nblocks: [\n", "invalid YAML at line 3"),
    "not_mapping": ("- a\n- b\n", "must be a YAML mapping"),
    "unknown_key": (
        "name: x\nblocks:\n  C1: [conv: {out: 8, dilaton: 2}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].dilaton = 2: unknown field; did you mean 'dilation'?",
    ),
    "unknown_kind": (
        "name: x\nblocks:\n  C1: [cnov: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0]: unknown layer kind 'cnov'; did you mean 'conv'?",
    ),
    "wrong_type": (
        "name: x\nblocks:\n  C1: [conv: {out: '16'}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].out = '16': Input should be a valid integer",
    ),
    "bad_dilation": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}]\n  C2: [conv: {out: 8}, dilated: {out: 8, dilation: 1}]\n"
        "  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C2[1].dilation = 1: Input should be greater than or equal to 2",
    ),
    "kernel_too_big": (
        "name: x\nblocks:\n  C1: [conv: {out: 8, k: 40, padding: 0}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0]: kernel 40 with dilation 1 spans 40 pixels but the padded input is only 32×32",
    ),
    "map_vanishes": (
        "name: x\nblocks:\n  C1: [strided: {out: 8, padding: 0, repeat: 5}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0]: (repetition 5 of 5, on a 8×1×1 input) kernel 3 with dilation 1 spans 3 pixels but the padded input is only 1×1",
    ),
    "groups": (
        "name: x\nblocks:\n  C1: [conv: {out: 9, groups: 2}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].groups = 2: groups must divide both input channels (3) and out (9)",
    ),
    "se_too_narrow": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}, se: {reduction: 16}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[1].reduction = 16: leaves no hidden units for 8 channels; use at most 8",
    ),
    "group_norm_on_vector": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, flatten: {}, norm: {type: group}, fc: {out: 10}]\n",
        "blocks.output[2].type = 'group': group norm over 8 channel(s) of a vector has one value per group",
    ),
    "zero_init_without_norm": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}, residual: {body: [conv: {out: 8, norm: none}], zero_init: true}]\n"
        "  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[1].zero_init = True: needs a normalised layer in the body",
    ),
    "fc_before_pool": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}, fc: {out: 10}]\n",
        "blocks.C1[1]: 'fc' needs a pooled map (C×1×1) or a vector, but receives 8×32×32",
    ),
    "zero_channels": (
        "name: x\nblocks:\n  C1: [conv: {out: 0}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].out = 0: Input should be greater than 0",
    ),
    "wrong_class_count": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 7}]\n",
        "must end in 10 class scores",
    ),
    "missing_name": ("blocks:\n  output: [gap: {}, fc: {out: 10}]\n", "name: Field required"),
    "python_tag": ("!!python/object/apply:os.system ['echo pwned']\n", "could not determine a constructor"),
    "same_with_stride": (
        "name: x\nblocks:\n  C1: [conv: {out: 8, stride: 2, padding: same}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].padding = 'same': 'same' needs stride 1",
    ),
    "fc_vector_into_conv": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}, gap: {}, flatten: {}, conv: {out: 10}]\n",
        "blocks.C1[3]: 'conv' needs a feature map (C×H×W) but receives a vector of 8 features",
    ),
    "residual_mismatch": (
        "name: x\nblocks:\n  C1: [residual: {body: [conv: {out: 8}, conv: {out: 8, padding: 0}]}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0]: the body maps 32×32 to 30×30 with total stride 1, but the shortcut gives 32×32 "
        "(blocks.C1[0].body[1] maps 32×32 to 30×30)",
    ),
    "tta_shift_too_big": (
        "name: x\ninput: {size: 4}\nblocks:\n  output: [gap: {}, fc: {out: 10}]\ntrain: {tta_shift: 4}\n",
        "train.tta_shift = 4: must be smaller than the input's side (4)",
    ),
    "padding_neither_word_nor_number": (  # one line for a union's members, not one each
        "name: x\nblocks:\n  C1: [conv: {out: 8, padding: autox}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].padding = 'autox': Input should be 'auto' or 'same', or a valid integer",
    ),
    "mid_act_unknown": (
        "name: x\nblocks:\n  C1: [dws: {out: 8, mid_act: gelux}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].mid_act = 'gelux': Input should be a valid boolean, or 'relu', 'relu6', 'leaky_relu', 'gelu'",
    ),
    "mid_act_without_act": (
        "name: x\nblocks:\n  C1: [dws: {out: 8, act: none, mid_act: true}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].mid_act = True: true inserts this layer's act, which is 'none'; name an activation instead",
    ),
    "duplicate_key": (  # PyYAML would keep the second C1 and drop the first without a word
        "name: x\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n  C1: [conv: {out: 4}]\n",
        "invalid YAML at line 5, column 3: the key 'C1' is written twice in one mapping",
    ),
    "block_named_like_a_module_attribute": (
        "name: x\nblocks:\n  training: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.training = 'training': an attribute of the built nn.Module (model.training); rename the block",
    ),
    "group_norm_inside_dws": (
        "name: x\ndefaults: {norm: group, norm_groups: 4}\nblocks:\n  C1: [dws: {out: 8, mid_norm: true}]\n"
        "  output: [gap: {}, fc: {out: 10}]\n",
        "needs a channel count divisible by 4; its depthwise output (mid_norm) has 3",
    ),
    "unknown_rule_feature": (
        "name: x\nblocks:\n  output: [gap: {}, fc: {out: 10}]\nrules: {require: [dsw]}\n",
        "rules.require = ['dsw']: unknown feature(s) ['dsw']",
    ),
    "channels_beyond_torch": (  # torch would overflow building it, not refuse it
        "name: x\nblocks:\n  C1: [conv: {out: 100000000000000000000}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].out = 100000000000000000000: Input should be less than or equal to 2147483647",
    ),
    "seed_beyond_the_generators": (
        "name: x\nblocks:\n  output: [gap: {}, fc: {out: 10}]\ntrain: {seed: 9223372036854775808}\n",
        "train.seed = 9223372036854775808: Input should be less than or equal to 2147483647",
    ),
    "infinite_rate": (  # would pass as a rate and turn the loss to nan at the first step
        "name: x\nblocks:\n  output: [gap: {}, fc: {out: 10}]\ntrain: {optimizer: {lr: .inf}}\n",
        "train.optimizer.lr = inf: Input should be a finite number",
    ),
    "quoted_number": (  # a string in the file stays a string: values are not coerced
        "name: x\nblocks:\n  C1: [conv: {out: 8, dropout: \"0.5\"}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].dropout = '0.5': Input should be a valid number",
    ),
    "kind_outside_a_layer": (
        "name: x\ninput: {kind: x}\nblocks:\n  output: [gap: {}, fc: {out: 10}]\n",
        "input.kind = 'x': unknown field; allowed: channels, size",
    ),
    "block_named_blocks": (
        "name: x\nblocks:\n  blocks: [conv: {out: 0}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.blocks[0].out = 0: Input should be greater than 0",
    ),
    "rules_list_entry": (
        "name: x\nblocks:\n  output: [gap: {}, fc: {out: 10}]\nrules: {blocks: [output, 5]}\n",
        "rules.blocks[1] = 5: Input should be a valid string",
    ),
    "number_as_top_level_key": (
        "name: x\n5: 1\nblocks:\n  output: [gap: {}, fc: {out: 10}]\n",
        "5 = 1: unknown field; allowed: name, description",
    ),
    "empty_section": (
        "name: x\nblocks:\n  output: [gap: {}, fc: {out: 10}]\nrules:\n",
        "rules = None: Input should be a mapping of fields (`key: value` lines)",
    ),
    "nested_too_deeply": (
        "name: x\ndescription: " + "[" * 2000 + "]" * 2000 + "\n",
        "invalid YAML: nested too deeply",
    ),
    "fields_level_with_their_kind": (
        "name: x\nblocks:\n  C1:\n    - conv:\n      out: 16\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0]: each layer is a one-key mapping such as `conv: {out: 16}`; found the keys conv, out: indent the "
        "fields under `conv:`, or write `conv: {out: …}`",
    ),
    "kind_as_a_field": (
        "name: x\nblocks:\n  C1: [conv: {out: 16, kind: conv}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "'kind' is not a field of 'conv': the kind is the key (`conv: {...}`)",
    ),
    "empty_block": ("name: x\nblocks:\n  C1: []\n  output: [gap: {}, fc: {out: 10}]\n", "blocks.C1 = []: a block needs at least one layer"),
    "head_of_another_width": (
        "name: x\nblocks:\n  output: [gap: {}, fc: {out: 100}, logsoftmax: {}]\n",
        "blocks.output[1]: the network must end in 10 class scores (classes: 10), but its last layer outputs 100",
    ),
    "pool_padding_same": (
        "name: x\nblocks:\n  C1: [pool: {padding: same}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].padding = 'same': a pool's padding is a number of pixels, 0 to ⌊k/2⌋",
    ),
    "one_side_in_a_list": ("name: x\ninput: {size: [32]}\nblocks:\n  output: [gap: {}, fc: {out: 10}]\n",
                           "input.size = [32]: an integer (a square image) or [H, W]"),
    "dilation_beyond_torch": (
        "name: x\nblocks:\n  C1: [dilated: {out: 8, dilation: 99999999999}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].dilation = 99999999999: Input should be less than or equal to 2147483647",
    ),
    "torch_field_names": (
        "name: x\nblocks:\n  C1: [conv: {out_channels: 16, kernel_size: 3}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0].out_channels = 16: unknown field; did you mean 'out'? allowed: repeat, norm, act, order, dropout, bias, "
        "out, k, stride, dilation, padding, groups, padding_mode; also unknown: kernel_size (did you mean 'k'?)",
    ),
    "torch_layer_name": (
        "name: x\nblocks:\n  C1: [bn: {}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[0]: unknown layer kind 'bn'; did you mean 'norm: {type: batch}'?",
    ),
    "activation_as_a_layer": (
        "name: x\nblocks:\n  C1: [conv: {out: 8}, relu: {}]\n  output: [gap: {}, fc: {out: 10}]\n",
        "blocks.C1[1]: unknown layer kind 'relu'; did you mean 'act: {type: relu}'?",
    ),
    "value_in_torchs_spelling": (
        "name: x\ndefaults: {act: ReLU}\nblocks:\n  output: [gap: {}, fc: {out: 10}]\n",
        "defaults.act = 'ReLU': Input should be 'relu', 'relu6', 'leaky_relu', 'gelu', 'silu', 'hardswish' or 'none'; "
        "did you mean 'relu'?",
    ),
    "rule_feature_misnamed": (
        "name: x\nblocks:\n  output: [gap: {}, fc: {out: 10}]\nrules: {forbid: [max_pool, sepconv]}\n",
        "rules.forbid = ['max_pool', 'sepconv']: unknown feature(s) ['max_pool', 'sepconv'] (did you mean "
        "max_pool → maxpool, sepconv → dws?)",
    ),
    "aliases_multiplying": (  # 511 bytes whose full repr would be 10^8 items long: refused before it is validated
        "name: x\ndescription:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8))
        + "blocks:\n  output: [gap: {}, fc: {out: 10}]\n",
        "more than 100,000 values once its YAML aliases are followed",
    ),
}


@pytest.mark.parametrize("command", ["build-summary", "check"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_specs_exit_2_with_located_message(
    case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BROKEN[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    code, out, err = run_cli([command, str(path)], capsys)
    assert code == 2
    assert err.startswith(f"error: {path}: ")
    assert expected in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("command", ["check", "train", "preview-augment"])
def test_an_augmentation_albumentations_refuses_names_the_file(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` vouches for the whole spec, and training fails before touching any data."""
    path = tmp_path / "badaug.yaml"
    path.write_text(FLAGSHIP.read_text(encoding="utf-8").replace("translate_percent: [-0.125, 0.125]", "translate_percent: abc"), encoding="utf-8")
    data_flags = [] if command == "check" else ["--data-root", str(tmp_path / "no-data")]
    code, out, err = run_cli([command, str(path), *data_flags], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert err == (
        f"error: {path}: data.augment[1].Affine.translate_percent = 'abc': Input should be a valid "
        "tuple, or a valid number, unable to parse string as a number, or a valid dictionary\n"
    )
    assert not (tmp_path / "no-data").exists()


def test_preview_refuses_an_out_it_cannot_write_and_rows_it_cannot_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before the data set is read (it is not even there)."""
    (tmp_path / "a-file").write_text("")
    data = ["--data-root", str(tmp_path / "no-data")]
    for out, message in [(tmp_path, "is a folder; give the file to write"),
                         (tmp_path / "a-file" / "p.png", f"{tmp_path / 'a-file'} is a file, not a folder")]:
        code, _, err = run_cli(["preview-augment", str(FLAGSHIP), *data, "--out", str(out)], capsys)
        assert (code, err) == (2, f"error: --out = '{out}': {message}\n")
    for flag, value in [("--images", "0"), ("--images", "65"), ("--seed", "-1")]:
        code, out, err = run_cli(["preview-augment", str(FLAGSHIP), *data, flag, value], capsys)
        assert code == 2 and f"Invalid value for '{flag}'" in out + err and "Traceback" not in out + err


@pytest.mark.parametrize(
    ("augment", "flags", "says"),
    [
        ("HorizontalFlip: {p: 0.5}, Affine: {translate_px: [-2, 2], p: 1.0}", [], "(batched tensor augmentation)"),
        ("HorizontalFlip: {p: 0.5}, Affine: {translate_px: [-2, 2], p: 1.0}", ["--loader", "albumentations"],
         "(per-image albumentations augmentation)"),
        ("Affine: {rotate: 5, interpolation: 0}", [], "(per-image albumentations augmentation)"),
    ],
)
def test_preview_draws_by_the_path_training_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], augment: str, flags: list[str], says: str
) -> None:
    from PIL import Image

    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("[TRANSFORM]", f"[{augment}]").replace("name: a\n", "name: a\ninput: {size: 16}\n"))
    out = tmp_path / "preview.png"
    data = ["--dataset", "imagefolder", "--data-root", str(write_colour_folder(tmp_path / "data"))]
    code, stdout, err = run_cli(["preview-augment", str(spec), *data, "--out", str(out), "--images", "2", *flags], capsys)
    assert code == 0 and f"wrote {out} {says}" in stdout, err
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_preview_takes_set_edits_to_try_an_augmentation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As build-summary, check, train and eval do: an edited augmentation is previewed as
    training would draw it, and a bad edited value names the edit."""
    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("[TRANSFORM]", "[Affine: {translate_px: [-2, 2], p: 1.0}]")
                    .replace("name: a\n", "name: a\ninput: {size: 16}\n"))
    data = ["--dataset", "imagefolder", "--data-root", str(write_colour_folder(tmp_path / "data")), "--images", "2"]
    edit = "data.augment[0].Affine.rotate=5"
    code, stdout, err = run_cli(["preview-augment", str(spec), *data, "--out", str(tmp_path / "p.png"), "--set", edit], capsys)
    assert code == 0 and "(batched tensor augmentation)" in stdout, err
    code, stdout, err = run_cli(["preview-augment", str(spec), *data, "--out", str(tmp_path / "p.png"), "--set",
                                 "data.augment[0].Affine.interpolation=0"], capsys)
    assert code == 0 and "(per-image albumentations augmentation)" in stdout, err
    code, _, err = run_cli(["preview-augment", str(spec), *data, "--set", "data.augment[0].Affine.p=3"], capsys)
    assert code == 2 and err.startswith(f"error: {spec} with --set data.augment[0].Affine.p=3: data.augment[0]"), err


def test_preview_with_the_batched_path_forced_names_what_keeps_it_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("TRANSFORM", "Affine: {rotate: 5, interpolation: 0}"))
    code, _, err = run_cli(["preview-augment", str(spec), "--loader", "gpu", "--data-root", str(tmp_path)], capsys)
    assert code == 2 and "data.augment[0].Affine.interpolation = 0: the batched warp is bilinear (1)" in err


FLAT = "name: flat\ninput: {channels: 1, size: 8}\nblocks:\n  C1: [conv: {out: 4}]\n  output: [flatten: {}, fc: {out: 10}]\n"


def test_check_points_out_colour_transforms_on_a_gray_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "gray.yaml"
    spec.write_text(FLAT + "data:\n  augment: [ToGray: {p: 0.2}, HorizontalFlip: {}]\n")
    code, _, err = run_cli(["check", str(spec)], capsys)
    assert code == 0, err
    assert "note: data.augment[0].ToGray: changed no image of 1 channel (input.channels)" in err


def summary_json(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """`build-summary --format json` of a spec written from `text`, which must load."""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, out, err = run_cli(["build-summary", str(path), "--format", "json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_x_keys_hold_what_anchors_point_at_and_are_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ("name: m\nx-unit: &unit [conv: {out: 8}, conv: {out: 8}]\nblocks:\n  C1: *unit\n  C2: *unit\n"
            "  output: [gap: {}, fc: {out: 10}]\n")
    layers = summary_json(text, tmp_path, capsys)["layers"]
    assert [layer["name"] for layer in layers] == ["C1.0", "C1.1", "C2.0", "C2.1", "output.0", "output.1"]


def test_yaml_anchors_and_merge_keys_still_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Refusing a key written twice must not refuse a key that overrides a merged one."""
    text = "name: m\nblocks:\n  C1: [conv: &c {out: 8, k: 3}, conv: {<<: *c, out: 16}]\n  output: [gap: {}, fc: {out: 10}]\n"
    layers = summary_json(text, tmp_path, capsys)["layers"]
    assert [layer["out_shape"][0] for layer in layers[:2]] == [8, 16]


def test_input_size_is_the_spec_at_that_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--input-size analyses, verifies and reports errors as if the file said that size: a
    flatten head's fc then has other weights, and the built module must agree."""
    path = tmp_path / "flat.yaml"
    path.write_text(FLAT)
    code, out, err = run_cli(["build-summary", str(path), "--input-size", "12", "12", "--verify"], capsys)
    assert code == 0, err
    assert "input 1×12×12" in out and "5,818 parameters" in err + out  # conv 4·9+4, its BN 8, fc 576·10+10
    assert "✓ built module agrees" in err + out
    code, _, err = run_cli(["build-summary", str(path), "--input-size", "0", "12"], capsys)
    assert code == 2 and err == (
        f"error: {path} with --input-size 0 12: input.size[0] = 0: Input should be greater than 0\n"
    )


def test_dropout_in_exponent_notation_is_a_number_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PyYAML reads 1e-1 (no dot) as a string; every dropout field takes it as 0.1."""
    text = (
        "name: d\nblocks:\n  C1: [conv: {out: 8, dropout: 1e-1}, dropout: {p: 1e-1}]\n"
        "  output: [gap: {}, fc: {out: 10, dropout: 1e-1}]\n"
    )
    assert summary_json(text, tmp_path, capsys)["total_params"] > 0


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(["check", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "nope.yaml: file not found" in err


def test_unreadable_files_are_named_with_the_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "utf16.yaml").write_bytes("name: x\n".encode("utf-16"))
    expected = {
        tmp_path / "a-file" / "spec.yaml": "cannot read the file (NotADirectoryError: Not a directory)",
        tmp_path / f"{'n' * 300}.yaml": "cannot read the file (OSError: File name too long)",
        tmp_path: "cannot read the file (IsADirectoryError: Is a directory)",
        tmp_path / "utf16.yaml": "not UTF-8 text (byte 0); save the spec as UTF-8",
    }
    for path, message in expected.items():
        code, out, err = run_cli(["build-summary", str(path)], capsys)
        assert (code, err) == (2, f"error: {path}: {message}\n"), out


def test_exponent_notation_is_a_number_in_every_float_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "name: d\nblocks:\n  output: [gap: {}, fc: {out: 10}]\ntrain: {scheduler: {name: cosine, warmup_epochs: 5e-1}}\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    assert load_spec(path).train.scheduler.warmup_epochs == 0.5


def test_module_entry_point_runs_without_traceback(tmp_path: Path) -> None:
    """The real interpreter, as a user would call it: `python -m blockspec`."""
    path = tmp_path / "bad.yaml"
    path.write_text(BROKEN["unknown_kind"][0])
    result = subprocess.run(
        [sys.executable, "-m", "blockspec", "build-summary", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "unknown layer kind 'cnov'" in result.stderr and "Traceback" not in result.stderr


def test_check_of_several_specs_names_the_spec_each_note_is_about(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text(AUGMENTED.replace("TRANSFORM", "GridDistortion: {}"))
    code, _, err = run_cli(["check", str(spec), str(FLAGSHIP)], capsys)
    assert code == 0, err
    assert f"note: {spec}: data.augment[0].GridDistortion: without border_mode" in err


def test_compare_takes_set_edits(capsys: pytest.CaptureFixture[str]) -> None:
    edit = "blocks.C1[0].conv.out=24"
    code, out, err = run_cli(["compare", str(FLAGSHIP), "-f", "json", "--set", edit], capsys)
    expected = trace(load_spec(FLAGSHIP, edits=[edit])).total_params
    assert code == 0, err
    assert json.loads(out)[0]["total_params"] == expected != 194_666


def test_eval_with_a_spec_file_of_other_weights_blames_the_spec_not_its_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from blockspec import build_model
    from blockspec.train.checkpoint import save_atomic
    from tests.test_cli import FOURBLOCKS

    spec = load_spec(FOURBLOCKS)
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "epoch": 1}, tmp_path / "best.pt")
    code, _, err = run_cli(["eval", str(FLAGSHIP), "--checkpoint", str(tmp_path / "best.pt"),
                            "--data-root", str(tmp_path / "no-data")], capsys)
    assert code == 2 and err.startswith(f"error: SPEC = '{FLAGSHIP}': builds other weights than {tmp_path / 'best.pt'} holds")


def test_export_refuses_a_file_whose_last_row_differs_slightly_below_torchs() -> None:
    """A traced network that subtracts 1e-3 from the last row's scores: 10× the tolerance,
    negative, and not in the first row; the check must see all three."""
    import torch

    from blockspec import parse_spec
    from blockspec.errors import SpecError
    from blockspec.export import export_model

    class LastRowLower(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scores = x.mean(dim=(2, 3))
            if torch.jit.is_tracing():  # only in the exported program
                scores = torch.cat([scores[:-1], scores[-1:] - 1e-3])
            return scores

    spec = parse_spec("name: t\ninput: {size: 8}\nblocks:\n  output: [gap: {}, fc: {out: 10}]\n")
    with pytest.raises(SpecError) as raised:
        export_model(LastRowLower(), spec, "torchscript", {})
    assert str(raised.value) == "export: the exported model differs from torch by 1.00e-03 (> 0.0001)"


def test_export_checks_the_file_on_a_batch_other_than_the_one_it_was_traced_with() -> None:
    """The file was checked on the very batch it was traced from: a trace that turned the
    batch size into a constant passed, and failed at any other batch."""
    import torch

    from blockspec import parse_spec
    from blockspec.errors import SpecError
    from blockspec.export import export_model

    class BatchInReshape(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).reshape(int(x.shape[0]), -1)  # int(): a constant in a trace

    class BatchInZeros(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(int(x.shape[0]), 3) + x.mean()

    spec = parse_spec("name: t\ninput: {size: 8}\nblocks:\n  output: [gap: {}, fc: {out: 10}]\n")
    for model, says in (
        (BatchInReshape(), "export: the exported file fails on a batch of 3 images, which torch's model runs: "
                           "RuntimeError: shape '[4, -1]' is invalid for input of size 9"),
        (BatchInZeros(), "export: the exported file gives scores of shape [4, 3] for a batch of 3 images, "
                         "torch's model [3, 3]"),
    ):
        with pytest.warns(torch.jit.TracerWarning), pytest.raises(SpecError) as raised:
            export_model(model, spec, "torchscript", {})
        assert str(raised.value) == says


def test_eval_blames_the_data_root_when_both_data_flags_chose_data_that_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from blockspec import build_model, parse_spec
    from blockspec.train.checkpoint import save_atomic
    from tests.synthetic import tiny_spec_text, write_colour_folder

    spec = parse_spec(tiny_spec_text(tmp_path / "data"))  # 3×16×16 input
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "epoch": 1}, tmp_path / "best.pt")
    small = write_colour_folder(tmp_path / "small", train_per_class=1, test_per_class=2, size=8)
    code, _, err = run_cli(["eval", "--checkpoint", str(tmp_path / "best.pt"), "--dataset", "imagefolder",
                            "--data-root", str(small)], capsys)
    assert code == 2 and err.startswith(f"error: --data-root = '{small}': the spec expects 3×16×16 images"), err


def test_export_names_every_test_time_view_it_leaves_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from blockspec import build_model, parse_spec
    from blockspec.train.checkpoint import save_atomic

    spec = parse_spec("name: t\nblocks:\n  C1: [conv: {out: 4}]\n  output: [gap: {}, fc: {out: 10}]\n"
                      "train: {tta_flip: true, tta_shift: 2}\n")
    save_atomic({"model": build_model(spec).state_dict(), "spec": spec.to_yaml(), "epoch": 1}, tmp_path / "best.pt")
    code, stdout, err = run_cli(["export", "--checkpoint", str(tmp_path / "best.pt"), "--out", str(tmp_path / "t.ts")], capsys)
    assert code == 0, err
    assert "without the test-time views (tta_flip, tta_shift)" in stdout


def test_a_negative_worker_count_is_refused_before_any_data_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.synthetic import tiny_spec_text

    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(tmp_path / "no-data"))
    code, _, err = run_cli(["train", str(spec), "--workers", "-1", "--out", str(tmp_path / "run")], capsys)
    assert (code, err) == (2, "error: --workers = -1: must be 0 or more\n")
    assert not (tmp_path / "run").exists()


def test_compare_shows_the_specs_that_load_and_names_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As check does: a spec that does not load is named on stderr, the rest still compared, exit 2."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nblocks: [\n")
    code, out, err = run_cli(["compare", str(FLAGSHIP), str(broken), str(FOURBLOCKS), "-f", "json"], capsys)
    assert code == 2 and err.startswith(f"error: {broken}: invalid YAML")
    assert [row["name"] for row in json.loads(out)] == ["flagship", "fourblocks-128k"]


def test_compares_markdown_escapes_a_bar_in_a_name_or_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "x|y.yaml"
    spec.write_text(FLAGSHIP.read_text(encoding="utf-8").replace("name: flagship", 'name: "a|b"'), encoding="utf-8")
    code, out, _ = run_cli(["compare", str(spec), "-f", "markdown"], capsys)
    row = out.splitlines()[2]
    assert code == 0 and row.startswith(f"| {str(spec).replace('|', chr(92) + '|')} | a\\|b | 194,666 |")
    assert row.replace("\\|", "").count("|") == 8  # seven cells


def test_a_folder_search_skips_hidden_folders_follows_links_once_and_takes_each_file_once(tmp_path: Path) -> None:
    from blockspec.load import spec_files

    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text("not a spec")
    (tmp_path / ".draft.yaml").write_text("not a spec")
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.yaml").write_bytes(FLAGSHIP.read_bytes())
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(tmp_path, target_is_directory=True)  # a link back up the tree
    found = spec_files([tmp_path, real / "a.yaml", Path(str(real) + "/../real/a.yaml")])
    assert found == [tmp_path / "linked" / "a.yaml"]  # the same file by four names: once, as first met
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "specs").symlink_to(real, target_is_directory=True)
    assert spec_files([tmp_path / "only"]) == [tmp_path / "only" / "specs" / "a.yaml"]


def test_an_unforeseen_exception_is_an_internal_error_with_exit_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """EX_SOFTWARE and a request for the traceback, never the traceback itself; with
    BLOCKSPEC_DEBUG set the exception goes on to the caller. PyYAML is made to fail: a third
    party's failure blockspec has no message for."""
    import yaml

    def broken_load(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(yaml, "load", broken_load)
    monkeypatch.delenv("BLOCKSPEC_DEBUG", raising=False)
    code, _, err = run_cli(["check", str(FLAGSHIP)], capsys)
    assert code == 70
    assert err == ("internal error: RuntimeError: injected\n"
                   "This is a bug in blockspec; rerun with BLOCKSPEC_DEBUG=1 for the traceback.\n")
    monkeypatch.setenv("BLOCKSPEC_DEBUG", "1")
    with pytest.raises(RuntimeError, match="injected"):
        run_cli(["check", str(FLAGSHIP)], capsys)


def test_eval_names_a_bad_spec_file_before_a_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As every command taking a SPEC names the file's problems first."""
    spec = tmp_path / "bad.yaml"
    spec.write_text((ROOT / "architectures" / "flagship.yaml").read_text().replace("conv: {out: 32}", "conv: {out: 32, bogus: 1}", 1))
    code, _, err = run_cli(["eval", str(spec), "--checkpoint", str(tmp_path / "missing.pt")], capsys)
    assert code == 2 and "bad.yaml: blocks.C1[0].bogus" in err, err
