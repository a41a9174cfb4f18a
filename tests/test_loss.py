"""The loss training minimises and the loss an epoch records: the spec's label smoothing
reaches it whatever the head, and an epoch's figure is a mean over images, not over batches."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from blockspec import build_model
from blockspec.load import parse_spec
from blockspec.train.device import pick_device
from blockspec.train.loop import Batches, train_epoch
from blockspec.train.optim import make_loss
from blockspec.train.step import EagerStep
from tests.synthetic import tiny_spec_text


@pytest.mark.parametrize("log_softmax_head", [False, True])
def test_label_smoothing_reaches_the_loss(log_softmax_head: bool) -> None:
    """Smoothing 0.2 over 4 classes: target 0.8 + 0.2/4 on the label, 0.2/4 elsewhere."""
    text = tiny_spec_text(Path("unused"), extra="  label_smoothing: 0.2")
    if log_softmax_head:
        text = text.replace("fc: {out: 4}]", "fc: {out: 4}, logsoftmax: {}]")
    spec = parse_spec(text, "tiny.yaml")
    log_p = torch.tensor([4.0, 0.0, 0.0, 0.0]).log_softmax(0)
    scores = log_p if log_softmax_head else torch.tensor([4.0, 0.0, 0.0, 0.0])
    loss = make_loss(spec)(scores[None], torch.tensor([0])).item()
    assert loss == pytest.approx(-(0.85 * log_p[0] + 0.05 * log_p[1:].sum()).item(), rel=1e-6)
    assert abs(loss + log_p[0].item()) > 0.1  # the unsmoothed loss is clearly another number


def test_an_epochs_loss_and_accuracy_are_means_over_its_images() -> None:
    """Batches of 6 and 2 images with the weights held (rate 0): the epoch's loss is each
    batch's mean loss weighted by its images, as a forward pass of each batch gives it."""
    spec = parse_spec(tiny_spec_text(Path("unused")), "tiny.yaml")
    torch.manual_seed(0)
    model = build_model(spec)
    info = pick_device("cpu", amp=False, channels_last=False)
    batches = Batches(info, (0.5,) * 3, (0.25,) * 3)
    loader = [(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8), torch.randint(0, 4, (n,))) for n in (6, 2)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loss_fn = make_loss(spec)
    step = EagerStep(model, loss_fn, optimizer, None, model, contextlib.nullcontext)
    stats = train_epoch(model, step, loader, batches, optimizer, lambda: None, "epoch 1/1", len(loader))
    losses, correct = [], 0
    with torch.no_grad():  # train mode still: each batch normalised by its own statistics, as in the step
        for images, labels in loader:
            logits = model(batches(images, labels)[0])
            losses.append(loss_fn(logits, labels).item() * len(labels))
            correct += int((logits.argmax(1) == labels).sum())
    assert stats.images == 8
    assert stats.loss == pytest.approx(sum(losses) / 8, rel=1e-5)
    assert stats.acc == pytest.approx(100 * correct / 8)
