"""An exponential moving average of the weights, with the decay warmed up.

A fixed decay of 0.999 keeps two thirds of the random initialisation in the average after
one CIFAR epoch, so early evaluations of the average sit at chance. The decay used at update
n is min(decay, (1 + n) / (10 + n)), the warm-up timm's model EMA uses: the average follows
the weights closely at first and settles into the full horizon after about 10 / (1 - decay)
updates. The decay is computed on the parameters' device, so updates never synchronise a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """The averaged copy of `model`, BatchNorm statistics included."""
    return AveragedModel(model, multi_avg_fn=warmed_up_ema(decay), use_buffers=True)


def warmed_up_ema(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):  # counters such as num_batches_tracked
            torch._foreach_copy_(averaged, current)
            return
        n = updates.to(torch.float32)
        weight = 1 - torch.clamp((1 + n) / (10 + n), max=decay)
        torch._foreach_lerp_(averaged, current, weight.to(averaged[0].dtype))

    return update
