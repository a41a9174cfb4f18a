"""The whole YAML file as Pydantic v2 models.

Defaults are resolved here, once: every layer leaves `load_spec` with concrete norm, act,
order, dropout and bias, so nothing downstream needs to know about `defaults`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from blockspec.fields import (
    Act,
    NonNegativeInt,
    Norm,
    Order,
    PositiveInt,
    Real,
    StrictModel,
    yaml_float,
)
from blockspec.hints import closest_value
from blockspec.layers import LAYER_KINDS, AnyLayer

Rate = Annotated[PositiveFloat, BeforeValidator(yaml_float)]
Decay = Annotated[NonNegativeFloat, BeforeValidator(yaml_float)]

BLOCK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# The built network's own attributes: a block becomes `model.<name>`, so these cannot name one.
# Written out so that loading a spec needs no torch; tests/test_schema.py compares them with torch's.
MODULE_ATTRIBUTES = frozenset(
    """
    T_destination add_module append apply bfloat16 buffers call_super_init children compile
    cpu cuda double dump_patches eval extend extra_repr float forward get_buffer
    get_extra_state get_parameter get_submodule half insert ipu load_state_dict modules mtia
    named_buffers named_children named_modules named_parameters parameters pop
    register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook
    register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
    register_parameter register_state_dict_post_hook register_state_dict_pre_hook
    requires_grad_ set_extra_state set_submodule share_memory spec_name state_dict to
    to_empty train training type xpu zero_grad
    """.split()
)


def _block_name(name: str) -> str:
    if not BLOCK_NAME.fullmatch(name):  # `match` with `$` let a trailing newline through
        raise ValueError("a block name must be an identifier such as C1 or output (a letter first)")
    if name in MODULE_ATTRIBUTES:
        raise ValueError(f"an attribute of the built nn.Module (model.{name}); rename the block")
    return name


BlockName = Annotated[str, AfterValidator(_block_name)]


def _network_name(name: str) -> str:
    """A name that is one folder's: runs go to runs/<name>/, and a table prints it as is."""
    if any(separator in name for separator in "/\\:") or name.strip() in (".", ".."):  # ':' a drive on Windows
        raise ValueError("a name must be one folder's name (runs go to runs/<name>/): no /, \\ or :, not . or ..")
    if any(unicodedata.category(character) == "Cc" for character in name):
        raise ValueError("a name may not hold control characters (a terminal would run them as commands)")
    return name
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
RULE_FEATURES = FEATURES + tuple(kind for kind in LAYER_KINDS if kind not in FEATURES)
"""What `rules.require/forbid` may name: the features, and every kind (plugins' included)."""


def _has_layers(layers: list[Any]) -> list[Any]:
    if not layers:
        raise PydanticCustomError("no_layers", "a block needs at least one layer")
    return layers


class InputSpec(StrictModel):
    """Shape of one input image."""

    channels: PositiveInt = Field(
        default=3, description="image channels (3 for CIFAR, 1 for MNIST)"
    )
    size: PositiveInt | Annotated[tuple[PositiveInt, PositiveInt], Strict(False)] = Field(
        default=32, description="height and width, or `[H, W]`"
    )

    @field_validator("size", mode="before")
    @classmethod
    def _one_side_or_two(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and len(value) != 2:
            raise PydanticCustomError("size_form", "an integer (a square image) or [H, W]")
        return value

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else self.size


class Defaults(StrictModel):
    """What a conv/dws layer uses for every option it does not set itself."""

    norm: Norm = Field(default="batch", description="normalisation after each conv unit")
    act: Act = Field(default="relu", description="activation of each conv unit")
    order: Order = Field(
        default="conv-norm-act", description="normalisation before or after the activation"
    )
    dropout: Real = Field(
        default=0.0, ge=0.0, lt=1.0, description="dropout after each conv unit; 0 = none"
    )
    bias: bool = Field(default=True, description="bias of the convolutions")
    norm_groups: PositiveInt = Field(
        default=8, description="groups of every `group` norm (spec-wide); must divide its channels"
    )
    ghost_batch: PositiveInt | None = Field(
        default=None,
        description="in training, every `batch` norm on a map takes its statistics from groups "
        "of this many images (ghost batch norm; spec-wide); unset: from the whole batch",
    )


class Rules(StrictModel):
    """Design rules checked by `blockspec check`; each is optional."""

    max_params: PositiveInt | None = Field(
        default=None, description="holds when total parameters ≤ this"
    )
    min_rf: PositiveInt | None = Field(
        default=None, description="holds when the network's receptive field ≥ this"
    )
    require: list[str] = Field(
        default_factory=list,
        description="features (`dws`, `dilated`, `gap`, …) some layer must have",
        json_schema_extra={"items": {"enum": list(RULE_FEATURES)}},
    )
    forbid: list[str] = Field(
        default_factory=list,
        description="features (`maxpool`, …) no layer may have",
        json_schema_extra={"items": {"enum": list(RULE_FEATURES)}},
    )
    blocks: list[str] | None = Field(
        default=None, description="holds when the block names, in order, are exactly these"
    )

    @field_validator("require", "forbid")
    @classmethod
    def _known_features(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in RULE_FEATURES]
        if unknown:
            meant = [f"{name} → {match}" for name in unknown if (match := closest_value(name, RULE_FEATURES))]
            hint = f" (did you mean {', '.join(meant)}?)" if meant else ""
            raise ValueError(f"unknown feature(s) {unknown}{hint}; allowed: {', '.join(RULE_FEATURES)}")
        return names


DATASET_NAMES = ("cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder")


class AugmentOffSpec(StrictModel):
    """The final epochs train with some transforms (default: all) switched off, so the network
    ends on images closer to the unaugmented test images (Ultralytics' `close_mosaic`; the
    "refined augmentation" of He et al., 2019, Data Augmentation Revisited)."""

    last_epochs: PositiveInt = Field(description="how many final epochs (of train.epochs)")
    transforms: list[str] | None = Field(
        default=None,
        min_length=1,
        description="names of data.augment's transforms to switch off; default: all",
    )


class DataSpec(StrictModel):
    """Where images come from and how training images are augmented (albumentations 2.x).

    `augment` entries are `{TransformName: {argument: value}}`; they are checked against
    albumentations itself before training starts (importing it here would slow every
    command by seconds).
    """

    dataset: Literal[DATASET_NAMES] = Field(  # type: ignore[valid-type]
        default="cifar10", description="which images to train and test on (`--dataset`)"
    )
    root: str = Field(
        default="data",
        description="the data set's folder; CIFAR and MNIST download into it (`--data-root`)",
    )
    augment: list[Any] = Field(
        default_factory=list,
        description="`{TransformName: {argument: value}}` entries, applied in order",
    )
    augment_off: AugmentOffSpec | None = Field(
        default=None, description="switch transforms off for the final epochs"
    )
    alternate_flip: bool = Field(
        default=False,
        description=(
            "data.augment[0] = HorizontalFlip (p 0.5) mirrors each image at random in the first "
            "epoch and the other way round in each epoch after (alternating flip, Jordan 2024)"
        ),
    )

    @field_validator("augment_off")
    @classmethod
    def _transforms_in_augment(cls, off: AugmentOffSpec | None, info: ValidationInfo) -> AugmentOffSpec | None:
        if off is None or off.transforms is None:
            return off
        named = [next(iter(entry)) for entry in info.data.get("augment", []) if isinstance(entry, dict) and entry]
        for index, name in enumerate(off.transforms):
            if name not in named:
                raise ValueError(
                    f"transforms[{index}] = {name!r} is not in data.augment "
                    f"(its transforms: {', '.join(named) or 'none'})"
                )
        return off

    @field_validator("alternate_flip")
    @classmethod
    def _flip_leads_augment(cls, alternate: bool, info: ValidationInfo) -> bool:
        augment = info.data.get("augment", [])
        if alternate and not (augment and _is_fair_flip(augment[0])):
            found = repr(augment[0]) if augment else "no transforms"
            raise ValueError(
                "alternates the flip of data.augment[0], which should then be "
                f"HorizontalFlip with p 0.5 (found {found})"
            )
        return alternate


def _is_fair_flip(entry: Any) -> bool:
    """`{HorizontalFlip: {p: 0.5}}`, or the same with p left at albumentations' default 0.5."""
    if not isinstance(entry, dict) or list(entry) != ["HorizontalFlip"]:
        return False
    args = entry["HorizontalFlip"]
    return args is None or (isinstance(args, dict) and set(args) <= {"p"} and args.get("p", 0.5) == 0.5)


# Optimizers whose `momentum` and `nesterov` are SGD's: Muon runs SGD's momentum on every
# parameter (orthogonalising it on some), so its rate scales and its momentum cycles as SGD's.
SGD_MOMENTUM = frozenset({"sgd", "muon"})

# Optimizers whose step a CUDA graph can replay: blockspec's own updates, which read the
# schedule's rates from device tensors (blockspec/train/sgd_update.py, muon.py).
GRAPHED_OPTIMIZERS = frozenset({"sgd", "muon"})


class OptimizerSpec(StrictModel):
    """torch.optim SGD, Adam (L2 penalty) or AdamW (decoupled weight decay), or Muon on the
    kernels that feed a batch norm with SGD on the rest (blockspec/train/muon.py)."""

    name: Literal["sgd", "adam", "adamw", "muon"] = "sgd"
    lr: Rate = Field(default=0.05, description="learning rate (`--lr`)")
    momentum: Real = Field(default=0.9, ge=0.0, lt=1.0, description="SGD and Muon")
    nesterov: bool = Field(default=True, description="SGD and Muon; used when momentum > 0")
    weight_decay: Decay = Field(
        default=5e-4, description="on conv and linear weights only, not biases or norms"
    )
    depthwise_weight_decay: Decay | None = Field(
        default=None,
        description="on depthwise kernels instead of weight_decay; default: weight_decay",
    )
    muon_lr: Rate = Field(
        # On the flagship 0.03 stalled; 0.01 trained well, and 0.015 (the flagship's own) ended
        # higher at epoch 40 but lower mid-run (docs/benchmarks.md): the default is the milder one.
        default=0.01,
        description="muon: the rate of the kernels that feed a batch norm (about the angle a "
        "filter turns per step) where the others' is lr; the schedule scales both",
    )


class SchedulerSpec(StrictModel):
    """Learning-rate schedule; steps per batch (onecycle, cosine) or per epoch (step, plateau)."""

    name: Literal["onecycle", "cosine", "step", "plateau", "none"] = Field(
        default="onecycle", description="`none` keeps the optimizer's lr"
    )
    max_lr: Rate | None = Field(default=None, description="onecycle peak; default: optimizer.lr")
    pct_start: Real = Field(
        default=0.25, gt=0.0, lt=1.0, description="onecycle: fraction of steps rising to the peak"
    )
    anneal: Literal["cos", "linear"] = Field(
        default="cos", description="onecycle: shape of the rise and the fall (`anneal_strategy`)"
    )
    cycle_momentum: bool = Field(
        default=True,
        description="onecycle: move momentum (Adam's first beta) against the rate, replacing "
        "optimizer.momentum",
    )
    base_momentum: Real = Field(
        default=0.85, ge=0.0, lt=1.0, description="onecycle: the momentum at the peak rate"
    )
    max_momentum: Real = Field(
        default=0.95, ge=0.0, lt=1.0, description="onecycle: the momentum at the start and the end"
    )
    warmup_epochs: Decay = Field(
        default=0.0, description="cosine: linear warm-up, in epochs"
    )
    step_size: PositiveInt = Field(default=10, description="step: epochs between decays")
    gamma: Real = Field(default=0.1, gt=0.0, le=1.0, description="step: decay factor")
    patience: NonNegativeInt = Field(
        default=3, description="plateau: epochs without a new best test accuracy before decaying"
    )
    factor: Real = Field(default=0.1, gt=0.0, lt=1.0, description="plateau: decay factor")

    def momentum_cycle(self) -> tuple[float, float] | None:
        """(base, max) momentum when onecycle moves it against the rate, else None."""
        if self.name == "onecycle" and self.cycle_momentum:
            return self.base_momentum, self.max_momentum
        return None


class LookaheadSpec(StrictModel):
    """Lookahead with a ramped pull-back (Zhang et al. 2019; the schedule of Jordan's airbench):
    every `every` steps a slow copy of the weights moves toward the trained ones and the
    trained ones restart from it. The slow copy keeps decay·(t/T)^power of itself at step t
    of T, so it follows the weights at first and averages them strongly at the end."""

    every: PositiveInt = Field(default=5, description="steps between pulls back to the slow weights")
    decay: Real = Field(
        default=0.774, gt=0.0, lt=1.0, description="how much of itself the slow copy keeps at the last step"
    )
    power: Real = Field(default=3.0, gt=0.0, description="how late the decay ramps up from 0")


class TrainSpec(StrictModel):
    """The recipe; every field can be overridden on the command line where a flag exists."""

    epochs: PositiveInt = Field(default=40, description="training epochs (`--epochs`)")
    batch_size: PositiveInt = Field(
        default=128, description="images per batch, train and test (`--batch-size`)"
    )
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    label_smoothing: Real = Field(
        default=0.0, ge=0.0, lt=1.0, description="of the cross-entropy loss"
    )
    seed: NonNegativeInt = Field(
        default=0, description="seeds initialisation, shuffling and augmentation (`--seed`)"
    )
    target: Real = Field(
        default=85.0,
        gt=0.0,
        le=100.0,
        description="test accuracy % whose first epoch is recorded (`--target`); no early stop",
    )
    compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = Field(
        default=False,
        description="torch.compile the model on CUDA: true (mode default) or a mode; reduce-overhead and "
        "max-autotune replay CUDA graphs, for small networks whose steps wait on kernel launches",
    )
    cuda_graphs: bool = Field(
        default=False,
        description="on CUDA, capture the whole training step (forward, backward, weight update, EMA) "
        "once as a CUDA graph and replay it: one launch a step, for small networks whose steps wait "
        "on kernel launches; SGD or Muon only, not with `compile`",
    )
    channels_last: bool = Field(
        default=True, description="channels-last memory format on CUDA and CPU"
    )
    amp: bool = Field(
        default=True, description="bfloat16 autocast where the GPU or CPU supports it"
    )
    ema: Annotated[float, Field(gt=0.0, lt=1.0), BeforeValidator(yaml_float)] | None = Field(
        default=None, description="EMA decay of weights; evaluation and best.pt use the average"
    )
    lookahead: LookaheadSpec | None = Field(
        default=None, description="pull the weights back to a slow copy every few steps (`every`, `decay`, `power`)"
    )
    whiten_stem: Literal[False, "init", "frozen"] = Field(
        default=False,
        description="start the first convolution as a whitening of the training images' patches (their "
        "principal directions in ± pairs, largest variance first, each scaled to unit variance): `init` trains "
        "the filters from there, `frozen` keeps them fixed; the first layer must be a full convolution",
    )
    tta_flip: bool = Field(default=False, description="average predictions with the mirror image")
    tta_shift: int = Field(
        default=0,
        ge=0,
        le=8,
        description="pixels; also average views shifted diagonally by ± this much, at half weight",
    )

    @field_validator("whiten_stem", mode="before")
    @classmethod
    def _false_or_a_mode(cls, value: Any) -> Any:
        """Pydantic matches `Literal[False]` by equality, so 0 and 0.0 passed for false, where
        every other switch (and the JSON Schema) wants a boolean."""
        if not isinstance(value, (bool, str)):
            raise ValueError("must be false, init or frozen")
        return value

    @field_validator("cuda_graphs")
    @classmethod
    def _graphs_need_own_update(cls, graphs: bool, info: ValidationInfo) -> bool:
        optimizer, compile_mode = info.data.get("optimizer"), info.data.get("compile")
        if graphs and optimizer is not None and optimizer.name not in GRAPHED_OPTIMIZERS:
            raise ValueError(
                f"needs optimizer sgd or muon (the graph replays blockspec's own update), not {optimizer.name!r}"
            )
        if graphs and compile_mode:
            raise ValueError(f"cannot be combined with compile ({compile_mode!r}): choose one way to replay graphs")
        return graphs


class Spec(StrictModel):
    """One architecture file."""

    name: Annotated[str, AfterValidator(_network_name)] = Field(
        min_length=1, description="the network's name; runs go to `runs/<name>/<time>/`"
    )
    description: str = Field(default="", description="free text")
    input: InputSpec = Field(default_factory=InputSpec)
    classes: PositiveInt = Field(default=10, description="the network must end in this many scores")
    defaults: Defaults = Field(default_factory=Defaults)
    blocks: dict[BlockName, Annotated[list[AnyLayer], AfterValidator(_has_layers)]] = Field(min_length=1)
    rules: Rules = Field(default_factory=Rules)
    data: DataSpec = Field(default_factory=DataSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)

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
