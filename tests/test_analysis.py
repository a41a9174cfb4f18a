"""The analysis (no torch) must equal the built module: parameters, shapes, receptive field.

Checked on every spec in the repository and on a few hundred generated specs.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

from blockspec import SpecError, build_model, parse_spec, summarize
from blockspec.analysis import trace
from blockspec.field_probe import check_fields
from blockspec.verify import Measured, measure_layers
from tests.rf_probe import measured_window

ROOT = Path(__file__).resolve().parents[1]
REPO_SPECS = sorted((ROOT / "architectures").rglob("*.yaml"))


def assert_analysis_matches_module(spec_text: str) -> None:
    spec = parse_spec(spec_text)
    analysis = trace(spec)
    model = build_model(spec)
    assert sum(p.numel() for p in model.parameters()) == analysis.total_params
    assert measure_layers(model, analysis) == [Measured(row.out_shape, row.macs) for row in analysis.rows]
    first, last, centre, probed = measured_window(spec)
    row = probed.rf_row
    assert last - first + 1 == row.rf == analysis.receptive_field
    assert first == row.field.start + centre * row.jump
    assert check_fields(spec).status == "agrees"  # as --verify measures it


def test_repository_has_specs() -> None:
    assert len(REPO_SPECS) >= 7


@pytest.mark.parametrize("path", REPO_SPECS, ids=lambda p: p.stem)
def test_repository_spec_matches_module(path: Path) -> None:
    assert_analysis_matches_module(path.read_text())


def test_per_layer_params_match_module_children() -> None:
    spec = parse_spec((ROOT / "architectures/reference/fourblocks-128k.yaml").read_text())
    model = build_model(spec)
    layers = [layer for block in model for layer in block]
    counts = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    assert counts == [row.params for row in trace(spec).rows]


def _random_layer(rng: random.Random, channels: int, depth: int = 0) -> dict:
    width = rng.choice([4, 8, 12, 16])
    kind = rng.choice(["conv", "conv", "dws", "dilated", "strided", "pool", "residual", "norm", "se"])
    if kind == "residual" and depth == 0:
        body = []
        for _ in range(rng.randint(1, 2)):
            body.append(_random_layer(rng, channels, depth + 1))
            channels = _out_channels(body[-1], channels)
        return {"residual": {"body": body, "act": rng.choice(["relu", "none"])}}
    if kind in {"residual", "norm"}:
        return {"norm": {}} if depth == 0 else {"conv": {"out": width}}
    if kind == "se":
        return {"se": {"reduction": rng.choice([1, 2, 4]), "act": rng.choice(["relu", "silu", "none"])}}
    if kind == "pool":
        k = rng.choice([2, 3])
        return {"pool": {"type": rng.choice(["max", "avg"]), "k": k, "stride": rng.choice([1, 2]),
                         "padding": rng.choice([0, k // 2])}}
    args: dict = {"out": width, "k": rng.choice([1, 3, 3, 3, 5])}
    if kind != "strided":
        args["stride"] = rng.choice([1, 1, 1, 2])
    if kind != "dilated":
        args["dilation"] = rng.choice([1, 1, 2, 3])
    else:
        args["dilation"] = rng.choice([2, 3])
    args["padding"] = "auto" if depth else rng.choice(["auto", "auto", "auto", 0, 1, 2])
    args["act"] = rng.choice(["relu", "gelu", "silu", "none"])
    args["order"] = rng.choice(["conv-norm-act", "conv-act-norm"])
    args["bias"] = rng.choice([True, False])
    args["repeat"] = rng.choice([1, 1, 1, 2])
    if kind == "dws":
        args["multiplier"] = rng.choice([1, 2])
        args["mid_norm"] = rng.choice([True, False])
        args["mid_act"] = rng.choice([True, False, "silu", "none"])
        if args["mid_act"] is True and args["act"] == "none":
            args["mid_act"] = "gelu"
    elif rng.random() < 0.3 and channels % 2 == 0:
        args["groups"] = 2
    return {kind: args}


def _out_channels(layer: dict, channels: int) -> int:
    ((kind, args),) = layer.items()
    if kind == "residual":
        return _out_channels(args["body"][-1], channels)
    return args.get("out", channels)


def random_spec_text(seed: int) -> str:
    rng = random.Random(seed)
    blocks: dict[str, list[dict]] = {}
    channels = 3
    for name in ("C1", "C2", "C3"):
        blocks[name] = []
        for _ in range(rng.randint(1, 3)):
            blocks[name].append(_random_layer(rng, channels))
            channels = _out_channels(blocks[name][-1], channels)
    head = rng.choice(
        [
            [{"gap": {}}, {"fc": {"out": 10}}],
            [{"conv": {"out": 10, "k": 1, "norm": "none", "act": "none"}}, {"gap": {}}, {"flatten": {}}],
            [{"gap": {}}, {"norm": {}}, {"fc": {"out": 16, "act": "relu"}}, {"fc": {"out": 10}}, {"logsoftmax": {}}],
        ]
    )
    blocks["output"] = head
    return yaml.safe_dump({"name": f"generated-{seed}", "input": {"size": 32}, "blocks": blocks})


def test_generated_specs_match_module() -> None:
    """Random stacks of every kind; impossible ones must be refused with a SpecError."""
    torch.manual_seed(0)
    built = refused = 0
    for seed in range(200):
        text = random_spec_text(seed)
        try:
            parse_spec(text)
        except SpecError as error:
            refused += 1
            assert error.problems and error.problems[0].path.startswith("blocks."), str(error)
            continue
        assert_analysis_matches_module(text)
        built += 1
    assert built >= 120 and refused >= 20, (built, refused)


def test_input_size_changes_shapes_not_local_geometry() -> None:
    text = (ROOT / "architectures/reference/fourblocks-128k.yaml").read_text()
    spec = parse_spec(text)
    at_64 = summarize(parse_spec(text, input_size=(64, 64))).to_dict()
    assert at_64["input_shape"] == [3, 64, 64]
    assert at_64["layers"][3]["out_shape"] == [32, 32, 32]
    assert at_64["total_params"] == 127_738
    assert at_64["receptive_field"] == 41
    fc_macs = 64 * 10
    assert at_64["macs"] == 4 * (summarize(spec).to_dict()["macs"] - fc_macs) + fc_macs


def test_dws_mid_act_can_name_an_activation_where_the_layer_has_none() -> None:
    """A residual body's last layer adds before activating (`act: none`) but may still want an
    activation between its depthwise and pointwise convolutions."""
    text = (
        "name: x\nblocks:\n  C1:\n    - conv: {out: 8}\n    - residual:\n        body:\n"
        "          - dws: {out: 8, mid_norm: true, act: none, mid_act: silu}\n"
        "  output: [gap: {}, fc: {out: 10}]\n"
    )
    assert_analysis_matches_module(text)
    (layer,) = build_model(parse_spec(text))[0][1].body
    assert [type(part).__name__ for part in layer] == [
        "DepthwiseConv2d", "BatchNorm2d", "SiLU", "Conv2d", "BatchNorm2d"
    ]
    with pytest.raises(SpecError, match=r"blocks\.C1\[1\]\.body\[0\]\.mid_act"):
        parse_spec(text.replace("mid_act: silu", "mid_act: true"))


@pytest.mark.parametrize(
    ("last", "says"),
    [("dws: {out: 32, dilation: 8}", "blocks.C4[0]: 2 of its 3 taps along its input's 8 rows only ever read padding "
                                     "(dilation 8, padding 8); the receptive field (81 after it) counts them"),
     ("dws: {out: 32, dilation: 4}", None),  # its outer taps reach the 8×8 map from its edge units
     ("strided: {out: 32, stride: 8, k: 8, padding: 0}, strided: {out: 32}",  # the 8×8 map to 1×1, then a 3×3 on it
      "blocks.C4[1]: 2 of its 3 taps along its input's 1 rows")],
)
def test_taps_that_only_ever_read_padding_are_pointed_out(last: str, says: str | None) -> None:
    """A 3×3 dilated by 8 on an 8×8 map reads one pixel and padding: `min_rf` passed on a field
    of 81 whose outer rows no image pixel fills (a helper's gradient probe: 23 rows at most)."""
    from blockspec.analysis import padding_only_taps
    from blockspec.load import load_spec

    spec = parse_spec("name: p\nblocks:\n  C1: [conv: {out: 8}, strided: {out: 16}]\n  C2: [strided: {out: 16}]\n"
                      f"  C3: [conv: {{out: 16}}]\n  C4: [{last}]\n  output: [gap: {{}}, fc: {{out: 10}}]\n")
    notes = padding_only_taps(trace(spec))
    assert (notes[0].startswith(says) if says else notes == []), notes
    assert padding_only_taps(trace(load_spec(ROOT / "architectures" / "flagship.yaml"))) == []


def test_the_field_is_measured_at_the_specs_own_size_where_no_larger_one_builds() -> None:
    """An fc reading the 1×1 map takes one input size only: the probe tried larger ones alone
    and said no size put the window inside the image, where the spec's own does."""
    spec = parse_spec("name: f\ninput: {size: 16}\nblocks:\n  C1: [strided: {out: 16, k: 4, stride: 4, padding: 0}, "
                      "strided: {out: 32, k: 4, stride: 4, padding: 0}]\n  output: [fc: {out: 10}]\n")
    field = check_fields(spec)
    assert field.agrees and not field.problems, field.status


def test_a_repeated_layers_problem_names_the_repetition_that_meets_it() -> None:
    """The message spoke of a 1×1 input, of a layer whose first copy reads 32×32; also inside
    a residual body."""
    with pytest.raises(SpecError, match=r"blocks\.C1\[1\]: \(repetition 5 of 6, on a 16×1×1 input\) kernel 3"):
        parse_spec("name: r\nblocks:\n  C1: [conv: {out: 8}, strided: {out: 16, padding: 0, repeat: 6}]\n"
                   "  output: [gap: {}, fc: {out: 10}]\n")
    with pytest.raises(SpecError, match=r"blocks\.C1\[1\]\.body\[0\]: \(repetition 4 of 6, on a 8×4×4 input\) kernel 5"):
        parse_spec("name: r\ninput: {size: 16}\nblocks:\n  C1: [conv: {out: 8}, "
                   "residual: {body: [conv: {out: 8, k: 5, padding: 0, repeat: 6}]}]\n  output: [gap: {}, fc: {out: 10}]\n")
