"""Did-you-mean hints for names that are wrong: a close spelling, or the blockspec name for
what PyTorch and timm call it (`kernel_size` is `k`, `bn` is `norm: {type: batch}`), which no
spelling distance finds."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# a field's PyTorch/timm name → blockspec's, offered only where that field exists
FIELD_NAMES = {
    "out_channels": "out", "out_features": "out", "num_features": "out", "features": "out",
    "kernel_size": "k", "kernel": "k", "pool_size": "k",
    "s": "stride", "strides": "stride",
    "dilation_rate": "dilation",
    "activation": "act", "act_layer": "act", "nonlinearity": "act",
    "norm_layer": "norm", "normalization": "norm",
    "rd_ratio": "reduction", "se_ratio": "reduction", "reduction_ratio": "reduction",
    "rate": "p", "drop_rate": "p", "drop": "p",
    "num_classes": "classes", "n_classes": "classes", "in_chans": "channels", "in_channels": "channels",
}
# a layer's PyTorch/timm name → the blockspec layer that does it
LAYER_NAMES = {
    **dict.fromkeys(("bn", "batchnorm", "batch_norm", "batchnorm2d"), "norm: {type: batch}"),
    **dict.fromkeys(("groupnorm", "group_norm", "gn"), "norm: {type: group}"),
    **dict.fromkeys(("layernorm", "layer_norm", "ln"), "norm: {type: layer}"),
    **dict.fromkeys(("linear", "dense", "fully_connected", "classifier"), "fc"),
    **dict.fromkeys(("adaptive_avg_pool", "adaptiveavgpool2d", "global_avg_pool", "global_pool", "avgpool_global"), "gap"),
    **dict.fromkeys(("maxpool", "max_pool", "maxpool2d"), "pool: {type: max}"),
    **dict.fromkeys(("avgpool", "avg_pool", "avgpool2d"), "pool: {type: avg}"),
    **dict.fromkeys(("sepconv", "separable", "separable_conv", "depthwise_separable", "dwsconv"), "dws"),
    **dict.fromkeys(("squeeze_excite", "squeeze_excitation", "seblock", "se_block"), "se"),
    **{name: f"act: {{type: {act}}}" for name, act in (
        ("relu", "relu"), ("relu6", "relu6"), ("leaky_relu", "leaky_relu"), ("leakyrelu", "leaky_relu"),
        ("gelu", "gelu"), ("silu", "silu"), ("swish", "silu"), ("hardswish", "hardswish"), ("hard_swish", "hardswish"))},
    "log_softmax": "logsoftmax", "drop": "dropout", "dropout2d": "dropout",
}
# enumerated values under other names (written without case or separators), each with the
# values it may mean, the first one allowed where it is written taken
VALUE_NAMES = {
    "bn": ("batch",), "gn": ("group",), "ln": ("layer",), "swish": ("silu",), "identity": ("none",),
    "linear": ("none", "fc"), "depthwiseseparable": ("dws",), "separable": ("dws",), "sepconv": ("dws",),
    "globalavgpool": ("gap",), "dense": ("fc",),
}


def field_hint(key: str, allowed: Iterable[str]) -> str:
    """'did you mean 'x'? ' for an unknown field, or ''."""
    allowed = list(allowed)
    alias = FIELD_NAMES.get(key.lower())
    close = [alias] if alias in allowed else difflib.get_close_matches(key, allowed, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def layer_hint(name: str, kinds: Iterable[str]) -> str:
    """'did you mean 'x'? ' for an unknown layer kind, or ''."""
    alias = LAYER_NAMES.get(name.lower())
    close = [alias] if alias else difflib.get_close_matches(name, list(kinds), n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'? " if close else ""


def value_hint(value: object, allowed: Iterable[str]) -> str:
    """'; did you mean 'x'?' for a value outside an enumeration, or ''."""
    match = closest_value(value, allowed)
    return f"; did you mean '{match}'?" if match else ""


def closest_value(value: object, allowed: Iterable[str]) -> str | None:
    """The allowed value meant: the same letters in another case or with other separators
    (ReLU, hard_swish), a longer spelling (batchnorm), another name (bn, swish) or a close
    spelling; None if none is."""
    if not isinstance(value, str):
        return None
    allowed = list(allowed)
    squeezed = {_squeeze(option): option for option in allowed}
    key = _squeeze(value)
    named = [option for option in VALUE_NAMES.get(key, ()) if option in allowed]
    match = squeezed.get(key) or (named[0] if named else None)
    if match is None:
        longer = [option for short, option in squeezed.items() if len(short) >= 3 and key.startswith(short)]
        match = max(longer, key=len, default=None)
    if match is None:
        close = difflib.get_close_matches(value, allowed, n=1)
        match = close[0] if close else None
    return match if match in allowed else None


def _squeeze(text: str) -> str:
    return re.sub(r"[\s_\-]", "", text.lower())
