"""Pictures of a run: learning curves, wrong predictions, confusion matrix (matplotlib, Agg)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(history: list[dict[str, Any]], target: Path) -> None:
    epochs = [r["epoch"] for r in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(11, 4))
    loss_axis.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_axis.plot(epochs, [r["test_loss"] for r in history], label="test")
    loss_axis.set(title="loss", xlabel="epoch")
    acc_axis.plot(epochs, [r["train_acc"] for r in history], label="train")
    acc_axis.plot(epochs, [r["test_acc"] for r in history], label="test")
    acc_axis.set(title="accuracy (%)", xlabel="epoch")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


class CurvesPicture:
    """curves.png, redrawn after an epoch only when `interval` seconds have passed since the
    last drawing, and always by `finish`.

    Drawing takes 0.3–0.6 s, as long as a whole epoch of a small network on a GPU: redrawn
    every epoch it added about a fifth to a 40-epoch run there. metrics.json still records
    every epoch as it ends; the picture is only a view of it.
    """

    def __init__(self, target: Path, interval: float = 30.0) -> None:
        self.target, self.interval = target, interval
        self.drawn_epochs, self.drawn_at = 0, -float("inf")

    def update(self, history: list[dict[str, Any]]) -> None:
        if time.monotonic() - self.drawn_at >= self.interval:
            self.finish(history)

    def finish(self, history: list[dict[str, Any]]) -> None:
        """Draw now, unless the picture already shows every epoch of `history`."""
        if history and len(history) != self.drawn_epochs:
            plot_curves(history, self.target)
            self.drawn_epochs, self.drawn_at = len(history), time.monotonic()


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    classes: tuple[str, ...],
    target: Path,
    count: int = 25,
) -> None:
    """A grid of the first `count` wrong test predictions, titled "true → predicted"."""
    wrong = np.flatnonzero(predictions != labels)[:count]
    columns = 5
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong):
        image = images[index]
        axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
        axis.set_title(f"{classes[labels[index]]} → {classes[predictions[index]]}", fontsize=8)
    if not len(wrong):
        axes.flat[0].set_title("no misclassified images")
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


def plot_confusion(
    labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...], target: Path
) -> None:
    size = len(classes)
    matrix = np.zeros((size, size), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    figure, axis = plt.subplots(figsize=(max(5, 0.6 * size), max(4.5, 0.55 * size)))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis)
    if size <= 20:
        axis.set_xticks(range(size), classes, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(range(size), classes, fontsize=8)
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(column, row, str(value), ha="center", va="center", fontsize=6)
    axis.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
