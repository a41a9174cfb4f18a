"""`residual: {zero_init: true}`: the block starts as its shortcut."""

from __future__ import annotations

import torch

from blockspec import build_model, parse_spec

SPEC = """
name: zero
input: {channels: 3, size: 16}
classes: 10
blocks:
  C1:
    - conv: {out: 16}
    - residual:
        body: [conv: {out: 16}, conv: {out: 16, act: none}, se: {reduction: 4}]
        act: relu
        zero_init: ZERO
  output: [gap: {}, fc: {out: 10}]
"""


def block(zero_init: bool) -> torch.nn.Module:
    return build_model(parse_spec(SPEC.replace("ZERO", str(zero_init).lower()))).C1[1]


def test_zero_init_zeroes_only_the_last_norm_scale() -> None:
    zeroed, plain = block(True), block(False)
    assert bool((zeroed.body[1].norm.weight == 0).all())
    assert bool((zeroed.body[0].norm.weight == 1).all())
    assert bool((plain.body[1].norm.weight == 1).all())


def test_zero_initialised_block_is_its_shortcut() -> None:
    x = torch.rand(2, 16, 16, 16)
    assert torch.equal(block(True).eval()(x), torch.relu(x))  # identity shortcut, ReLU after the sum
    assert not torch.equal(block(False).eval()(x), torch.relu(x))
