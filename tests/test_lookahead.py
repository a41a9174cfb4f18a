"""Lookahead: the ramped pull-back, exactly, on parameters and BatchNorm buffers; its
round trip through a state dict; and a spec that asks for it, validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from blockspec.errors import SpecError
from blockspec.load import parse_spec
from blockspec.spec import LookaheadSpec
from blockspec.train.lookahead import Lookahead
from tests.synthetic import tiny_spec_text


def moved(model: nn.Module) -> None:
    """One stand-in training step: weights moved at random, BatchNorm statistics updated."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(2, 3, 8, 8))


def test_pull_back_follows_the_ramped_recurrence() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    config = LookaheadSpec(every=3, decay=0.8, power=2.0)
    total = 12
    lookahead = Lookahead(model, config, total)
    slow = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(1, total + 1):
        moved(model)
        fast = {k: v.clone() for k, v in model.state_dict().items()}
        lookahead.after_step()
        if step % 3 == 0:
            keep = 0.8 * (step / total) ** 2
            for key, value in fast.items():
                if value.is_floating_point():
                    slow[key] = keep * slow[key] + (1 - keep) * value
                    fast[key] = slow[key]  # the weights restart from the slow copy
        for key, value in model.state_dict().items():
            assert torch.allclose(value, fast[key], atol=1e-6), (step, key)
        for key, value in lookahead.slow.state_dict().items():
            if value.is_floating_point():
                assert torch.allclose(value, slow[key], atol=1e-6), (step, key)
    assert int(lookahead.slow[1].num_batches_tracked) == 12 and lookahead.steps == 12


def test_end_of_epoch_pulls_once_more_and_sets_the_weights_to_the_slow_copy() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    lookahead = Lookahead(model, LookaheadSpec(every=5, decay=0.8, power=1.0), total_steps=10)
    for _ in range(7):  # one pull at step 5, then two steps of progress the end pulls in
        moved(model)
        lookahead.after_step()
    fast, slow = model[0].weight.clone(), lookahead.slow[0].weight.clone()
    lookahead.end_epoch()
    keep = 0.8 * 7 / 10
    assert torch.allclose(lookahead.slow[0].weight, keep * slow + (1 - keep) * fast, atol=1e-6)
    for (key, value), slow_value in zip(model.state_dict().items(), lookahead.slow.state_dict().values(), strict=True):
        if value.is_floating_point():
            assert torch.equal(value, slow_value), key


def test_epochs_shorter_than_the_pull_interval_still_train() -> None:
    """The end of an epoch set the weights back to the slow copy, discarding the steps since
    the last pull: with `every` at least the steps an epoch, all of them, and the run never
    moved from its initial weights."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    start = model[0].weight.clone()
    lookahead = Lookahead(model, LookaheadSpec(every=1000), total_steps=12)
    for _ in range(3):  # epochs of four steps
        for _ in range(4):
            moved(model)
            lookahead.after_step()
        lookahead.end_epoch()
    assert not torch.allclose(model[0].weight, start)


def test_state_dict_round_trip_resumes_the_same_pulls() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    first = Lookahead(model, LookaheadSpec(every=2, decay=0.5, power=1.0), total_steps=10)
    for _ in range(3):
        moved(model)
        first.after_step()
    state = first.state_dict()
    second = Lookahead(model, LookaheadSpec(every=2, decay=0.5, power=1.0), total_steps=10)
    second.load_state_dict(state)
    assert second.steps == 3
    assert all(torch.equal(a, b) for a, b in zip(first.slow.state_dict().values(), second.slow.state_dict().values(), strict=True))
    moved(model)
    second.after_step()  # step 4: a pull with decay 0.5 · 0.4
    assert torch.equal(model[0].weight, second.slow[0].weight)


@pytest.mark.parametrize(
    ("lookahead", "says"),
    [
        ("{every: 0}", "tiny.yaml: train.lookahead.every = 0"),
        ("{decay: 1.0}", "tiny.yaml: train.lookahead.decay = 1.0"),
        ("{power: -1}", "tiny.yaml: train.lookahead.power = -1"),
    ],
)
def test_bad_lookahead_names_the_field(tmp_path: Path, lookahead: str, says: str) -> None:
    text = tiny_spec_text(tmp_path, 1, f"  lookahead: {lookahead}")
    with pytest.raises(SpecError, match=re.escape(says)):
        parse_spec(text, source="tiny.yaml")
