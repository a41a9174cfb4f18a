"""A trained checkpoint as a ready model, for scripts and notebooks.

Rebuilding the network by hand from a checkpoint's `spec` and `model` entries goes wrong
quietly: last.pt's `model` holds the raw weights, not the weight average the run's
accuracies were measured with, and the inputs must be normalised with the training images'
statistics. `load_trained` does what `blockspec eval` does and hands back the pieces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from blockspec.data.loader import normalize_batch
from blockspec.errors import fail
from blockspec.modules import BlockNet
from blockspec.spec import Spec
from blockspec.train.checkpoint import TrainedOn, load_checkpoint, model_from_checkpoint, spec_inside
from blockspec.train.device import DeviceInfo, pick_device
from blockspec.train.tta import TTAViews

if TYPE_CHECKING:
    from PIL import Image


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

    def preprocess(self, images: ImageInput) -> torch.Tensor:
        """uint8 images, N×H×W×C or one H×W×C (as numpy and PIL hold them; a gray network's
        also without the channel axis, N×H×W or H×W), or a list of single images (PIL,
        arrays or tensors) of that size, into the normalised float N×C×H×W batch the network
        was trained on, on its device."""
        return self._normalised(self._checked_pixels(images))

    def _checked_pixels(self, images: ImageInput) -> torch.Tensor:
        """`images` as N×H×W×C uint8 where they are, or a ValueError saying the form expected."""
        hw, channels = self.spec.input.hw, self.spec.input.channels
        x, dtype = _pixels(images, (*hw, channels))
        given = tuple(x.shape)
        if channels == 1 and x.ndim in (2, 3) and tuple(x.shape[-2:]) == hw:
            x = x.unsqueeze(-1)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        expected = "×".join(map(str, (*hw, channels)))
        if x.dtype != torch.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != (*hw, channels):
            raise ValueError(f"images: expected uint8 of shape N×{expected} (or one {expected} image), "
                             f"got {dtype} of shape {given}")
        return x

    def _normalised(self, pixels: torch.Tensor) -> torch.Tensor:
        return normalize_batch(pixels.to(self.device).permute(0, 3, 1, 2), self.mean, self.std)

    def _network_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """One batch of checked pixels as the network takes it: normalised, in its memory layout."""
        x = self._normalised(pixels)
        return x.contiguous(memory_format=torch.channels_last) if self.info.channels_last else x

    @torch.no_grad()
    def predict(self, images: ImageInput) -> torch.Tensor:
        """Class probabilities, N×classes, averaged over the spec's test-time views; a batch
        of the spec's size at a time, normalised as it goes (the whole set at once held every
        view's activations, and four bytes a pixel of every image on the device).
        The model computes in evaluation mode, whatever mode a notebook left it in (training
        mode would score with batch statistics and move the running ones), and is left as it was."""
        pixels = self._checked_pixels(images)
        size = self.spec.train.batch_size
        modes = [(module, module.training) for module in self.model.modules()]  # each its own: a notebook may mix
        self.model.eval()
        try:
            with self.info.autocast():  # as `eval` computes: its accuracy is then exactly the run's
                scores = [self.views.logits(self.model, self._network_input(pixels[i:i + size]))
                          for i in range(0, len(pixels), size)]
        finally:
            for module, training in modes:
                module.training = training
        if not scores:  # no images: no rows
            return torch.zeros(0, len(self.classes), device=self.device)
        return torch.cat(scores).float().softmax(dim=1)


ImageInput = Union[np.ndarray, torch.Tensor, "Image.Image", Sequence[Union[np.ndarray, torch.Tensor, "Image.Image"]]]


def _pixels(images: ImageInput, one_image: tuple[int, ...]) -> tuple[torch.Tensor, str]:
    """`images` as a tensor (a list of single images stacked; an empty one, no images of
    shape `one_image`), and the dtype to name in errors as the caller gave it."""
    if isinstance(images, torch.Tensor):
        return images, str(images.dtype).removeprefix("torch.")
    if images is None or isinstance(images, (str, bytes, os.PathLike)):
        raise TypeError(f"images: expected pixels (a numpy array, a tensor, a PIL image or a list of them), got "
                        f"{type(images).__name__}; for image files, open them first (PIL.Image.open) or run "
                        "`blockspec predict FILE… --checkpoint CHECKPOINT`")
    if isinstance(images, (list, tuple)):
        if not images:
            return torch.zeros((0, *one_image), dtype=torch.uint8), "uint8"
        items = [_pixels(item, one_image) for item in images]
        shapes = sorted({tuple(item.shape) for item, _ in items})
        if len(shapes) > 1:
            raise ValueError(f"images: a list of images of one size, got shapes {', '.join(map(str, shapes))}")
        dtypes = sorted({dtype for _, dtype in items})
        if len(dtypes) > 1:
            raise ValueError(f"images: a list of images of one dtype, got {', '.join(dtypes)}")
        return torch.stack([item for item, _ in items]), dtypes[0]
    from PIL import Image

    if isinstance(images, Image.Image):  # as `blockspec predict` reads a file: in the network's mode, upright
        from blockspec.data.imagefolder import upright_pixels, wide_pixels

        if wide := wide_pixels(images):
            raise ValueError(f"images: {wide}")
        return torch.from_numpy(upright_pixels(images, "L" if one_image[-1] == 1 else "RGB").copy()), "uint8"
    array = np.array(images)  # a copy: PIL's arrays are read-only
    if array.dtype.kind not in "biuf":
        raise TypeError(f"images: expected pixels (numbers), got an array of {array.dtype} from {type(images).__name__}")
    return torch.from_numpy(array), str(array.dtype)


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
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"{flag}: expected a checkpoint file or run directory path, got {type(checkpoint).__name__}")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device: expected a name such as 'cpu', 'cuda:0' or 'auto', or a torch.device, "
                        f"got {type(device).__name__}")
    path = Path(checkpoint)
    payload = load_checkpoint(path, flag=flag)
    spec = spec_inside(payload, path)
    missing = [name for name in TrainedOn.names() if not payload.get(name)]
    if missing:
        raise fail(flag, f"it does not record its {', '.join(missing)} (written before 2026-12-07); "
                   "`blockspec eval` reads them from the data", str(path))
    trained_on = TrainedOn(*(tuple(payload[name]) for name in TrainedOn.names()))
    info = pick_device(str(device), spec.train.amp, spec.train.channels_last,
                       flag="device" if flag == "checkpoint" else "--device")
    model = info.place(model_from_checkpoint(spec, payload, path, flag=flag)).eval()
    return TrainedModel(model, spec, trained_on.classes, trained_on.mean, trained_on.std,
                        int(payload.get("epoch", 0)), TTAViews.of(spec.train), info)
