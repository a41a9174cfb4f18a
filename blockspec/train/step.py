"""One training step: forward, loss, backward, weight update and weight average.

`EagerStep` launches every kernel from Python, as any loop does. On a GPU a small network's
step then waits on the host: the flagship's step at batch 128 took 8.8 ms on an H200 and at
batch 512 barely more (docs/benchmarks.md), the launches of its few hundred small kernels
setting the pace. `GraphedStep` captures the whole step once as a CUDA graph and replays it:
one launch a step, the host only copying the batch in and the schedule's numbers
(`sgd_update.DeviceRateSGD` or its Muon subclass, which the optimizer must be). It follows torch's whole-network capture recipe: warm-up steps
on a side stream, gradients allocated inside the capture, autocast without its cast cache.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch
from torch import nn

from blockspec.train.ema import WeightAverage
from blockspec.train.sgd_update import DeviceRateSGD

Autocast = Callable[[], contextlib.AbstractContextManager]
Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class EagerStep:
    """The plain step; returns (loss, logits)."""

    def __init__(
        self,
        forward: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        ema: WeightAverage | None,
        model: nn.Module,
        autocast: Autocast,
    ) -> None:
        self.forward, self.loss_fn, self.optimizer = forward, loss_fn, optimizer
        self.ema, self.model, self.autocast = ema, model, autocast

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.autocast():
            logits = self.forward(x)
            loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss, logits


class GraphedStep:
    """The step replayed as one CUDA graph (SGD or Muon with device rates); returns (loss, logits).

    The first `warmup` steps run eagerly on a side stream (lazy initialisation and cuDNN's
    algorithm search must not happen during capture); the next batch of the largest size yet
    is captured and replayed, and later steps of its shape replay it. A batch of another shape
    (an epoch's short last batch) runs the same computation eagerly. If capture fails the run
    carries on eagerly and says so once.

    The optimizer's state tensors are bound when the step is captured, so a checkpoint
    restored before then (`optimizer.load_state_dict` replaces them) is the one trained.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module,
        optimizer: DeviceRateSGD,
        ema: WeightAverage | None,
        autocast: Autocast,
        warmup: int = 3,
    ) -> None:
        if not isinstance(optimizer, DeviceRateSGD):
            raise TypeError(f"a graphed step needs DeviceRateSGD, not {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.eager = EagerStep(model, loss_fn, optimizer, ema, model, autocast)
        self.warmup = warmup
        self.steps = 0
        self.largest = 0  # the capture waits for a full batch, not an epoch's short last one
        self.failed = ""  # why capture failed, once it has
        self.side: torch.cuda.Stream | None = None
        # (graph, its input batch, its outputs: loss and logits) once captured
        self.captured: tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def state(self) -> str:
        """What the run's records say of the graph: a failed capture trains on eagerly, and its
        figures must not pass for the graph's."""
        if self.captured is not None:
            return "captured"
        return f"failed, trained eagerly ({self.failed})" if self.failed else "not captured yet"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.steps += 1
        self.largest = max(self.largest, len(x))
        if self.captured is not None and x.shape == self.captured[1].shape and y.shape == self.captured[2].shape:
            graph, static_x, static_y, loss, logits = self.captured
            self.optimizer.load_rates()  # a replay runs no Python: the rates go in first
            static_x.copy_(x)
            static_y.copy_(y)
            graph.replay()
            return loss, logits
        if self.captured is None and not self.failed and self.steps > self.warmup and len(x) == self.largest:
            captured = self._capture(x, y)
            if captured is not None:
                return captured
        if self.captured is None:
            return self._on_side_stream(x, y)
        return self.compute(x, y)

    def compute(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The eager step's arithmetic, what is captured: inside a capture its gradients, set to
        None first, are allocated in the graph's pool and written, not accumulated."""
        loss, logits = self.eager(x, y)
        return loss.detach(), logits.detach()

    def _side_stream(self, device: torch.device) -> torch.cuda.Stream:
        """One stream for the warm-up steps and the capture: libraries such as cuBLAS set up
        per stream, and that set-up must happen before capture, not during it."""
        if self.side is None:
            self.side = torch.cuda.Stream(device)
        return self.side

    def _on_side_stream(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        side = self._side_stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            result = self.compute(x, y)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return result

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        static_x, static_y = x.clone(), y.clone()
        graph = torch.cuda.CUDAGraph()
        self.optimizer.load_rates()  # the step does not load them while capturing
        try:
            torch.cuda.synchronize(x.device)
            # thread_local: a DataLoader's pin-memory thread allocating meanwhile does not void the capture
            with torch.cuda.graph(graph, stream=self._side_stream(x.device), capture_error_mode="thread_local"):
                loss, logits = self.compute(static_x, static_y)
        except RuntimeError as error:
            self.failed = f"{type(error).__name__}: {error}"
            self.optimizer.zero_grad(set_to_none=True)
            warnings.warn(f"capturing the training step as a CUDA graph failed ({error}); training on eagerly")
            return None
        self.captured = (graph, static_x, static_y, loss, logits)
        graph.replay()
        return loss, logits


def make_step(
    forward: nn.Module,
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: WeightAverage | None,
    autocast: Autocast,
    graphed: bool,
) -> Step:
    """`GraphedStep` when asked for (the caller checks CUDA and the optimizer), else `EagerStep`."""
    if graphed:
        return GraphedStep(model, loss_fn, optimizer, ema, autocast)
    return EagerStep(forward, loss_fn, optimizer, ema, model, autocast)
