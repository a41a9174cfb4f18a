"""Resolved spec → `nn.Module` with readable names (`model.C1`, `model.output`)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from torch import nn

from blockspec.analysis import root_context, trace
from blockspec.errors import fail, is_out_of_memory
from blockspec.layers import Context, Shape, expand, plugin_code, remember_plugin_module
from blockspec.layers.base import LayerSpec
from blockspec.modules import BlockNet
from blockspec.spec import Spec
from blockspec.train.whiten import stem_conv


def build_model(spec: Spec, check_head: bool = True) -> BlockNet:
    """Build every block as an `nn.Sequential` of its layers, in spec order.

    Module order equals spec order, so a `state_dict` from a hand-written network with the
    same layer sequence loads by position. With `train.whiten_stem: frozen` the first
    convolution's kernel is built frozen (training then fills it from the data). Without
    `check_head`, a network that does not end in `classes` scores is built too (its spatial
    layers, at another input size, where a flattening head no longer fits: field_probe's).
    """
    rows = iter(trace(spec, check_head=check_head).rows)
    ctx = root_context(spec)
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    for block, layers in spec.blocks.items():  # names that clash with nn.Module's: refused by Spec
        modules = []
        for (index, _, layer), row in zip(expand(layers), rows):
            layer_ctx = replace(ctx, path=f"blocks.{block}[{index}]")
            modules.append(build_layer(layer, row.in_shape, row.params, layer_ctx))
        blocks[block] = nn.Sequential(*modules)
    model = BlockNet(spec.name, blocks)
    if spec.train.whiten_stem == "frozen":  # training sets it once from the data: not trainable, as summaries count it
        stem_conv(model).weight.requires_grad_(False)
    return model


def build_layer(layer: LayerSpec, in_shape: Shape, params: int, ctx: Context) -> nn.Module:
    """The layer's module (a network's layer, or a residual's body layer); a layer too large for
    memory (`params`, the analysis' count) is the spec's problem, named as such; a plugin's
    fault is the plugin's, at `ctx.path`, and so is one later in a module it built."""
    with plugin_code(layer, ctx.path, "building its module"):
        try:
            module = layer.build(in_shape, ctx)
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            raise fail(ctx.path, f"{params:,} parameters: more than this machine's memory holds") from None
        if not isinstance(module, nn.Module):  # a plugin's slip, named as the plugin's
            raise TypeError(f"build() returned {type(module).__name__}, not a torch.nn.Module")
    remember_plugin_module(module, layer, ctx.path)
    return module
