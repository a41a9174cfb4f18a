"""A trained checkpoint as a ready model, for scripts and notebooks.

Rebuilding the network by hand from a checkpoint's `spec` and `model` entries goes wrong
quietly: last.pt's `model` holds the raw weights, not the weight average the run's
accuracies were measured with, and the inputs must be normalised with the training images'
statistics. `load_trained` does what `blockspec eval` does and hands back the pieces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from blockspec.data.loader import normalize_batch
from blockspec.errors import fail
from blockspec.load import parse_spec
from blockspec.modules import BlockNet
from blockspec.spec import Spec
from blockspec.train.checkpoint import TrainedOn, load_checkpoint, model_from_checkpoint
from blockspec.train.device import DeviceInfo, pick_device
from blockspec.train.tta import TTAViews


@dataclass(frozen=True)
class TrainedModel:
    """A checkpoint's network in evaluation mode, holding the weights its run evaluated (the
    weight average, where the run keeps one), with what its inputs and scores mean."""

    model: BlockNet
    spec: Spec
    classes: tuple[str, ...]  # score order
    mean: tuple[float, ...]  # per channel, 0–1 units: the training images'
    std: tuple[float, ...]
    epoch: int  # the epoch whose weights these are
    views: TTAViews  # the test-time views `predict` averages, as `blockspec eval` does
    info: DeviceInfo  # the device, and the precision and layout the run evaluated in there

    @property
    def device(self) -> torch.device:
        """Where the model is (inputs go there), also after `trained.model.to(...)`."""
        return next(self.model.parameters()).device

    def __repr__(self) -> str:  # the generated one printed the whole spec and module, kilobytes
        return (f"<TrainedModel {self.spec.name!r}: epoch {self.epoch}, {len(self.classes)} classes, "
                f"input {self.spec.input.channels}×{'×'.join(map(str, self.spec.input.hw))}, on {self.device}>")

    def preprocess(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 images, N×H×W×C or one H×W×C (as numpy and PIL hold them; a gray network's
        also without the channel axis, N×H×W or H×W), into the normalised float N×C×H×W batch
        the network was trained on, on its device."""
        x = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))  # a copy: PIL's arrays are read-only
        given = tuple(x.shape)
        hw, channels = self.spec.input.hw, self.spec.input.channels
        if channels == 1 and x.ndim in (2, 3) and tuple(x.shape[-2:]) == hw:
            x = x.unsqueeze(-1)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        expected = "×".join(map(str, (*hw, channels)))
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (*hw, channels):
            raise ValueError(f"images: expected uint8 of shape N×{expected} (or one {expected} image), "
                             f"got {x.dtype} of shape {given}")
        return normalize_batch(x.to(self.device).permute(0, 3, 1, 2), self.mean, self.std)

    @torch.no_grad()
    def predict(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Class probabilities, N×classes, averaged over the spec's test-time views; a batch
        of the spec's size at a time (the whole set at once held every view's activations)."""
        x = self.preprocess(images)
        if self.info.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        size = self.spec.train.batch_size
        with self.info.autocast():  # as `eval` computes: its accuracy is then exactly the run's
            scores = [self.views.logits(self.model, x[i:i + size]) for i in range(0, len(x), size)]
        if not scores:  # no images: no rows
            return torch.zeros(0, len(self.classes), device=self.device)
        return torch.cat(scores).float().softmax(dim=1)


def load_trained(
    checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu", flag: str = "checkpoint"
) -> TrainedModel:
    """The network a checkpoint holds (a run directory means its last.pt; its best.pt is the
    epoch of highest test accuracy), ready to predict on `device` ("auto": CUDA, MPS, then the
    CPU), in the precision and memory layout the run evaluated in there (bf16 autocast and
    channels-last where the device computes bf16 natively, unless the spec turns them off).
    Raises SpecError for a file
    that is not a blockspec checkpoint, or one written before checkpoints recorded the
    training images' statistics (evaluate those with `blockspec eval`, which reads the data);
    `flag` is how errors name the checkpoint (the command line's `--checkpoint`)."""
    path = Path(checkpoint)
    payload = load_checkpoint(path, flag=flag)
    spec = parse_spec(payload["spec"], source=f"{path} (spec inside)")
    missing = [name for name in TrainedOn.names() if not payload.get(name)]
    if missing:
        raise fail(flag, f"it does not record its {', '.join(missing)} (written before 2026-12-07); "
                   "`blockspec eval` reads them from the data", str(path))
    trained_on = TrainedOn(*(tuple(payload[name]) for name in TrainedOn.names()))
    info = pick_device(str(device), spec.train.amp, spec.train.channels_last)
    model = info.place(model_from_checkpoint(spec, payload, path, flag=flag)).eval()
    return TrainedModel(model, spec, trained_on.classes, trained_on.mean, trained_on.std,
                        int(payload.get("epoch", 0)), TTAViews.of(spec.train), info)
