"""Edges of the geometry and of the spec's checks that the analysis-against-module
cross-checks cannot see (a bug both sides would share) or that no repository spec reaches:
each expected value is torch's own (a forward pass, a parameter count, a gradient)."""

from __future__ import annotations

import pytest
import torch
import yaml

from blockspec import SpecError, build_model, parse_spec
from blockspec.analysis import trace
from blockspec.layers.base import Field1D
from tests.rf_probe import measured_window

HEAD = "  output: [gap: {}, fc: {out: 10}]\n"


def spec_of(layers: str, size: int = 32, extra: str = ""):
    return parse_spec(f"name: x\ninput: {{size: {size}}}\n{extra}blocks:\n  C1: [{layers}]\n" + HEAD)


def test_a_residual_field_spans_both_branches_when_the_shortcut_lies_outside_the_body() -> None:
    """A 1×1 stride-4 body padded by 1 sees pixel −1 of each window, the shortcut pixel 0:
    together 2 pixels, as the gradient measures."""
    assert Field1D(rf=1, jump=4, start=-1).union(Field1D(rf=1, jump=4, start=0)) == Field1D(rf=2, jump=4, start=-1)
    spec = spec_of("residual: {body: [conv: {out: 8, k: 1, stride: 4, padding: 1}]}", size=10)
    row = trace(spec).rf_row
    assert (row.rf, row.jump, row.field.start) == (2, 4, -1)
    first, last, centre, probed = measured_window(spec)
    assert last - first + 1 == probed.rf_row.rf == 2
    assert first == probed.rf_row.field.start + centre * probed.rf_row.jump


@pytest.mark.parametrize(("k", "padding"), [(2, 0), (4, 1)])
def test_the_default_padding_of_an_even_kernel_rounds_down(k: int, padding: int) -> None:
    """⌊d·(k−1)/2⌋, so the map shrinks by one pixel, as the built convolution's output shows."""
    spec = spec_of(f"conv: {{out: 8, k: {k}}}")
    row = trace(spec).rows[0]
    assert row.window.padding == padding and row.out_shape == (8, 31, 31)
    assert build_model(spec).C1(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 31, 31)


@pytest.mark.parametrize("layer", ["conv: {out: 8, k: 2, padding: same}", "conv: {out: 8, k: 4, padding: same}"])
def test_same_padding_refuses_an_even_kernel(layer: str) -> None:
    with pytest.raises(SpecError, match=r"blocks\.C1\[0\]\.padding = 'same': 'same' needs stride 1 and an odd "
                                        r"effective kernel; here stride=1, effective kernel="):
        spec_of(layer)


def test_a_kernel_as_large_as_the_padded_input_gives_one_pixel() -> None:
    spec = spec_of("conv: {out: 8, k: 3, padding: 0}", size=3)
    assert trace(spec).rows[0].out_shape == (8, 1, 1)
    assert build_model(spec).C1(torch.zeros(2, 3, 3, 3)).shape == (2, 8, 1, 1)


def test_pooling_may_pad_by_half_its_kernel_and_no_more() -> None:
    spec = spec_of("conv: {out: 8}, pool: {k: 2, padding: 1}")
    assert trace(spec).rows[1].out_shape == (8, 17, 17)
    assert build_model(spec).C1(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 17, 17)
    with pytest.raises(SpecError, match=r"blocks\.C1\[1\]\.padding = 2: pooling padding may be at most half the "
                                        r"kernel \(1\)"):
        spec_of("conv: {out: 8}, pool: {k: 2, padding: 2}")


def test_a_strided_residual_on_an_odd_map_rounds_up_on_both_branches() -> None:
    """The shortcut's 1×1 stride-2 convolution gives ⌈31/2⌉ = 16, as the body does."""
    spec = spec_of("conv: {out: 8}, residual: {body: [strided: {out: 16}]}", size=31)
    assert trace(spec).rows[1].out_shape == (16, 16, 16)
    block = build_model(spec).C1[1].eval()
    x = torch.zeros(1, 8, 31, 31)
    assert block.shortcut(x).shape == block(x).shape == (1, 16, 16, 16)


def test_reflect_padding_as_wide_as_the_map_is_refused_as_torch_would() -> None:
    with pytest.raises(RuntimeError):
        torch.nn.Conv2d(3, 8, 5, padding=2, padding_mode="reflect")(torch.zeros(1, 3, 2, 2))
    with pytest.raises(SpecError, match=r"blocks\.C1\[0\]\.padding = 2: padding_mode 'reflect' needs padding "
                                        r"smaller than the 2×2 input"):
        spec_of("conv: {out: 8, k: 5, padding_mode: reflect}", size=2)


def test_a_projection_shortcut_without_norm_counts_its_bias() -> None:
    """Found before only by the slow property test, by chance."""
    spec = spec_of("conv: {out: 8}, residual: {norm: none, body: [conv: {out: 16}]}")
    block = build_model(spec).C1[1]
    assert block.shortcut.conv.bias is not None
    assert trace(spec).rows[1].params == sum(p.numel() for p in block.parameters())


def test_the_receptive_field_is_the_last_maps_even_before_a_flatten() -> None:
    spec = parse_spec("name: x\ninput: {size: 4}\nblocks:\n  C1: [conv: {out: 2, k: 3, padding: 0}]\n"
                      "  output: [flatten: {}, fc: {out: 10}]\n")
    analysis = trace(spec)
    assert (analysis.receptive_field, analysis.rf_row.name) == (3, "C1.0")
    head_only = trace(parse_spec("name: x\nblocks:\n" + HEAD))
    assert (head_only.receptive_field, head_only.rf_row) == (1, None)


def test_repeated_layers_get_a_row_each_named_by_position_and_errors_name_the_written_entry() -> None:
    spec = spec_of("conv: {out: 8, repeat: 3}, conv: {out: 16}")
    rows = trace(spec).rows
    assert [row.name for row in rows[:4]] == ["C1.0", "C1.1", "C1.2", "C1.3"]
    assert [row.path for row in rows[:4]] == ["blocks.C1[0]"] * 3 + ["blocks.C1[1]"]
    assert len(build_model(spec).C1) == 4
    with pytest.raises(SpecError, match=r"^<spec>: blocks\.C1\[1\]\.groups = 3"):
        spec_of("conv: {out: 8, repeat: 2}, conv: {out: 9, groups: 3}")


def test_input_size_is_height_then_width() -> None:
    spec = parse_spec("name: x\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD, input_size=(24, 40))
    assert spec.input.hw == (24, 40) and trace(spec).rows[0].out_shape == (8, 24, 40)


def test_onecycle_needs_momentum_for_sgd_but_not_for_adam() -> None:
    """Adam cycles its beta1, not `momentum`."""
    parse_spec("name: x\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD + "train: {optimizer: {name: adam, momentum: 0.0}}\n")
    with pytest.raises(SpecError, match=r"train\.scheduler\.cycle_momentum"):
        parse_spec("name: x\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD + "train: {optimizer: {name: sgd, momentum: 0.0}}\n")


def test_cuda_graphs_and_compile_are_refused_together() -> None:
    with pytest.raises(SpecError, match=r"train\.cuda_graphs = True: .*cannot be combined with compile \('max-autotune'\)"):
        parse_spec("name: x\nblocks:\n  C1: [conv: {out: 8}]\n" + HEAD + "train: {compile: max-autotune, cuda_graphs: true}\n")


def test_aliases_that_expand_a_short_file_beyond_any_network_are_refused_before_validation() -> None:
    """Ten copies a level: five levels of anchors (1.4 kB) took 33 s and 400 MB to validate,
    six ran for minutes; a billion laughs within the spec's own fields."""
    lines = ["x-r0: &r0 [{conv: {out: 8}}]"]
    lines += [f"x-r{level}: &r{level} [" + ", ".join([f"{{residual: {{body: *r{level - 1}}}}}"] * 10) + "]"
              for level in range(1, 6)]
    text = "\n".join(lines) + "\nname: n\nblocks: {C1: [conv: {out: 8}], C2: *r5, output: [gap: {}, fc: {out: 10}]}\n"
    with pytest.raises(SpecError, match=r"more than 100,000 values once its YAML aliases are followed"):
        parse_spec(text)
    with pytest.raises(SpecError, match=r"more than 100,000 values"):  # a mapping as YAML reads it, aliases shared
        parse_spec(yaml.safe_load(text))
    loop = "name: n\nblocks:\n  C1: &A [{conv: {out: 8}}, &B {residual: {body: *A}}]\n  C2: [*B, *B]\n"
    with pytest.raises(SpecError, match=r"a value holds itself \(a YAML anchor holding an alias to itself\)"):  # validation walked it for seconds
        parse_spec(loop + "  output: [gap: {}, fc: {out: 10}]\n")


@pytest.mark.parametrize(("name", "says"), [
    ("../../escaped", "one folder's name"), ("/tmp/elsewhere", "one folder's name"), ("a\\\\b", "one folder's name"),
    ("..", "one folder's name"), ("C:escaped", "one folder's name"), ("X\\e[31mRED\\e]0;title\\a", "control characters"),
])
def test_a_name_is_one_folders_and_holds_no_terminal_commands(name: str, says: str) -> None:
    """Runs go to runs/<name>/: `../../escaped` wrote outside runs/, an absolute name anywhere;
    escape codes reached the terminal through the summary table."""
    with pytest.raises(SpecError, match=says):
        parse_spec(f'name: "{name}"\nblocks:\n  C1: [conv: {{out: 8}}]\n  output: [gap: {{}}, fc: {{out: 10}}]\n')
    assert parse_spec("name: réseau 2\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n").name == "réseau 2"
