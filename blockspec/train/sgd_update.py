"""torch.optim.SGD with each group's rate and momentum held in device tensors.

A CUDA graph replays the kernels it captured with the numbers they were launched with, and
`torch.optim.SGD` hands its rate and momentum to its kernels as host numbers (a tensor rate
is read back with `.item()`), so a captured `optimizer.step()` would keep the first step's
rate while the schedule moves on. Here the schedule's numbers are copied into device scalars
(`load_rates`, one fill kernel each, nothing waited for) and the update reads them there.
The state is torch's own (`momentum_buffer` per parameter), so checkpoints are
interchangeable with `torch.optim.SGD`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class DeviceRateSGD(torch.optim.SGD):
    """SGD with weight decay, momentum and Nesterov (no dampening), computed as torch does.

    Outside a capture `step` loads the rates itself; a graph's owner calls `load_rates`
    before each replay, since a replay runs no Python.
    """

    def __init__(self, params, lr: float, momentum: float, nesterov: bool) -> None:
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov)
        # the device of any parameter: a group may be empty (every kernel Muon's, none decayed)
        first = next(param for group in self.param_groups for param in group["params"])
        self.rates = [
            (torch.zeros((), device=first.device), torch.zeros((), device=first.device)) for _ in self.param_groups
        ]

    def load_rates(self) -> None:
        """Copy each group's current rate and momentum (the schedule moves them) to the device."""
        for group, (lr, momentum) in zip(self.param_groups, self.rates, strict=True):
            lr.fill_(group["lr"])
            momentum.fill_(group["momentum"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:
        """One update of every parameter that has a gradient.

        torch starts a momentum buffer as a copy of the first step's direction d; a zero buffer
        gives m·0 + d = d exactly, so missing buffers start at zero and every step launches the
        same kernels (a graph needs that).
        """
        if closure is not None:
            raise ValueError(f"{type(self).__name__} takes no closure")
        if not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()):
            self.load_rates()
        for group, (lr, momentum) in zip(self.param_groups, self.rates, strict=True):
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params, lr, momentum)

    def _update(self, group: dict, params: list[torch.Tensor], lr: torch.Tensor, momentum: torch.Tensor) -> None:
        """SGD's update of one group's parameters, read from the device rates."""
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        buffers = [self._buffer(p) for p in params]
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_add_(buffers, grads)
        if group["nesterov"]:
            directions = torch._foreach_add(grads, torch._foreach_mul(buffers, momentum))
        else:
            directions = buffers
        torch._foreach_sub_(params, torch._foreach_mul(self._step_of(group, params, directions), lr))

    def _step_of(self, group: dict, params: list[torch.Tensor], directions: list[torch.Tensor]) -> list[torch.Tensor]:
        """The step each parameter takes at rate 1 along its momentum direction: the direction
        itself (a subclass may transform it)."""
        return directions

    def _buffer(self, param: torch.Tensor) -> torch.Tensor:
        state = self.state[param]
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state["momentum_buffer"]
