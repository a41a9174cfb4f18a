"""Independent cross-check of the five reference specs against hand-written PyTorch ports.

Each network below is written the way a user porting it from its README would write it:
layer order, shapes and per-layer parameter counts from the published summary table, and
the reading stated in the spec's `description` where the README is ambiguous (dilation
values, dropout placement, bias). Nothing here is generated from blockspec, so agreement
on parameter counts, state_dict layout, outputs, shapes and receptive fields is evidence
that the specs build the published networks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blockspec import build_model, load_spec, summarize

SPECS = Path(__file__).resolve().parents[1] / "architectures" / "reference"


class DepthwiseSeparableConv(nn.Module):
    """Depthwise 3×3 (groups = in channels) then pointwise 1×1, as the READMEs tabulate it."""

    def __init__(self, cin: int, cout: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=bias)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class FourBlocks128k(nn.Module):
    """dhairyag/4blocks_CIFAR10 from its torchinfo table (conv biases on: 224 = 3·8·9 + 8).

    The dilated layer is the first C3 conv (dilation 2, padding 2 keeps 16×16); the depthwise
    conv carries the stride (its row is already 16×16).
    """

    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, padding: int = 1, **conv: int) -> list[nn.Module]:
            conv2d = nn.Conv2d(cin, cout, 3, padding=padding, **conv)
            return [conv2d, nn.BatchNorm2d(cout), nn.ReLU()]

        self.c1 = nn.Sequential(*cbr(3, 8), *cbr(8, 16), *cbr(16, 16))
        self.c2 = nn.Sequential(
            DepthwiseSeparableConv(16, 32, stride=2, bias=True),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            *cbr(32, 32),
            *cbr(32, 32),
        )
        self.c3 = nn.Sequential(*cbr(32, 48, dilation=2, padding=2), *cbr(48, 48))
        self.c4 = nn.Sequential(*cbr(48, 64, stride=2), *cbr(64, 64), nn.Conv2d(64, 64, 1))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def spatial(self, x: Tensor) -> Tensor:
        return self.c4(self.c3(self.c2(self.c1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.gap(self.spatial(x)).flatten(1))


class DwsDilated236k(nn.Module):
    """The dws-dilated-236k torchsummary table: bias-free convs, 32×32 throughout.

    Its "depthwise" rows are grouped convs (groups from the weight counts), dilation values
    come from the prose, and the pointwise rows have no Dropout row after them.
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()

        def unit(
            cin: int, cout: int, k: int = 3, d: int = 1, g: int = 1, drop: bool = True
        ) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, k, padding=d * (k // 2), dilation=d, groups=g, bias=False)
            layers = [conv, nn.BatchNorm2d(cout), nn.ReLU()]
            return nn.Sequential(*layers, *([nn.Dropout(p)] if drop else []))

        self.block1 = nn.Sequential(
            unit(3, 32), unit(32, 32, d=2, g=32), unit(32, 32, k=1, drop=False)
        )
        self.block2 = nn.Sequential(
            unit(32, 64, d=2, g=32), unit(64, 64, d=3, g=64), unit(64, 64, k=1, drop=False)
        )
        self.block3 = nn.Sequential(
            unit(64, 128, d=3, g=32), unit(128, 128, d=4, g=32), unit(128, 128, k=1, drop=False)
        )
        self.block4 = nn.Sequential(
            unit(128, 256, d=4, g=8), unit(256, 256, k=1), unit(256, 256, k=1, drop=False)
        )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(256, 128)
        self.fc2 = nn.Linear(128, 10)

    def spatial(self, x: Tensor) -> Tensor:
        return self.block4(self.block3(self.block2(self.block1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(self.gap(self.spatial(x)).flatten(1))))


class DilationTransition189k(nn.Module):
    """TousifAhamed/CIFAR10 from the layer list in the reference README (no conv bias).

    `spatial` ends at the 1×1 classifier: AvgPool2d(3) is global only at a 32×32 input.
    """

    def __init__(self) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, 3, padding=1, dilation=dilation, bias=False)
            return [conv, nn.BatchNorm2d(cout), nn.ReLU()]

        def transition(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, stride=2, dilation=2, padding=2, bias=False)

        def dsc(cin: int, cout: int) -> list[nn.Module]:
            return [DepthwiseSeparableConv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU()]

        self.convblock1 = nn.Sequential(*cbr(3, 16), *cbr(16, 32), *cbr(32, 64))
        self.trans1 = transition(64, 32)
        self.convblock2 = nn.Sequential(*cbr(32, 64, dilation=2), *cbr(64, 128, dilation=2))
        self.trans2 = transition(128, 16)
        self.convblock3 = nn.Sequential(*cbr(16, 32), *cbr(32, 64))
        self.trans3 = transition(64, 16)
        self.convblock4 = nn.Sequential(*dsc(16, 32), *dsc(32, 64))
        self.gap = nn.AvgPool2d(3)
        self.classifier = nn.Conv2d(64, 10, 1, bias=False)

    def spatial(self, x: Tensor) -> Tensor:
        x = self.trans1(self.convblock1(x))
        x = self.trans2(self.convblock2(x))
        x = self.trans3(self.convblock3(x))
        return self.classifier(self.gap(self.convblock4(x)))

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.spatial(x).view(-1, 10), dim=-1)


class C1C5DwsDilated(nn.Module):
    """c1c5-dws-dilated from its block list, in the spec's reading.

    Dilation 3 (C3) and 7 (C5), every 3×3 padded to keep its size, bias-free convs, each
    DepthwiseSeparableConv followed by BN → ReLU → Dropout, no Dropout after the dilated C3
    conv (as the README lists it).
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()

        def cbr(
            cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, drop: bool = True
        ) -> list[nn.Module]:
            pad = dilation * (k // 2)
            conv = nn.Conv2d(cin, cout, k, stride, pad, dilation, bias=False)
            return [conv, nn.BatchNorm2d(cout), nn.ReLU(), *([nn.Dropout(p)] if drop else [])]

        def dsc(cin: int, cout: int) -> list[nn.Module]:
            dws = DepthwiseSeparableConv(cin, cout)
            return [dws, nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(p)]

        self.c1 = nn.Sequential(*cbr(3, 32), *cbr(32, 32), *cbr(32, 10, k=1))
        self.c2 = nn.Sequential(*dsc(10, 32), *dsc(32, 64))
        self.c3 = nn.Sequential(
            *cbr(64, 64, dilation=3, drop=False), *cbr(64, 64), *cbr(64, 10, k=1)
        )
        self.c4 = nn.Sequential(*cbr(10, 64), *cbr(64, 64, stride=2), *cbr(64, 10, k=1))
        self.c5 = nn.Sequential(*cbr(10, 128, dilation=7))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, 10)

    def spatial(self, x: Tensor) -> Tensor:
        return self.c5(self.c4(self.c3(self.c2(self.c1(x)))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.gap(self.spatial(x)).flatten(1))


class StridedDws194k(nn.Module):
    """strided-dws-194k from its torchsummary table: Conv → ReLU → BN → Dropout, no bias.

    Each block opens with a depthwise-separable conv; C1–C3 close with a stride-2 conv.
    Head: GAP → BN(48) → 1×1 conv 48→10, nothing after it. The dropout rate is unpublished.
    """

    def __init__(self, p: float = 0.05) -> None:
        super().__init__()

        def post(cout: int) -> list[nn.Module]:
            return [nn.ReLU(), nn.BatchNorm2d(cout), nn.Dropout(p)]

        def conv(c: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(c, c, 3, stride=stride, padding=1, bias=False), *post(c)]

        def block(cin: int, cout: int, strided: bool) -> nn.Sequential:
            last = conv(cout, stride=2) if strided else conv(cout)
            dws = DepthwiseSeparableConv(cin, cout)
            return nn.Sequential(dws, *post(cout), *conv(cout), *conv(cout), *last)

        self.c1 = block(3, 32, strided=True)
        self.c2 = block(32, 40, strided=True)
        self.c3 = block(40, 44, strided=True)
        self.c4 = block(44, 48, strided=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.bn = nn.BatchNorm2d(48)
        self.out = nn.Conv2d(48, 10, 1, bias=False)

    def spatial(self, x: Tensor) -> Tensor:
        return self.c4(self.c3(self.c2(self.c1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.bn(self.gap(self.spatial(x)))).view(-1, 10)


# The published summary tables, verbatim from the READMEs.

FOURBLOCKS_TABLE = """
CIFAR10Net                               [1, 10]                   --
├─Sequential: 1-1                        [1, 16, 32, 32]           --
│    └─Conv2d: 2-1                       [1, 8, 32, 32]            224
│    └─BatchNorm2d: 2-2                  [1, 8, 32, 32]            16
│    └─ReLU: 2-3                         [1, 8, 32, 32]            --
│    └─Conv2d: 2-4                       [1, 16, 32, 32]           1,168
│    └─BatchNorm2d: 2-5                  [1, 16, 32, 32]           32
│    └─ReLU: 2-6                         [1, 16, 32, 32]           --
│    └─Conv2d: 2-7                       [1, 16, 32, 32]           2,320
│    └─BatchNorm2d: 2-8                  [1, 16, 32, 32]           32
│    └─ReLU: 2-9                         [1, 16, 32, 32]           --
├─Sequential: 1-2                        [1, 32, 16, 16]           --
│    └─DepthwiseSeparableConv: 2-10      [1, 32, 16, 16]           --
│    │    └─Conv2d: 3-1                  [1, 16, 16, 16]           160
│    │    └─Conv2d: 3-2                  [1, 32, 16, 16]           544
│    └─BatchNorm2d: 2-11                 [1, 32, 16, 16]           64
│    └─ReLU: 2-12                        [1, 32, 16, 16]           --
│    └─Conv2d: 2-13                      [1, 32, 16, 16]           9,248
│    └─BatchNorm2d: 2-14                 [1, 32, 16, 16]           64
│    └─ReLU: 2-15                        [1, 32, 16, 16]           --
│    └─Conv2d: 2-16                      [1, 32, 16, 16]           9,248
│    └─BatchNorm2d: 2-17                 [1, 32, 16, 16]           64
│    └─ReLU: 2-18                        [1, 32, 16, 16]           --
├─Sequential: 1-3                        [1, 48, 16, 16]           --
│    └─Conv2d: 2-19                      [1, 48, 16, 16]           13,872
│    └─BatchNorm2d: 2-20                 [1, 48, 16, 16]           96
│    └─ReLU: 2-21                        [1, 48, 16, 16]           --
│    └─Conv2d: 2-22                      [1, 48, 16, 16]           20,784
│    └─BatchNorm2d: 2-23                 [1, 48, 16, 16]           96
│    └─ReLU: 2-24                        [1, 48, 16, 16]           --
├─Sequential: 1-4                        [1, 64, 8, 8]             --
│    └─Conv2d: 2-25                      [1, 64, 8, 8]             27,712
│    └─BatchNorm2d: 2-26                 [1, 64, 8, 8]             128
│    └─ReLU: 2-27                        [1, 64, 8, 8]             --
│    └─Conv2d: 2-28                      [1, 64, 8, 8]             36,928
│    └─BatchNorm2d: 2-29                 [1, 64, 8, 8]             128
│    └─ReLU: 2-30                        [1, 64, 8, 8]             --
│    └─Conv2d: 2-31                      [1, 64, 8, 8]             4,160
├─AdaptiveAvgPool2d: 1-5                 [1, 64, 1, 1]             --
├─Linear: 1-6                            [1, 10]                   650
"""

DWS_DILATED_TABLE = """
Conv2d-1                  [-1, 32, 32, 32]     864
BatchNorm2d-2             [-1, 32, 32, 32]     64
Dropout-3                 [-1, 32, 32, 32]     0
Conv2d-4                  [-1, 32, 32, 32]     288
BatchNorm2d-5             [-1, 32, 32, 32]     64
Dropout-6                 [-1, 32, 32, 32]     0
Conv2d-7                  [-1, 32, 32, 32]     1,024
BatchNorm2d-8             [-1, 32, 32, 32]     64
Conv2d-9                  [-1, 64, 32, 32]     576
BatchNorm2d-10             [-1, 64, 32, 32]     128
Dropout-11                [-1, 64, 32, 32]     0
Conv2d-12                 [-1, 64, 32, 32]     576
BatchNorm2d-13             [-1, 64, 32, 32]     128
Dropout-14                [-1, 64, 32, 32]     0
Conv2d-15                 [-1, 64, 32, 32]     4,096
BatchNorm2d-16             [-1, 64, 32, 32]     128
Conv2d-17                 [-1, 128, 32, 32]     2,304
BatchNorm2d-18             [-1, 128, 32, 32]     256
Dropout-19                [-1, 128, 32, 32]     0
Conv2d-20                 [-1, 128, 32, 32]     4,608
BatchNorm2d-21             [-1, 128, 32, 32]     256
Dropout-22                [-1, 128, 32, 32]     0
Conv2d-23                 [-1, 128, 32, 32]     16,384
BatchNorm2d-24             [-1, 128, 32, 32]     256
Conv2d-25                 [-1, 256, 32, 32]     36,864
BatchNorm2d-26             [-1, 256, 32, 32]     512
Dropout-27                [-1, 256, 32, 32]     0
Conv2d-28                 [-1, 256, 32, 32]     65,536
BatchNorm2d-29             [-1, 256, 32, 32]     512
Dropout-30                [-1, 256, 32, 32]     0
Conv2d-31                 [-1, 256, 32, 32]     65,536
BatchNorm2d-32             [-1, 256, 32, 32]     512
AdaptiveAvgPool2d-33       [-1, 256, 1, 1]     0
Linear-34                 [-1, 128]             32,896
Linear-35                 [-1, 10]              1,290
"""

STRIDED_DWS_TABLE = """
            Conv2d-1            [-1, 3, 32, 32]              27
            Conv2d-2           [-1, 32, 32, 32]              96
              ReLU-3           [-1, 32, 32, 32]               0
       BatchNorm2d-4           [-1, 32, 32, 32]              64
           Dropout-5           [-1, 32, 32, 32]               0
            Conv2d-6           [-1, 32, 32, 32]           9,216
              ReLU-7           [-1, 32, 32, 32]               0
       BatchNorm2d-8           [-1, 32, 32, 32]              64
           Dropout-9           [-1, 32, 32, 32]               0
           Conv2d-10           [-1, 32, 32, 32]           9,216
             ReLU-11           [-1, 32, 32, 32]               0
      BatchNorm2d-12           [-1, 32, 32, 32]              64
          Dropout-13           [-1, 32, 32, 32]               0
           Conv2d-14           [-1, 32, 16, 16]           9,216
             ReLU-15           [-1, 32, 16, 16]               0
      BatchNorm2d-16           [-1, 32, 16, 16]              64
          Dropout-17           [-1, 32, 16, 16]               0
           Conv2d-18           [-1, 32, 16, 16]             288
           Conv2d-19           [-1, 40, 16, 16]           1,280
             ReLU-20           [-1, 40, 16, 16]               0
      BatchNorm2d-21           [-1, 40, 16, 16]              80
          Dropout-22           [-1, 40, 16, 16]               0
           Conv2d-23           [-1, 40, 16, 16]          14,400
             ReLU-24           [-1, 40, 16, 16]               0
      BatchNorm2d-25           [-1, 40, 16, 16]              80
          Dropout-26           [-1, 40, 16, 16]               0
           Conv2d-27           [-1, 40, 16, 16]          14,400
             ReLU-28           [-1, 40, 16, 16]               0
      BatchNorm2d-29           [-1, 40, 16, 16]              80
          Dropout-30           [-1, 40, 16, 16]               0
           Conv2d-31             [-1, 40, 8, 8]          14,400
             ReLU-32             [-1, 40, 8, 8]               0
      BatchNorm2d-33             [-1, 40, 8, 8]              80
          Dropout-34             [-1, 40, 8, 8]               0
           Conv2d-35             [-1, 40, 8, 8]             360
           Conv2d-36             [-1, 44, 8, 8]           1,760
             ReLU-37             [-1, 44, 8, 8]               0
      BatchNorm2d-38             [-1, 44, 8, 8]              88
          Dropout-39             [-1, 44, 8, 8]               0
           Conv2d-40             [-1, 44, 8, 8]          17,424
             ReLU-41             [-1, 44, 8, 8]               0
      BatchNorm2d-42             [-1, 44, 8, 8]              88
          Dropout-43             [-1, 44, 8, 8]               0
           Conv2d-44             [-1, 44, 8, 8]          17,424
             ReLU-45             [-1, 44, 8, 8]               0
      BatchNorm2d-46             [-1, 44, 8, 8]              88
          Dropout-47             [-1, 44, 8, 8]               0
           Conv2d-48             [-1, 44, 4, 4]          17,424
             ReLU-49             [-1, 44, 4, 4]               0
      BatchNorm2d-50             [-1, 44, 4, 4]              88
          Dropout-51             [-1, 44, 4, 4]               0
           Conv2d-52             [-1, 44, 4, 4]             396
           Conv2d-53             [-1, 48, 4, 4]           2,112
             ReLU-54             [-1, 48, 4, 4]               0
      BatchNorm2d-55             [-1, 48, 4, 4]              96
          Dropout-56             [-1, 48, 4, 4]               0
           Conv2d-57             [-1, 48, 4, 4]          20,736
             ReLU-58             [-1, 48, 4, 4]               0
      BatchNorm2d-59             [-1, 48, 4, 4]              96
          Dropout-60             [-1, 48, 4, 4]               0
           Conv2d-61             [-1, 48, 4, 4]          20,736
             ReLU-62             [-1, 48, 4, 4]               0
      BatchNorm2d-63             [-1, 48, 4, 4]              96
          Dropout-64             [-1, 48, 4, 4]               0
           Conv2d-65             [-1, 48, 4, 4]          20,736
             ReLU-66             [-1, 48, 4, 4]               0
      BatchNorm2d-67             [-1, 48, 4, 4]              96
          Dropout-68             [-1, 48, 4, 4]               0
AdaptiveAvgPool2d-69             [-1, 48, 1, 1]               0
      BatchNorm2d-70             [-1, 48, 1, 1]              96
           Conv2d-71             [-1, 10, 1, 1]             480
"""

Row = tuple[str, tuple[int, ...], int]
"""One leaf layer as a summary table lists it: module type, output shape (no batch), params."""

TABLE_ROW = re.compile(
    r"(?P<kind>\w+)(?:: [\d-]+|-\d+)\s+\[-?1, (?P<shape>[\d, ]+)\]\s+(?P<params>[\d,]+|--)"
)
LEAF_KINDS = {"Conv2d", "BatchNorm2d", "ReLU", "Dropout", "AdaptiveAvgPool2d", "Linear"}


@dataclass(frozen=True)
class Reference:
    """A reference network: its spec, its hand-written port, and what its README publishes."""

    name: str
    port: Callable[[], nn.Module]
    published_params: int | None
    table: str | None = None
    hidden: frozenset[str] = frozenset({"Flatten"})
    """Module types the published table does not show (functional calls in the author's code)."""
    conv_unit_shapes: tuple[tuple[int, int, int], ...] = ()
    """Output shape of each unit holding a Conv2d where no table is published: from the
    reference README's layer list (189k), or the block list read as the spec reads it (c1c5)."""
    receptive_field: int | None = None
    """A receptive field checked independently of blockspec (from the author's network)."""

    @property
    def spec_path(self) -> Path:
        return SPECS / f"{self.name}.yaml"


REFERENCES = [
    Reference(
        "fourblocks-128k", FourBlocks128k, 127_738, FOURBLOCKS_TABLE, receptive_field=41
    ),
    Reference(
        "dws-dilated-236k",
        DwsDilated236k,
        235_722,
        DWS_DILATED_TABLE,
        hidden=frozenset({"Flatten", "ReLU"}),
    ),
    Reference(
        "dilation-transition-189k",
        DilationTransition189k,
        189_376,
        conv_unit_shapes=(
            (16, 32, 32), (32, 32, 32), (64, 32, 32), (32, 16, 16),
            (64, 14, 14), (128, 12, 12), (16, 6, 6),
            (32, 6, 6), (64, 6, 6), (16, 3, 3),
            (32, 3, 3), (64, 3, 3),
            (10, 1, 1),
        ),
        receptive_field=115,
    ),
    Reference(
        "c1c5-dws-dilated",
        C1C5DwsDilated,
        None,
        conv_unit_shapes=(
            (32, 32, 32), (32, 32, 32), (10, 32, 32),
            (32, 32, 32), (64, 32, 32),
            (64, 32, 32), (64, 32, 32), (10, 32, 32),
            (64, 32, 32), (64, 16, 16), (10, 16, 16),
            (128, 16, 16),
        ),
    ),
    Reference("strided-dws-194k", StridedDws194k, 193_535, STRIDED_DWS_TABLE),
]


def by_name(refs: list[Reference]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("ref", refs, ids=[ref.name for ref in refs])


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parse_table(table: str) -> list[Row]:
    """The leaf rows of a torchsummary / torchinfo table (container rows dropped)."""
    rows = []
    for match in TABLE_ROW.finditer(table):
        if match["kind"] in LEAF_KINDS:
            shape = tuple(int(size) for size in match["shape"].split(","))
            params = 0 if match["params"] == "--" else int(match["params"].replace(",", ""))
            rows.append((match["kind"], shape, params))
    return rows


def run_units(model: nn.Module, x: Tensor) -> tuple[list[tuple[str, nn.Module, Tensor]], list[Row]]:
    """Run a built model unit by unit, as a user would, recording each leaf module as a row."""
    leaves: list[Row] = []

    def record(module: nn.Module, _: tuple[Tensor, ...], out: Tensor) -> None:
        # blockspec's own subclasses (DepthwiseConv2d) print as the torch layer they are.
        torch_class = next(c for c in type(module).__mro__ if c.__module__.startswith("torch.nn"))
        leaves.append((torch_class.__name__, tuple(out.shape[1:]), count(module)))

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    units = []
    try:
        with torch.no_grad():
            for block_name, block in model.named_children():
                for index, layer in enumerate(block):
                    x = layer(x)
                    units.append((f"{block_name}.{index}", layer, x))
    finally:
        for hook in hooks:
            hook.remove()
    return units, leaves


@torch.no_grad()
def randomise(model: nn.Module) -> nn.Module:
    """Random BN affine and running statistics too, so eval outputs depend on every tensor."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.2)
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@torch.no_grad()
def make_positive(model: nn.Module) -> nn.Module:
    """Positive weights, BN a positive affine map, eval mode: no ReLU ever zeroes a gradient."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.weight.fill_(1.0 / module.weight[0].numel())
            if module.bias is not None:
                module.bias.fill_(0.1)
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.fill_(1.0)
            module.bias.fill_(0.1)
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
    return model.eval()


def measured_receptive_field(port: nn.Module) -> int:
    """Extent of the input pixels that the centre unit of the last spatial map depends on.

    The input grows until that window clears the border (a clipped window reads too small).
    """
    model = make_positive(port)
    for size in (64, 128, 256):
        x = (torch.rand(1, 3, size, size) + 0.5).requires_grad_()
        y = model.spatial(x)
        y[0, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
        assert x.grad is not None
        touched = x.grad[0].abs().sum(0) > 0
        rows, cols = (touched.any(dim=axis).nonzero().flatten() for axis in (1, 0))
        if all(0 < index.min() and index.max() < size - 1 for index in (rows, cols)):
            assert rows.max() - rows.min() == cols.max() - cols.min()
            return int(rows.max() - rows.min() + 1)
    raise AssertionError("the receptive field reaches the border of a 256×256 input")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """The tensors here are tiny: extra OpenMP threads only add overhead, and they stall
    badly (seconds per test) when other processes share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@by_name(REFERENCES)
def test_parameter_totals(ref: Reference) -> None:
    """Port, published total, built module and analysis all agree on the parameter count."""
    spec = load_spec(ref.spec_path)
    total = count(ref.port())
    if ref.published_params is not None:
        assert total == ref.published_params
    assert count(build_model(spec)) == total
    assert summarize(spec).to_dict()["total_params"] == total


@by_name(REFERENCES)
def test_state_dict_loads_by_position_and_outputs_match(ref: Reference) -> None:
    """Same tensors in the same order, so the port's weights load by position and give the
    same eval-mode output: the two networks compute the same function."""
    torch.manual_seed(0)
    theirs = randomise(ref.port())
    ours = build_model(load_spec(ref.spec_path)).eval()
    ours_state, their_state = ours.state_dict(), theirs.state_dict()
    assert [t.shape for t in ours_state.values()] == [t.shape for t in their_state.values()]
    ours.load_state_dict(dict(zip(ours_state.keys(), their_state.values(), strict=True)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@by_name(REFERENCES)
def test_units_match_summary(ref: Reference) -> None:
    """Each built unit's real output shape and parameter count are the analysis' row."""
    spec = load_spec(ref.spec_path)
    units, _ = run_units(build_model(spec).eval(), torch.randn(1, 3, 32, 32))
    built = [(name, tuple(out.shape[1:]), count(layer)) for name, layer, out in units]
    layers = summarize(spec).to_dict()["layers"]
    assert built == [(row["name"], tuple(row["out_shape"]), row["params"]) for row in layers]


@by_name([ref for ref in REFERENCES if ref.table])
def test_leaf_layers_match_published_table(ref: Reference) -> None:
    """Every module the author's summary table lists, in order, with its shape and params."""
    _, leaves = run_units(build_model(load_spec(ref.spec_path)).eval(), torch.randn(1, 3, 32, 32))
    assert ref.table is not None
    assert [row for row in leaves if row[0] not in ref.hidden] == parse_table(ref.table)


@by_name([ref for ref in REFERENCES if ref.conv_unit_shapes])
def test_conv_unit_shapes_match_readme(ref: Reference) -> None:
    """Without a published table, the output of each conv unit follows the README's list."""
    units, _ = run_units(build_model(load_spec(ref.spec_path)).eval(), torch.randn(1, 3, 32, 32))
    shapes = [
        tuple(out.shape[1:])
        for _, layer, out in units
        if any(isinstance(m, nn.Conv2d) for m in layer.modules())
    ]
    assert shapes == list(ref.conv_unit_shapes)


@by_name(REFERENCES)
def test_receptive_field_measured_from_gradients(ref: Reference) -> None:
    """blockspec's receptive field is the one the hand-written network really has."""
    analysed = summarize(load_spec(ref.spec_path)).to_dict()["receptive_field"]
    if ref.receptive_field is not None:
        assert analysed == ref.receptive_field
    torch.manual_seed(0)
    assert measured_receptive_field(ref.port()) == analysed
