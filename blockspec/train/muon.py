"""Muon for convolution kernels that feed a batch norm, SGD for every other parameter.

Muon (Jordan et al. 2024, the optimizer of the fastest CIFAR-10 speedruns) replaces a
kernel's momentum direction by the nearest semi-orthogonal matrix (Newton–Schulz iterations
on the kernel flattened to out × in·k·k), so every direction of the filter bank moves by the
same amount instead of the few that dominate the gradient. As in Jordan's airbench it is used
here only on kernels whose output goes straight into a batch norm: their scale cannot change
what the network computes, so each step first rescales the kernel to norm √out and the rate
is then the angle a filter turns per step, with no weight decay needed to hold the scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.sgd import sgd

from blockspec.train.sgd_update import DeviceRateSGD

# Coefficients of Jordan's quintic iteration: it pushes every singular value into about
# [0.7, 1.2] in five steps, which is as orthogonal as the update needs to be.
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U·Vᵀ of `matrix` = U·S·Vᵀ (its singular values pushed towards 1)."""
    a, b, c = NEWTON_SCHULZ
    x = matrix / (matrix.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def orthogonal_update(param: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Rescale the kernel `param` to norm √out and return the orthogonalised `direction`, the
    step it then takes at rate 1."""
    param.mul_(param.size(0) ** 0.5 / (param.norm() + 1e-12))
    return orthogonalize(direction.reshape(len(direction), -1).float()).view_as(param).to(param.dtype)


def normalised_kernels(model: nn.Module) -> list[nn.Parameter]:
    """Kernels of ungrouped convolutions followed directly by a batch norm (their unit's next
    module): the ones whose scale the network's output does not depend on."""
    kernels = []
    for parent in model.modules():
        children = list(parent.children())
        for conv, after in zip(children, children[1:]):
            if (
                isinstance(conv, nn.Conv2d)
                and conv.groups == 1
                and isinstance(after, nn.BatchNorm2d)
                and conv.weight.requires_grad
            ):
                kernels.append(conv.weight)
    return kernels


class MuonSGD(torch.optim.Optimizer):
    """Groups flagged `orthogonal` take Muon steps on renormalised kernels; the others take
    torch's own SGD step (`torch.optim.sgd.sgd`: weight decay, momentum, Nesterov, the same
    `momentum_buffer` state). Both read `lr` and `momentum` from their group, so one schedule
    (onecycle's rate and momentum cycle) drives them together."""

    def __init__(self, params, lr: float, momentum: float, nesterov: bool) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": 0.0,
                                  "orthogonal": False})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:
        if closure is not None:
            raise ValueError("MuonSGD takes no closure")
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["orthogonal"]:
                for param in params:
                    self._muon_step(param, group)
                continue
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            sgd(params, [p.grad for p in params], buffers, weight_decay=group["weight_decay"],
                momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=group["nesterov"],
                maximize=False)
            for param, buffer in zip(params, buffers, strict=True):
                self.state[param]["momentum_buffer"] = buffer  # sgd made the missing ones

    def _muon_step(self, param: torch.Tensor, group: dict) -> None:
        """Rescale the kernel to norm √out, then move it along its orthogonalised (Nesterov)
        momentum; the buffer starts at zero, so the first is the gradient, as torch's.
        (make_optimizer gives these groups no weight decay: the rescaling holds the norm.)"""
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(param)
        buffer = state["momentum_buffer"]
        grad = param.grad.add(param, alpha=group["weight_decay"]) if group["weight_decay"] else param.grad
        buffer.mul_(group["momentum"]).add_(grad)
        direction = grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
        param.sub_(orthogonal_update(param, direction), alpha=group["lr"])


class DeviceRateMuonSGD(DeviceRateSGD):
    """MuonSGD with each group's rate and momentum in device tensors (DeviceRateSGD's), so a
    CUDA graph can replay the step while the schedule moves them. The same update and the same
    `momentum_buffer` state as MuonSGD, so checkpoints pass between the two; the rates enter as
    tensor products instead of `alpha=` numbers, which rounds differently in the last bits."""

    def __init__(self, params, lr: float, momentum: float, nesterov: bool) -> None:
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov)
        for group in self.param_groups:
            group.setdefault("orthogonal", False)

    def _update(self, group: dict, params: list[torch.Tensor], lr: torch.Tensor, momentum: torch.Tensor) -> None:
        if not group["orthogonal"]:
            super()._update(group, params, lr, momentum)
            return
        for param in params:
            grad = param.grad.add(param, alpha=group["weight_decay"]) if group["weight_decay"] else param.grad
            buffer = self._buffer(param)
            buffer.mul_(momentum).add_(grad)
            direction = grad + buffer * momentum if group["nesterov"] else buffer
            param.sub_(orthogonal_update(param, direction) * lr)
