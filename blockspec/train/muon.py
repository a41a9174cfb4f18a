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
    """Approximately U·Vᵀ of `matrix` = U·S·Vᵀ (its singular values pushed towards 1); a stack
    of matrices (…, rows, cols) is taken one matrix at a time, in batched products. Each
    iteration is three products, the scalings fused into them (`baddbmm`): X ← aX + (bG + cG²)X
    with G = XXᵀ."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.reshape(-1, *matrix.shape[-2:])
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    for _ in range(steps):
        gram = torch.bmm(x, x.mT)
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.mT if tall else x).reshape(matrix.shape)


def orthogonalize_each(matrices: list[torch.Tensor]) -> list[torch.Tensor]:
    """`orthogonalize` of every matrix, those of one shape stacked into one batch: the same
    numbers from about forty kernels a shape instead of forty a matrix (the flagship's eleven
    kernels have six shapes), which a GPU's step, waiting on launches, feels."""
    by_shape: dict[torch.Size, list[int]] = {}
    for index, matrix in enumerate(matrices):
        by_shape.setdefault(matrix.shape, []).append(index)
    results: list[torch.Tensor] = list(matrices)
    for indices in by_shape.values():
        batch = orthogonalize(torch.stack([matrices[index] for index in indices]))
        for index, result in zip(indices, batch.unbind(), strict=True):
            results[index] = result
    return results


def orthogonal_updates(params: list[torch.Tensor], directions: list[torch.Tensor]) -> list[torch.Tensor]:
    """Rescale each kernel in `params` to norm √out and return its orthogonalised direction,
    the step it then takes at rate 1."""
    scales = torch._foreach_norm(params)
    torch._foreach_add_(scales, 1e-12)
    torch._foreach_reciprocal_(scales)
    torch._foreach_mul_(scales, [param.size(0) ** 0.5 for param in params])
    torch._foreach_mul_(params, scales)
    flat = [direction.reshape(len(direction), -1).float() for direction in directions]
    return [
        update.view_as(param).to(param.dtype)
        for update, param in zip(orthogonalize_each(flat), params, strict=True)
    ]


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
            if not params:
                continue
            if group["orthogonal"]:
                self._muon_steps(params, group)
                continue
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            sgd(params, [p.grad for p in params], buffers, weight_decay=group["weight_decay"],
                momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=group["nesterov"],
                maximize=False)
            for param, buffer in zip(params, buffers, strict=True):
                self.state[param]["momentum_buffer"] = buffer  # sgd made the missing ones

    def _muon_steps(self, params: list[torch.Tensor], group: dict) -> None:
        """Rescale each kernel to norm √out, then move it along its orthogonalised (Nesterov)
        momentum; a buffer starts at zero, so the first is the gradient, as torch's.
        (make_optimizer gives these groups no weight decay: the rescaling holds the norm.)"""
        for param in params:
            if "momentum_buffer" not in self.state[param]:
                self.state[param]["momentum_buffer"] = torch.zeros_like(param)
        buffers = [self.state[param]["momentum_buffer"] for param in params]
        grads = [param.grad for param in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        torch._foreach_mul_(buffers, group["momentum"])
        torch._foreach_add_(buffers, grads)
        directions = torch._foreach_add(grads, buffers, alpha=group["momentum"]) if group["nesterov"] else buffers
        torch._foreach_sub_(params, orthogonal_updates(params, directions), alpha=group["lr"])


class DeviceRateMuonSGD(DeviceRateSGD):
    """MuonSGD with each group's rate and momentum in device tensors (DeviceRateSGD's), so a
    CUDA graph can replay the step while the schedule moves them. The same update and the same
    `momentum_buffer` state as MuonSGD, so checkpoints pass between the two; the rates enter as
    tensor products instead of `alpha=` numbers, which rounds differently in the last bits."""

    def __init__(self, params, lr: float, momentum: float, nesterov: bool) -> None:
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov)
        for group in self.param_groups:
            group.setdefault("orthogonal", False)

    def _step_of(self, group: dict, params: list[torch.Tensor], directions: list[torch.Tensor]) -> list[torch.Tensor]:
        return orthogonal_updates(params, directions) if group["orthogonal"] else directions
