"""Weight decay by kind of tensor: conv and linear weights decay, biases and norms do not, and
depthwise kernels take `depthwise_weight_decay` when it is set."""

from __future__ import annotations

import torch

from blockspec.build import build_model
from blockspec.load import load_spec
from tests.cli_helpers import ROOT

FLAGSHIP = ROOT / "architectures" / "flagship.yaml"


def _one_decay_step(edits: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name → (before, after) of one SGD step on zero gradients: only weight decay moves a tensor
    (SGD, not the flagship's Muon, which also rescales the kernels it takes)."""
    from blockspec.train.optim import make_optimizer

    spec = load_spec(FLAGSHIP, edits=["train.scheduler.name=none", "train.optimizer.name=sgd", *edits])
    torch.manual_seed(0)
    model = build_model(spec)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = make_optimizer(spec, model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {name: (before[name], p.detach()) for name, p in model.named_parameters()}


def _depthwise_names() -> set[str]:
    model = build_model(load_spec(FLAGSHIP))
    return {
        f"{name}.weight"
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    }


def test_depthwise_kernels_take_their_own_decay() -> None:
    depthwise = _depthwise_names()
    assert len(depthwise) == 5  # C3.0, the two of C3.1 and the two of C4.0
    steps = _one_decay_step(["train.optimizer.depthwise_weight_decay=0"])
    for name, (before, after) in steps.items():
        if name in depthwise or before.ndim <= 1:
            assert torch.equal(before, after), name
        else:
            assert not torch.equal(before, after), name


def test_unset_depthwise_decay_is_the_weight_decay() -> None:
    unset = _one_decay_step([])
    same = _one_decay_step(["train.optimizer.depthwise_weight_decay=5e-4"])
    for name in _depthwise_names():
        assert not torch.equal(*unset[name]), name
        torch.testing.assert_close(unset[name][1], same[name][1], rtol=0, atol=0)
