"""Test-time augmentation: scores averaged over cheap views of each test image.

A mirror image and small diagonal shifts are views the network saw in training (flip and
translate augmentation), so averaging them removes some of the variance of one forward pass
at no training cost. The shifted views follow the translation TTA of Keller Jordan's
airbench: they take half the weight, the unshifted views the other half.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from blockspec.spec import TrainSpec


@dataclass(frozen=True)
class TTAViews:
    """Which views of each test image are averaged: the spec's `train.tta_flip` and
    `train.tta_shift`, carried as one value from the recipe to `evaluate`."""

    flip: bool = False
    shift: int = 0

    @classmethod
    def of(cls, recipe: TrainSpec) -> TTAViews:
        """The views a spec's `train` section asks for."""
        return cls(recipe.tta_flip, recipe.tta_shift)

    def describe(self) -> str:
        """The views averaged, in words (empty for the image alone)."""
        parts = (["its mirror"] if self.flip else []) + ([f"shifts of ±{self.shift} px"] if self.shift else [])
        return " and ".join(parts)

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's scores for `x` (NCHW), averaged over the image, its mirror with `flip`,
        and, with `shift`, each of those moved by (+shift, +shift) and (-shift, -shift) pixels.

        All views go through the model as one batch (in evaluation mode each image's scores do
        not depend on the others'): one forward pass instead of one per view, which is what an
        evaluation costs a GPU when its steps wait on launches."""
        views = [x, torch.flip(x, dims=[3])] if self.flip else [x]
        plain = len(views)
        if self.shift:
            views += [shifted(view, offset) for view in views for offset in (self.shift, -self.shift)]
        # averaged in float32: a bf16 autocast's scores, averaged in bf16, round near-ties apart
        scores = model(torch.cat(views) if len(views) > 1 else x).float().unflatten(0, (len(views), len(x)))
        logits = scores[:plain].mean(0)
        if not self.shift:
            return logits
        return (logits + scores[plain:].mean(0)) / 2


def shifted(x: torch.Tensor, offset: int) -> torch.Tensor:
    """`x` moved `offset` pixels right and down (left and up when negative), edges reflected."""
    pad = abs(offset)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    height, width = x.shape[-2:]
    top = pad - offset
    window = padded[..., top : top + height, top : top + width]
    if x.is_contiguous(memory_format=torch.channels_last):
        return window.contiguous(memory_format=torch.channels_last)
    return window.contiguous()
