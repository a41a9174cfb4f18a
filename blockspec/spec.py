"""The whole YAML file as Pydantic v2 models.

Defaults are resolved here, once: every layer leaves `load_spec` with concrete norm, act,
order, dropout and bias, so nothing downstream needs to know about `defaults`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Strict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from blockspec.layers import LAYER_KINDS, AnyLayer
from blockspec.layers.base import Act, Norm, Order, StrictModel

def _yaml_float(value: Any) -> Any:
    """PyYAML reads `1e-3` (no dot) as a string; accept it as the number users meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Rate = Annotated[PositiveFloat, BeforeValidator(_yaml_float)]
Real = Annotated[float, BeforeValidator(_yaml_float)]
Decay = Annotated[NonNegativeFloat, BeforeValidator(_yaml_float)]

BLOCK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FEATURES = (
    "conv",
    "dws",
    "depthwise",
    "grouped",
    "dilated",
    "strided",
    "pool",
    "maxpool",
    "avgpool",
    "gap",
    "fc",
    "norm",
    "dropout",
    "flatten",
    "logsoftmax",
    "residual",
)


class InputSpec(StrictModel):
    channels: PositiveInt = 3
    size: PositiveInt | Annotated[tuple[PositiveInt, PositiveInt], Strict(False)] = 32

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else self.size


class Defaults(StrictModel):
    """What a conv/dws layer uses for every option it does not set itself."""

    norm: Norm = "batch"
    act: Act = "relu"
    order: Order = "conv-norm-act"
    dropout: Real = Field(default=0.0, ge=0.0, lt=1.0)
    bias: bool = True
    norm_groups: PositiveInt = 8


class Rules(StrictModel):
    """Design rules checked by `blockspec check`; each is optional."""

    max_params: PositiveInt | None = None
    min_rf: PositiveInt | None = None
    require: list[str] = Field(default_factory=list)
    forbid: list[str] = Field(default_factory=list)
    blocks: list[str] | None = None

    @field_validator("require", "forbid")
    @classmethod
    def _known_features(cls, names: list[str]) -> list[str]:
        allowed = FEATURES + tuple(kind for kind in LAYER_KINDS if kind not in FEATURES)
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; allowed: {', '.join(allowed)}")
        return names


DATASET_NAMES = ("cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder")


class DataSpec(StrictModel):
    """Where images come from and how training images are augmented (albumentations 2.x).

    `augment` entries are `{TransformName: {argument: value}}`; they are checked against
    albumentations itself before training starts (importing it here would slow every
    command by seconds).
    """

    dataset: Literal[DATASET_NAMES] = "cifar10"  # type: ignore[valid-type]
    root: str = "data"
    augment: list[Any] = Field(default_factory=list)


class OptimizerSpec(StrictModel):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Rate = 0.05
    momentum: Real = Field(default=0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: Decay = 5e-4


class SchedulerSpec(StrictModel):
    """Learning-rate schedule; steps per batch (onecycle, cosine) or per epoch (step, plateau)."""

    name: Literal["onecycle", "cosine", "step", "plateau", "none"] = "onecycle"
    max_lr: Rate | None = Field(default=None, description="onecycle peak; default: optimizer.lr")
    pct_start: Real = Field(default=0.25, gt=0.0, lt=1.0)
    warmup_epochs: NonNegativeFloat = Field(default=0.0, description="cosine: linear warm-up")
    step_size: PositiveInt = Field(default=10, description="step: epochs between decays")
    gamma: Real = Field(default=0.1, gt=0.0, le=1.0)
    patience: NonNegativeInt = 3
    factor: Real = Field(default=0.1, gt=0.0, lt=1.0)


class TrainSpec(StrictModel):
    """The recipe; every field can be overridden on the command line where a flag exists."""

    epochs: PositiveInt = 40
    batch_size: PositiveInt = 128
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    label_smoothing: Real = Field(default=0.0, ge=0.0, lt=1.0)
    seed: NonNegativeInt = 0
    target: Real = Field(default=85.0, gt=0.0, le=100.0)
    compile: bool = False
    channels_last: bool = True
    amp: bool = True
    ema: Real | None = Field(default=None, gt=0.0, lt=1.0, description="EMA decay of weights")
    tta_flip: bool = Field(default=False, description="average predictions with the mirror image")


class Spec(StrictModel):
    """One architecture file."""

    name: str = Field(min_length=1)
    description: str = ""
    input: InputSpec = Field(default_factory=InputSpec)
    classes: PositiveInt = 10
    defaults: Defaults = Field(default_factory=Defaults)
    blocks: dict[str, list[AnyLayer]] = Field(min_length=1)
    rules: Rules = Field(default_factory=Rules)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)

    @field_validator("blocks")
    @classmethod
    def _block_names(cls, blocks: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for name, layers in blocks.items():
            if not BLOCK_NAME.match(name):
                raise ValueError(f"block name {name!r} must be an identifier such as C1 or output")
            if not layers:
                raise ValueError(f"block {name!r} has no layers")
        return blocks

    @model_validator(mode="after")
    def _resolve_defaults(self) -> Spec:
        values = self.defaults.model_dump()
        resolved = {
            name: [layer.with_defaults(values) for layer in layers]
            for name, layers in self.blocks.items()
        }
        object.__setattr__(self, "blocks", resolved)
        return self

    def to_yaml(self) -> str:
        """The effective spec (defaults resolved), readable back by `load_spec`."""
        data = self.model_dump(mode="json")
        data["blocks"] = {
            name: [{layer.kind: layer_args(layer)} for layer in layers]
            for name, layers in self.blocks.items()
        }
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def layer_args(layer: Any) -> dict[str, Any]:
    """A layer's fields in YAML form (nested bodies re-wrapped as `{kind: args}`)."""
    args = layer.model_dump(mode="json", exclude={"kind"})
    if "body" in args:
        args["body"] = [{child.kind: layer_args(child)} for child in layer.body]
    return args
