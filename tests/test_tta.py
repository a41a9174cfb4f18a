"""Test-time views: where each shifted view takes its pixels from, and how views are weighted."""

from __future__ import annotations

import torch
from torch import nn

from blockspec.train.tta import TTAViews, shifted


def test_shift_moves_content_and_reflects_the_edges() -> None:
    x = torch.randn(2, 3, 5, 6)
    down_right = shifted(x, 2)
    assert torch.equal(down_right[..., 2:, 2:], x[..., :-2, :-2])
    assert torch.equal(down_right[..., 0, 2:], x[..., 2, :-2])  # row -2 reflects to row 2
    assert torch.equal(down_right[..., 2:, 1], x[..., :-2, 1])  # column -1 reflects to column 1
    up_left = shifted(x, -1)
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:])
    assert torch.equal(up_left[..., -1, :-1], x[..., -2, 1:])


def test_shift_keeps_the_memory_format() -> None:
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    assert shifted(x, 1).is_contiguous(memory_format=torch.channels_last)
    assert shifted(x.contiguous(), 1).is_contiguous()


class PixelProbe(nn.Module):
    """Scores = the input's channel values at one pixel, so each view's weight is visible."""

    def __init__(self, row: int, column: int) -> None:
        super().__init__()
        self.row, self.column = row, column

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, self.row, self.column]


def test_views_are_averaged_with_shifts_at_half_weight() -> None:
    x = torch.randn(2, 3, 8, 8)
    probe = PixelProbe(3, 2)
    assert torch.equal(TTAViews().logits(probe, x), x[:, :, 3, 2])
    assert torch.allclose(TTAViews(flip=True).logits(probe, x), (x[:, :, 3, 2] + x[:, :, 3, 5]) / 2)
    expected = x[:, :, 3, 2] / 2 + (x[:, :, 2, 1] + x[:, :, 4, 3]) / 4
    assert torch.allclose(TTAViews(shift=1).logits(probe, x), expected)
    flipped = x.flip(3)
    both = (x[:, :, 3, 2] + flipped[:, :, 3, 2]) / 4
    both = both + (x[:, :, 2, 1] + x[:, :, 4, 3] + flipped[:, :, 2, 1] + flipped[:, :, 4, 3]) / 8
    assert torch.allclose(TTAViews(flip=True, shift=1).logits(probe, x), both)


class CallCounter(PixelProbe):
    """A PixelProbe that records the batch size of every call."""

    def __init__(self) -> None:
        super().__init__(3, 2)
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        return super().forward(x)


def test_all_views_go_through_the_model_as_one_batch() -> None:
    x = torch.randn(4, 3, 8, 8)
    for views, count in ((TTAViews(), 1), (TTAViews(flip=True), 2), (TTAViews(shift=1), 3), (TTAViews(True, 2), 6)):
        counter = CallCounter()
        views.logits(counter, x)
        assert counter.batches == [count * len(x)]


def test_a_log_softmax_heads_averaged_views_are_renormalised_for_the_nll_loss() -> None:
    """Averaged log-probabilities no longer sum to 1; the loss must see a distribution again
    (the mean of the views' log-probabilities, passed through log_softmax)."""
    from blockspec.train.device import pick_device
    from blockspec.train.loop import Batches, evaluate

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LogSoftmax(1))
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    batches = Batches(pick_device("cpu", amp=False, channels_last=False), (0.5,) * 3, (0.25,) * 3)
    result = evaluate(model, [(images, labels)], batches, nn.NLLLoss(), TTAViews(flip=True))
    x, _ = batches(images, labels)
    averaged = (model(x) + model(x.flip(3))) / 2
    assert not torch.allclose(averaged.exp().sum(1), torch.ones(6))  # the case this is about
    expected = nn.functional.nll_loss(averaged.log_softmax(1), labels).item()
    assert abs(result.loss - expected) < 1e-6
