"""`train.whiten_stem`: the first convolution starts as a whitening of the training images'
patches, so from the first step the network sees its input as decorrelated, unit-variance
components, largest variance first (the initialisation airbench credits with most of its
speed on CIFAR-10)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blockspec.errors import fail
from blockspec.layers.base import Window
from blockspec.layers.conv import ConvSpec
from blockspec.spec import Spec

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    import torch
    from torch import nn

WHITENING_IMAGES = 2000  # ~1.8 M patches: a stable covariance of a few dozen dimensions
EIGENVALUE_FLOOR = 5e-4  # keeps near-silent directions from being scaled up without bound


def stem_layer(spec: Spec) -> ConvSpec:
    """The first layer, which `whiten_stem` needs to be a full convolution with at most two
    filters (a ± pair) per patch direction."""
    block, layers = next(iter(spec.blocks.items()))
    layer = layers[0]
    if not isinstance(layer, ConvSpec) or layer.groups != 1:
        kind = layer.kind if not isinstance(layer, ConvSpec) else f"{layer.kind} with groups {layer.groups}"
        raise fail(
            "train.whiten_stem",
            f"needs the first layer (blocks.{block}[0]) to be a full convolution (conv, dilated or "
            f"strided with groups 1), not {kind}",
            spec.train.whiten_stem,
        )
    directions = spec.input.channels * layer.k**2
    if layer.out > 2 * directions:
        raise fail(
            "train.whiten_stem",
            f"the first layer (blocks.{block}[0]) has {layer.out} filters but its {layer.k}×{layer.k} "
            f"patches of {spec.input.channels} channels have {directions} directions, enough for "
            f"{2 * directions} (± pairs); lower its out or raise its k, or start it at random (whiten_stem: false)",
            spec.train.whiten_stem,
        )
    span = Window(layer.k, dilation=layer.dilation).effective_k
    if span > min(spec.input.hw):  # the whitening reads whole, unpadded patches of the images
        raise fail(
            "train.whiten_stem",
            f"the first layer (blocks.{block}[0]) sees {span}×{span} windows, larger than the "
            f"{'×'.join(map(str, spec.input.hw))} images: they hold no whole patch to whiten",
            spec.train.whiten_stem,
        )
    return layer


def frozen_stem_params(spec: Spec) -> int:
    """Parameters `whiten_stem: frozen` keeps fixed: the first convolution's kernel (its bias,
    if any, still trains)."""
    if spec.train.whiten_stem != "frozen":
        return 0
    layer = stem_layer(spec)
    return layer.out * spec.input.channels * layer.k**2


def whitening_filters(
    spec: Spec, images: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """The first layer's filters: the principal directions of normalised k×k patches of up to
    WHITENING_IMAGES training images (drawn with the run's seed), each scaled by 1/√variance
    and paired with its negative so that an activation after it loses neither sign.

    `images` are uint8 NHWC, as `ImageData` holds them.
    """
    import torch
    from torch.nn import functional

    from blockspec.data.loader import normalize_batch

    layer = stem_layer(spec)
    generator = torch.Generator().manual_seed(spec.train.seed)
    rows = torch.randperm(len(images), generator=generator)[:WHITENING_IMAGES].sort().values.numpy()
    dims = spec.input.channels * layer.k**2
    total, outer, count = torch.zeros(dims, dtype=torch.float64), torch.zeros(dims, dims, dtype=torch.float64), 0
    for chunk in torch.from_numpy(images[rows]).split(500):
        x = normalize_batch(chunk.permute(0, 3, 1, 2), mean, std)
        patches = functional.unfold(x, layer.k, dilation=layer.dilation).transpose(1, 2).reshape(-1, dims)
        total += patches.sum(0, dtype=torch.float64)
        outer += (patches.T @ patches).double()
        count += len(patches)
    centre = total / count
    covariance = outer / count - torch.outer(centre, centre)
    variances, directions = torch.linalg.eigh(covariance)  # ascending
    kept = (layer.out + 1) // 2
    variances, directions = variances.flip(0)[:kept], directions.flip(1)[:, :kept]
    scaled = (directions / (variances.clamp(min=0) + EIGENVALUE_FLOOR).sqrt()).T
    filters = torch.cat([scaled, -scaled])[: layer.out]
    return filters.float().reshape(layer.out, spec.input.channels, layer.k, layer.k)


def stem_conv(model: nn.Module) -> nn.Conv2d:
    """The convolution of the model's first layer (`stem_layer` has checked it has one)."""
    from torch import nn

    return next(module for module in model[0][0].modules() if isinstance(module, nn.Conv2d))


def apply_whitening(model: nn.Module, spec: Spec, filters: torch.Tensor | None) -> None:
    """Copy `filters` into the first convolution (None: a resumed run, whose checkpoint holds
    them), and keep them out of training when the spec says `frozen`."""
    import torch

    conv = stem_conv(model)
    if filters is not None:
        with torch.no_grad():
            conv.weight.copy_(filters)
    conv.weight.requires_grad_(spec.train.whiten_stem != "frozen")
