"""`train.compile`: a mode that replays CUDA graphs marks every training call as a new step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from blockspec.train.session import StepMarked, compiled


def test_graph_replaying_modes_mark_each_call_as_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    marks: list[int] = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    marked = StepMarked(model)
    assert torch.equal(marked(x), model(x))
    marked(x)
    assert len(marks) == 2
    for mode in ("reduce-overhead", "max-autotune"):
        assert isinstance(compiled(model, mode), StepMarked)


def test_other_modes_are_plain_compiled_modules() -> None:
    model = nn.Linear(3, 2)
    for mode in (True, "default"):
        module = compiled(model, mode)
        assert not isinstance(module, StepMarked)
        assert module._orig_mod is model  # torch.compile's wrapper, compiled at its first call
