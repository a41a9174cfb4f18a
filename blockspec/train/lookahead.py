"""Lookahead: the trained weights pulled back to a slow copy every few steps.

Why, beside the evaluation-only EMA (`ema.py`): the EMA averages the weights but never feeds
back, so training itself stays as noisy as its step; here the average is where training
restarts from, every `every` steps. The slow copy keeps decay·(t/T)^power of itself at step t
of T (the schedule of Keller Jordan's airbench, with decay 0.95^5 and power 3): early on it
follows the weights almost exactly and training runs at full speed; late in the run it averages
strongly, when the rate has fallen and the noise of single steps dominates.

BatchNorm's running statistics are pulled back with the weights (the restarted weights and
their statistics stay a pair); integer counters are copied. At the end of an epoch the slow copy
takes one more pull and the weights are set to it, so evaluation and checkpoints see the
averaged weights whatever the step count, and no step of the epoch is lost (with `every` at
least the steps an epoch, discarding the steps since the last pull discarded all training). All updates are in place, so a CUDA graph captured around the training step keeps
reading the same tensors.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from blockspec.spec import LookaheadSpec
from blockspec.train.ema import floats_and_counters, unzip_pairs


class Lookahead:
    """The slow copy of a model and the step count that sets its decay."""

    def __init__(self, model: nn.Module, config: LookaheadSpec, total_steps: int) -> None:
        self.slow = copy.deepcopy(model).requires_grad_(False)
        self.config, self.total_steps = config, total_steps
        self.steps = 0
        # (slow, trained) lists, built once: training updates the model's tensors in place
        floats, counters = floats_and_counters(self.slow, model)
        self._pairs = unzip_pairs(floats), counters

    def decay(self, step: int) -> float:
        """How much of itself the slow copy keeps at `step` (counted from 1)."""
        return self.config.decay * min(step / self.total_steps, 1.0) ** self.config.power

    @torch.no_grad()
    def after_step(self) -> None:
        """Called after every optimizer step: every `every` steps, slow ← lerp(slow, weights,
        1 − decay) and the weights restart from it."""
        self.steps += 1
        if self.steps % self.config.every == 0:
            self._pull_back(1.0 - self.decay(self.steps))

    @torch.no_grad()
    def end_epoch(self) -> None:
        """One more pull, as every `every`th step takes (a no-op right after one, when the
        weights are the slow copy), so the epoch ends on the slow copy with its last steps in it."""
        self._pull_back(1.0 - self.decay(max(self.steps, 1)))

    def _pull_back(self, weight: float) -> None:
        (slow_floats, floats), (slow_counters, counters) = self._pairs
        if weight:
            torch._foreach_lerp_(slow_floats, floats, weight)
        torch._foreach_copy_(floats, slow_floats)
        if slow_counters:
            torch._foreach_copy_(slow_counters, counters)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.slow.load_state_dict(state["slow"])
        self.steps = int(state["steps"])
