"""The weight average: the warmed-up recurrence, exactly, on parameters and BatchNorm buffers."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from blockspec.train.ema import make_ema


def test_average_follows_the_warmed_up_recurrence() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = make_ema(model, decay=0.9)
    expected = None
    for n in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(2, 3, 8, 8))  # moves BatchNorm's running statistics
        state = {k: v.clone() for k, v in model.state_dict().items()}
        if expected is None:
            expected = state  # the first update copies
        else:
            decay = min(0.9, (1 + n) / (10 + n))
            for key, value in state.items():
                if value.is_floating_point():
                    expected[key] = decay * expected[key] + (1 - decay) * value
                else:
                    expected[key] = value
        ema.update_parameters(model)
        for key, value in ema.module.state_dict().items():
            assert torch.allclose(value, expected[key], atol=1e-5), (n, key)
    assert int(ema.module[1].num_batches_tracked) == 30


def test_early_average_is_mostly_the_trained_weights() -> None:
    """After 5 updates a 0.999 average keeps 0.2 % of its start (∏ (1+n)/(10+n)), not 0.999⁵ ≈ 99.5 %."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = make_ema(model, decay=0.999)
    ema.update_parameters(model)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(5):
        ema.update_parameters(model)
    start_share = 1.0
    for n in range(1, 6):
        start_share *= (1 + n) / (10 + n)
    assert abs(float(ema.module.weight) - (1 - start_share)) < 1e-6
    assert float(ema.module.weight) > 0.9


def test_state_dict_keeps_averaged_models_layout() -> None:
    """Checkpoints written with torch's AveragedModel (earlier versions) load unchanged."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    theirs = AveragedModel(model, use_buffers=True)
    theirs.update_parameters(model)
    ours = make_ema(model, decay=0.9)
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert int(ours.n_averaged) == 1


def test_updates_keep_the_layout_and_follow_a_new_source_model() -> None:
    """The tensor lists are built once per source model: not saved, and rebuilt for another."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ours = make_ema(model, decay=0.5)
    keys = list(ours.state_dict())
    ours.update_parameters(model)
    ours.update_parameters(model)
    assert list(ours.state_dict()) == keys
    other = copy.deepcopy(model)
    with torch.no_grad():
        other[0].weight.fill_(1.0)
    ours.update_parameters(other)  # third update: weight 1 - min(0.5, 3/12) = 0.75
    expected = 0.25 * model[0].weight + 0.75 * torch.ones_like(model[0].weight)
    assert torch.allclose(ours.module[0].weight, expected)
