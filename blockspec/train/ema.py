"""An exponential moving average of the weights, with the decay warmed up.

A fixed decay of 0.999 keeps two thirds of the random initialisation in the average after
one CIFAR epoch, so early evaluations of the average sit at chance. The decay used at update
n is min(decay, (1 + n) / (10 + n)), TensorFlow's `ExponentialMovingAverage(num_updates=n)`
rule: the average follows the weights closely at first and reaches the full decay after about
9 / (1 - decay) updates (0.999: about 9,000 steps, epoch 23 of the flagship's 40 at batch 128). The first update copies the weights.

Why not torch's `AveragedModel`: its update reads its step counter on the host (`if
n_averaged == 0`, and a copy of the counter to the device), which stalls a GPU's queue at
every step. Here the counter lives beside the weights and every update is a few foreach
kernels the host never waits for. The state dict keeps `AveragedModel`'s layout
(`module.*`, `n_averaged`), so checkpoints of either load into the other.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn


class WeightAverage(nn.Module):
    """The averaged copy of a model, BatchNorm statistics included (`module` is evaluated)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        device = next(model.parameters()).device
        self.register_buffer("n_averaged", torch.zeros((), dtype=torch.long, device=device))
        # (source model, its tensor lists); the model weakly referenced, as a plain attribute
        # would register it as a submodule and change the state dict.
        self._lists: tuple[weakref.ref[nn.Module], TensorLists] | None = None

    def _pairs(self, model: nn.Module) -> TensorLists:
        """(averaged, current) tensor lists: integer counters, and floats grouped by dtype.

        Built once per source model: training updates its tensors in place, so the same
        lists serve every step and the host does no per-tensor work.
        """
        if self._lists is None or self._lists[0]() is not model:
            floats, counters = floats_and_counters(self.module, model)
            by_dtype: dict[torch.dtype, TensorPairs] = {}
            for dtype in dict.fromkeys(a.dtype for a, _ in floats):
                by_dtype[dtype] = unzip_pairs([pair for pair in floats if pair[0].dtype == dtype])
            self._lists = (weakref.ref(model), (counters, by_dtype))
        return self._lists[1]

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        counters, floats = self._pairs(model)
        if counters[0]:  # such as BatchNorm's num_batches_tracked: copied, not averaged
            torch._foreach_copy_(*counters)
        n = self.n_averaged.to(torch.float32)
        weight = torch.where(n == 0, 1.0, 1 - torch.clamp((1 + n) / (10 + n), max=self.decay))
        for dtype, (kept, incoming) in floats.items():
            # a·(1 − w) + c·w: foreach lerp takes its weight only as a host number
            torch._foreach_mul_(kept, (1 - weight).to(dtype))
            torch._foreach_add_(kept, torch._foreach_mul(incoming, weight.to(dtype)))
        self.n_averaged += 1


TensorPair = tuple[torch.Tensor, torch.Tensor]
TensorPairs = tuple[list[torch.Tensor], list[torch.Tensor]]
TensorLists = tuple[TensorPairs, dict[torch.dtype, TensorPairs]]


def floats_and_counters(replica: nn.Module, model: nn.Module) -> tuple[list[TensorPair], TensorPairs]:
    """A replica of a model paired with it tensor by tensor, parameters then buffers: the floating
    pairs, and the integer ones (such as BatchNorm's counters) as (replica, model) lists."""
    pairs = list(zip([*replica.parameters(), *replica.buffers()], [*model.parameters(), *model.buffers()], strict=True))
    floats = [pair for pair in pairs if pair[0].is_floating_point()]
    return floats, unzip_pairs([pair for pair in pairs if not pair[0].is_floating_point()])


def unzip_pairs(pairs: list[TensorPair]) -> TensorPairs:
    """[(a, b), …] → ([a, …], [b, …]): the two sides of tensor pairs as lists for foreach ops."""
    return [a for a, _ in pairs], [c for _, c in pairs]


def make_ema(model: nn.Module, decay: float) -> WeightAverage:
    return WeightAverage(model, decay)
