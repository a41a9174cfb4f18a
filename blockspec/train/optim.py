"""Optimizer, learning-rate schedule and loss from the spec's `train` section."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from blockspec.spec import SGD_MOMENTUM, Spec
from blockspec.train.muon import DeviceRateMuonSGD, MuonSGD, normalised_kernels
from blockspec.train.sgd_update import DeviceRateSGD

Scheduler = LRScheduler | ReduceLROnPlateau | None


def make_optimizer(spec: Spec, model: nn.Module, device_rates: bool = False) -> torch.optim.Optimizer:
    """Weight decay applies to weights only, not to norm parameters or biases; depthwise kernels
    get their own decay when `depthwise_weight_decay` is set (MobileNet puts little or none on
    them: nine weights a channel). Muon takes the kernels that feed a batch norm, at its own
    rate and without decay (it holds their norm instead). `device_rates` gives SGD or Muon its
    rates in device tensors, for steps replayed as CUDA graphs."""
    config = spec.train.optimizer
    trained = [p for p in model.parameters() if p.requires_grad]  # frozen ones are not the optimizer's
    orthogonal = normalised_kernels(model) if config.name == "muon" else []
    separate = depthwise_kernels(model) if config.depthwise_weight_decay is not None else set()
    own_group = separate | {id(p) for p in orthogonal}
    decay = [p for p in trained if p.ndim > 1 and id(p) not in own_group]
    no_decay = [p for p in trained if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if separate:
        depthwise = [p for p in trained if id(p) in separate]
        groups.append({"params": depthwise, "weight_decay": config.depthwise_weight_decay})
    if orthogonal:
        groups.append({"params": orthogonal, "weight_decay": 0.0, "lr": config.muon_lr, "orthogonal": True})
    if config.name in SGD_MOMENTUM:
        if config.name == "muon":
            kind = DeviceRateMuonSGD if device_rates else MuonSGD
        else:
            kind = DeviceRateSGD if device_rates else torch.optim.SGD
        return kind(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    if config.name == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


def depthwise_kernels(model: nn.Module) -> set[int]:
    """ids of the kernels of convolutions with one group per input channel."""
    return {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    }


def peak_lr(spec: Spec) -> float:
    """The highest rate the schedule reaches: onecycle's `max_lr` when given, else `lr`."""
    config = spec.train.scheduler
    return (config.max_lr if config.name == "onecycle" else None) or spec.train.optimizer.lr


def peak_muon_lr(spec: Spec) -> float | None:
    """Muon's highest rate (it peaks with the others'), None for the other optimizers."""
    optimizer = spec.train.optimizer
    return optimizer.muon_lr * peak_lr(spec) / optimizer.lr if optimizer.name == "muon" else None


def momentum_summary(spec: Spec) -> str:
    """The momentum the run really uses, for its header: a cycling onecycle replaces the optimizer's."""
    optimizer = spec.train.optimizer
    cycle = spec.train.scheduler.momentum_cycle()
    if cycle is not None:
        low, high = cycle
        return f"{'momentum' if optimizer.name in SGD_MOMENTUM else 'beta1'} {high:g}→{low:g}→{high:g}"
    return f"momentum {optimizer.momentum:g}" if optimizer.name in SGD_MOMENTUM else ""


def make_scheduler(spec: Spec, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Scheduler:
    config = spec.train.scheduler
    epochs = spec.train.epochs
    total = epochs * steps_per_epoch
    if config.name == "onecycle":
        # Each group peaks at its own rate times the schedule's peak over optimizer.lr.
        scale = peak_lr(spec) / spec.train.optimizer.lr
        pct_start = config.pct_start
        if pct_start * total - 1 == 0:  # the rise ends at step 0, and torch divides by its length
            pct_start *= 1 - 1e-9  # the same schedule, its zero-length rise left out: step 0 at the peak
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] * scale for group in optimizer.param_groups],
            total_steps=total,
            pct_start=pct_start,
            anneal_strategy=config.anneal,
            cycle_momentum=config.cycle_momentum,
            base_momentum=config.base_momentum,
            max_momentum=config.max_momentum,
        )
    if config.name == "cosine":
        # to the nearest step (0.29 × 100 is 28.999…: 29, not 28), halves up, and short enough that
        # the rate falls after its peak (the step after the warm-up is the cosine's first, still
        # at the peak): 0.96 of a one-epoch run of 12 steps would otherwise never decay
        warmup = min(math.floor(config.warmup_epochs * steps_per_epoch + 0.5), max(total - 2, 0))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    if config.name == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max", factor=config.factor, patience=config.patience)
    return None


def steps_per_batch(spec: Spec) -> bool:
    """onecycle and cosine move every batch; step and plateau once per epoch."""
    return spec.train.scheduler.name in {"onecycle", "cosine"}


def ends_in_log_softmax(spec: Spec) -> bool:
    last_block = list(spec.blocks.values())[-1]
    return last_block[-1].kind == "logsoftmax"


def make_loss(spec: Spec) -> nn.Module:
    """NLL for log-softmax heads (they already output log-probabilities), else cross-entropy."""
    if ends_in_log_softmax(spec):
        if spec.train.label_smoothing:
            # Cross-entropy of log-probabilities equals NLL (log_softmax is idempotent), and
            # it supports label smoothing.
            return nn.CrossEntropyLoss(label_smoothing=spec.train.label_smoothing)
        return nn.NLLLoss()
    return nn.CrossEntropyLoss(label_smoothing=spec.train.label_smoothing)
