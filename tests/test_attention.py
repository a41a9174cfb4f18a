"""`se`: the built gate does what squeeze-and-excitation is: a per-channel scale in (0, 1)
that depends on the whole map, with the parameters the analysis counts."""

from __future__ import annotations

import torch

from blockspec import build_model, parse_spec
from blockspec.analysis import trace

SPEC = """
name: gated
input: {channels: 3, size: 16}
classes: 10
blocks:
  C1:
    - conv: {out: 32}
    - residual:
        body: [conv: {out: 32}, conv: {out: 32, act: none}, se: {reduction: 8}]
        act: relu
    - se: {reduction: 4, act: silu}
  output: [gap: {}, fc: {out: 10}]
"""


def gate_module(model: torch.nn.Module) -> torch.nn.Module:
    return model.C1[2]


def test_params_and_macs_match_the_built_gate() -> None:
    spec = parse_spec(SPEC)
    rows = {row.name: row for row in trace(spec).rows}
    gate = gate_module(build_model(spec))
    # 32 → 8 → 32 with biases; the MACs are the two 1×1 maps on the pooled vector.
    assert rows["C1.2"].params == sum(p.numel() for p in gate.parameters()) == 32 * 8 + 8 + 8 * 32 + 32
    assert rows["C1.2"].macs == 2 * 32 * 8
    assert rows["C1.2"].rf == rows["C1.1"].rf  # the windows are unchanged


def test_gate_is_one_scale_per_channel_set_by_the_whole_map() -> None:
    torch.manual_seed(0)
    gate = gate_module(build_model(parse_spec(SPEC))).eval()
    x = torch.rand(2, 32, 16, 16) + 0.1
    scale = gate(x) / x
    per_channel = scale[:, :, :1, :1]
    assert torch.allclose(scale, per_channel.expand_as(scale), atol=1e-6)
    assert bool(((scale > 0) & (scale < 1)).all())
    # Changing one far corner pixel changes the scale applied at the opposite corner.
    changed = x.clone()
    changed[:, :, 0, 0] += 50.0
    far_before = gate(x)[:, :, -1, -1]
    far_after = gate(changed)[:, :, -1, -1]
    assert not torch.allclose(far_before, far_after)


def test_gated_network_trains_a_step() -> None:
    torch.manual_seed(0)
    model = build_model(parse_spec(SPEC))
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    reduce = gate_module(model).reduce.weight
    assert reduce.grad is not None and bool(reduce.grad.abs().sum() > 0)
