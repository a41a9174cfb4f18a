"""The few torch modules blockspec defines itself (everything else is stock `torch.nn`)."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn


class Residual(nn.Module):
    """y = act(body(x) + shortcut(x))."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class BlockNet(nn.Sequential):
    """The built network: one child per spec block (`model.C1`, …, `model.output`)."""

    def __init__(self, name: str, blocks: OrderedDict[str, nn.Module]) -> None:
        super().__init__(blocks)
        self.spec_name = name

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}"
