"""What each layer kind builds where the parameter-count and shape cross-checks are blind:
modules without parameters (activations, dropout, the pooling type), their order, and
arguments that change the arithmetic but not the shapes (padding mode)."""

from __future__ import annotations

import torch
from torch import nn

from blockspec import build_model, parse_spec

HEAD = "  output: [gap: {}, fc: {out: 10}]\n"


def kinds(module: nn.Module) -> list[str]:
    return [type(child).__name__ for child in module]


def built(layers: str, head: str = HEAD, extra: str = "") -> nn.Module:
    return build_model(parse_spec(f"name: x\n{extra}blocks:\n  C1: [{layers}]\n" + head))


def test_the_order_places_the_activation() -> None:
    assert kinds(built("conv: {out: 8, order: conv-act-norm}").C1[0]) == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert kinds(built("conv: {out: 8}").C1[0]) == ["Conv2d", "BatchNorm2d", "ReLU"]


def test_the_default_dropout_closes_every_conv_unit() -> None:
    unit = built("conv: {out: 8}", extra="defaults: {dropout: 0.25}\n").C1[0]
    assert kinds(unit) == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout"] and unit.drop.p == 0.25


def test_a_dws_mid_activation_follows_the_order() -> None:
    unit = built("dws: {out: 8, mid_norm: true, mid_act: true, order: conv-act-norm}").C1[0]
    assert kinds(unit) == ["DepthwiseConv2d", "ReLU", "BatchNorm2d", "Conv2d", "ReLU", "BatchNorm2d"]


def test_the_padding_mode_reaches_the_convolution() -> None:
    conv = built("conv: {out: 8, padding_mode: reflect}").C1[0].conv
    x = torch.randn(1, 3, 8, 8)
    expected = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), conv.weight, conv.bias)
    assert conv.padding_mode == "reflect"
    torch.testing.assert_close(conv(x), expected)


def test_squeeze_and_excitation_uses_its_own_activation() -> None:
    gate = built("conv: {out: 8}, se: {reduction: 2, act: silu}").C1[1]
    assert any(isinstance(m, nn.SiLU) for m in gate.modules()) and not any(isinstance(m, nn.ReLU) for m in gate.modules())


def test_a_residual_activates_after_the_sum() -> None:
    block = built("conv: {out: 8}, residual: {body: [conv: {out: 8, act: none}], act: relu}").eval().C1[1]
    x = torch.randn(1, 8, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(block.body(x) + x))


def test_relu6_is_built_as_relu6() -> None:
    assert kinds(built("conv: {out: 8, act: relu6, norm: none}").C1[0])[-1] == "ReLU6"


def test_the_pooling_type_is_built() -> None:
    assert isinstance(built("conv: {out: 8}, pool: {type: avg}").C1[1], nn.AvgPool2d)
    assert isinstance(built("conv: {out: 8}, pool: {}").C1[1], nn.MaxPool2d)


def test_a_hidden_fc_layer_gets_its_activation() -> None:
    head = "  output: [gap: {}, fc: {out: 16, act: gelu}, fc: {out: 10}]\n"
    assert kinds(built("conv: {out: 8}", head=head).output[1]) == ["Flatten", "Linear", "GELU"]
