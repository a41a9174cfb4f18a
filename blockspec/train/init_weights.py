"""Starting a run from another run's weights (fine-tuning, or a longer recipe from a short one).

Every tensor whose name and shape the new network shares is copied, batch-norm statistics
included; the rest stays as built: a head for another number of classes, layers the other
network lacks. What was taken and what was not is said, since a spec that shares nothing
with the checkpoint would otherwise train from scratch without a word.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from blockspec.errors import fail

_NAMED = 4  # tensors left as built that the report names; the rest are counted


@dataclass(frozen=True)
class StartWeights:
    weights: dict[str, torch.Tensor]
    source: str  # the file, as given


def start_from(
    model: nn.Module, start: StartWeights, keep: dict[str, str] | None = None, flag: str = "--init-from"
) -> str:
    """Copy into `model` what fits of `start.weights`, except the tensors `keep` names (name →
    why it stays); one line saying what was and was not."""
    own = model.state_dict()
    keep = keep or {}
    fits = {name: value for name, value in _fitting(own, start, flag).items() if name not in keep}
    model.load_state_dict(fits, strict=False)
    left = [name for name in own if name not in fits]
    report = f"started from {start.source}: {len(fits)} of {len(own)} tensors"
    if not left:
        return report
    named = [f"{name} ({keep[name]})" if name in keep else
             f"{name} ({_shape(own[name])} here, "
             f"{_shape(start.weights[name]) + ' there' if name in start.weights else 'not there'})"
             for name in sorted(left, key=lambda name: name not in keep)[:_NAMED]]
    more = f" and {len(left) - _NAMED} more" if len(left) > _NAMED else ""
    return f"{report}; left as built: {', '.join(named)}{more}"


def check_fits(model: nn.Module, start: StartWeights, flag: str = "--init-from") -> None:
    """Refuse, before a run starts, weights of which nothing fits `model`."""
    _fitting(model.state_dict(), start, flag)


def _fitting(own: dict[str, torch.Tensor], start: StartWeights, flag: str) -> dict[str, torch.Tensor]:
    fits = {name: value for name, value in start.weights.items() if name in own and own[name].shape == value.shape}
    if not any(value.is_floating_point() for value in fits.values()):
        raise fail(flag, f"none of its {len(start.weights)} tensors has a name and shape of this network's "
                   f"(its first: {_first(start.weights)}; this network's: {_first(own)})", start.source)
    return fits


def _shape(tensor: torch.Tensor) -> str:
    return "×".join(map(str, tensor.shape)) or "scalar"


def _first(weights: dict[str, torch.Tensor]) -> str:
    name, value = next(iter(weights.items()))
    return f"{name} {_shape(value)}"
