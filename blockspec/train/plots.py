"""Pictures of a run: learning curves, wrong predictions, confusion matrix (matplotlib).

Figures are made without pyplot: nothing global changes (a notebook that imports training
keeps its own backend) and no figure is left registered anywhere to close."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from blockspec.atomic import atomic_write


def save_png(figure: Figure, target: Path) -> None:
    """Written whole or not at all, like every file of a run."""
    with atomic_write(target) as out:
        figure.savefig(out, format="png", dpi=100)


def plot_curves(history: list[dict[str, Any]], target: Path) -> None:
    save_png(curves_figure(history), target)


def curves_figure(history: list[dict[str, Any]]) -> Figure:
    """Loss and accuracy by epoch, at whole epochs; points marked, so that a one-epoch history shows."""
    epochs = [r["epoch"] for r in history]
    figure = Figure(figsize=(11, 4))
    loss_axis, acc_axis = figure.subplots(1, 2)
    marker = {"marker": "o", "markersize": 3}
    loss_axis.plot(epochs, [r["train_loss"] for r in history], label="train", **marker)
    loss_axis.plot(epochs, [r["test_loss"] for r in history], label="test", **marker)
    loss_axis.set(title="loss", xlabel="epoch")
    acc_axis.plot(epochs, [r["train_acc"] for r in history], label="train", **marker)
    acc_axis.plot(epochs, [r["test_acc"] for r in history], label="test", **marker)
    acc_axis.set(title="accuracy (%)", xlabel="epoch")
    for axis in (loss_axis, acc_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # one epoch: a span, not a point
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


class CurvesPicture:
    """curves.png, redrawn after an epoch only when `interval` seconds have passed since the
    last drawing, and always by `finish`.

    A drawing of a 40-epoch history took 0.6 s on the 2-core CPU, about half an epoch of the
    flagship on an H200 at batch 512 (1.27 s), and was made after every epoch. metrics.json
    still records every epoch as it ends; the picture is only a view of it.
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
    save_png(misclassified_figure(images, labels, predictions, classes, count), target)


def misclassified_figure(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...], count: int = 25
) -> Figure:
    """A grid of the first `count` wrong test predictions, titled "true → predicted".

    Drawn as one picture on one set of axes: 25 small axes took 2.4 s to lay out and save,
    this 0.5 s (on the 2-core CPU; the end of a run waits for it).
    """
    wrong = np.flatnonzero(predictions != labels)[:count]
    columns = 5
    rows = max(1, -(-len(wrong) // columns))
    height, width, channels = images.shape[1:]
    gap = max(2, height // 8)  # between tiles, and twice that above each for its title
    tile_height, tile_width = height + 2 * gap, width + gap
    canvas = np.full((rows * tile_height, columns * tile_width + gap, channels), 255, dtype=np.uint8)
    figure = Figure(figsize=(2.2 * columns, 2.2 * columns * canvas.shape[0] / canvas.shape[1]))
    axis = figure.add_axes((0, 0, 1, 1))
    axis.axis("off")
    for slot, index in enumerate(wrong):
        top, left = (slot // columns) * tile_height + 2 * gap, (slot % columns) * tile_width + gap
        canvas[top:top + height, left:left + width] = images[index]
        axis.text(left + width / 2, top - 1, f"{classes[labels[index]]} → {classes[predictions[index]]}",
                  ha="center", va="bottom", fontsize=8)
    axis.imshow(canvas.squeeze(-1) if channels == 1 else canvas, cmap="gray", interpolation="nearest")
    if not len(wrong):
        axis.text(0.5, 0.5, "no misclassified images", transform=axis.transAxes, ha="center", va="center")
    return figure


def plot_confusion(
    labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...], target: Path
) -> None:
    save_png(confusion_figure(labels, predictions, classes), target)


_CELL_COUNTS_UP_TO = 20  # classes with each cell's count written in it
_NAMES_UP_TO = 60  # classes with every row and column named; beyond, every tenth index
_MAX_INCHES = 16.0  # 1,600 pixels a side at the saved resolution, whatever the class count


def confusion_figure(labels: np.ndarray, predictions: np.ndarray, classes: tuple[str, ...]) -> Figure:
    """Rows coloured by the fraction of the true class given each prediction, so that classes
    with few test images read like the rest; counts written in the cells while they fit, and
    the figure capped in size (100 classes drew a 6,000-pixel picture with no names)."""
    size = len(classes)
    matrix = np.zeros((size, size), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(_MAX_INCHES, max(5.0, 0.6 * size))
    figure = Figure(figsize=(side + 1.0, side))
    axis = figure.subplots()
    image = axis.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of the true class")
    if size <= _NAMES_UP_TO:
        fontsize = 8 if size <= _CELL_COUNTS_UP_TO else max(4.0, 8 - size / 15)
        axis.set_xticks(range(size), classes, rotation=60, ha="right", fontsize=fontsize)
        axis.set_yticks(range(size), classes, fontsize=fontsize)
    else:
        ticks = range(0, size, 10)
        axis.set_xticks(ticks, [str(i) for i in ticks], fontsize=8)
        axis.set_yticks(ticks, [str(i) for i in ticks], fontsize=8)
    if size <= _CELL_COUNTS_UP_TO:
        for (row, column), value in np.ndenumerate(matrix):
            colour = "white" if fractions[row, column] > 0.5 else "black"
            axis.text(column, row, str(value), ha="center", va="center", fontsize=6, color=colour)
    names = "" if size <= _NAMES_UP_TO else " (class indices: the order of `classes` in summary.json)"
    axis.set(xlabel=f"predicted{names}", ylabel="true", title="confusion matrix (test)")
    figure.tight_layout()
    return figure
