"""A layer kind from the user's own installed package, found through an entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from blockspec.schema_doc import slug

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
from typing import Literal
from pydantic import PositiveInt
from torch import nn
from blockspec.layers.base import Context, Geometry, LayerSpec, Shape, require_map
from blockspec.errors import fail


class ShuffleSpec(LayerSpec):
    """ShuffleNet's channel shuffle: no parameters, no spatial change."""

    kind: Literal["shuffle"] = "shuffle"
    groups: PositiveInt = 2

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        channels, _, _ = require_map(in_shape, ctx, self.kind)
        if channels % self.groups:
            raise fail(f"{ctx.path}.groups", f"must divide the {channels} input channels", self.groups)
        return Geometry(in_shape, 0, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return nn.ChannelShuffle(self.groups)


class NotALayer:
    pass
'''

SPEC = """
name: shuffled
blocks:
  C1: [conv: {out: 8}, shuffle: {groups: GROUPS}, conv: {out: 8, groups: 2}]
  output: [gap: {}, fc: {out: 10}]
rules: {require: [shuffle]}
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An installed distribution 'myplugin' declaring two entry points, one of them broken."""
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    info = tmp_path / "myplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[blockspec.layers]\nshuffle = myplugin:ShuffleSpec\nbroken = myplugin:NotALayer\n"
    )
    return tmp_path


def blockspec(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    return subprocess.run([sys.executable, "-m", "blockspec", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_plugin_kind_is_analysed_built_and_checked(site: Path, tmp_path: Path) -> None:
    spec = tmp_path / "shuffled.yaml"
    spec.write_text(SPEC.replace("GROUPS", "2"))
    result = blockspec(site, "build-summary", str(spec), "--format", "json", "--verify")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert [layer["kind"] for layer in data["layers"]][:3] == ["conv", "shuffle", "conv"]
    assert data["total_params"] == (3 * 9 * 8 + 8 + 16) + (8 * 4 * 9 + 8 + 16) + (8 * 10 + 10)
    assert {rule["name"]: rule["ok"] for rule in data["rules"]}["require shuffle"] is True
    assert "✓ built module agrees" in result.stderr
    assert "ignoring layer plugin 'broken'" in result.stderr and "not a subclass" in result.stderr


def test_plugin_kind_gets_the_same_error_messages(site: Path, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.replace("GROUPS", "3"))
    result = blockspec(site, "check", str(spec))
    assert result.returncode == 2
    assert "blocks.C1[1].groups = 3: must divide the 8 input channels" in result.stderr
    spec.write_text(SPEC.replace("groups: GROUPS", "grups: 2"))
    result = blockspec(site, "check", str(spec))
    assert result.returncode == 2 and "did you mean 'groups'?" in result.stderr


def test_without_the_plugin_the_kind_is_unknown(tmp_path: Path) -> None:
    spec = tmp_path / "shuffled.yaml"
    spec.write_text(SPEC.replace("GROUPS", "2"))
    result = blockspec(tmp_path, "check", str(spec))
    assert result.returncode == 2 and "unknown layer kind 'shuffle'" in result.stderr


FAULTY = '''
from typing import Annotated, Callable, Literal
import torch
from pydantic import AfterValidator, Strict, field_validator
from torch import nn
from blockspec.errors import fail
from blockspec.layers.base import Context, Geometry, LayerSpec, Shape, Window


class LiarSpec(LayerSpec):
    """Claims no parameters, builds a 1×1 convolution."""

    kind: Literal["liar"] = "liar"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(in_shape, 0, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return nn.Conv2d(in_shape[0], in_shape[0], 1)


class WidenSpec(LiarSpec):
    """Claims to keep the channels, builds a layer that doubles them."""

    kind: Literal["widen"] = "widen"

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return nn.Conv2d(in_shape[0], 2 * in_shape[0], 1, bias=False)


class MiscountSpec(LiarSpec):
    """Counts its parameters, forgets its MACs."""

    kind: Literal["miscount"] = "miscount"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(in_shape, in_shape[0] ** 2, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return nn.Conv2d(in_shape[0], in_shape[0], 1, bias=False)


class BoomSpec(LayerSpec):
    kind: Literal["boom"] = "boom"
    when: Literal["geometry", "build", "forward"] = "geometry"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        if self.when == "geometry":
            raise ValueError("boom in geometry")
        return Geometry(in_shape, 0, 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        if self.when == "build":
            raise ValueError("boom in build")
        return Explode() if self.when == "forward" else nn.Identity()


class Explode(nn.Module):
    def forward(self, x):
        raise ValueError("boom in forward")


class PickySpec(LiarSpec):
    """Its validator raises TypeError, which Pydantic passes on rather than reporting."""

    kind: Literal["picky"] = "picky"
    size: int = 1

    @field_validator("size")
    @classmethod
    def _odd(cls, size: int) -> int:
        if size % 2 == 0:
            raise TypeError("size must be odd")
        return size


class ListShapeSpec(LiarSpec):
    """Gives its output shape as a list."""

    kind: Literal["listshape"] = "listshape"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(list(in_shape), 0, 0)


class NoGeometrySpec(LiarSpec):
    kind: Literal["nogeometry"] = "nogeometry"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        pass


class NoModuleSpec(LiarSpec):
    """Returns the module's class, not a module."""

    kind: Literal["nomodule"] = "nomodule"

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return nn.Identity


class NarrowSpec(LiarSpec):
    """Declares a 1×1 window (the default field), builds a 3×3 depthwise convolution: its
    parameters, shape and MACs agree, only the receptive field is wrong."""

    kind: Literal["narrow"] = "narrow"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(in_shape, 9 * in_shape[0], 9 * in_shape[0] * in_shape[1] * in_shape[2])

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return nn.Conv2d(in_shape[0], in_shape[0], 3, padding=1, groups=in_shape[0], bias=False)


class PositionBiasSpec(LiarSpec):
    """No fault: a learned bias per position, so its module is built for one input size."""

    kind: Literal["posbias"] = "posbias"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(in_shape, in_shape[0] * in_shape[1] * in_shape[2], 0)

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return PositionBias(in_shape)


class PositionBias(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(shape))

    def forward(self, x):
        return x + self.bias


class WrongChannelsSpec(LiarSpec):
    """Builds a torch convolution for one channel more than it gets: no plugin code runs when
    it fails, torch's does."""

    kind: Literal["wrongchannels"] = "wrongchannels"

    def build(self, in_shape: Shape, ctx: Context) -> nn.Module:
        return nn.Conv2d(in_shape[0] + 1, in_shape[0], 1)


class WindowAsFieldSpec(LiarSpec):
    """Gives the Window itself as the field (forgot `.field()`)."""

    kind: Literal["windowfield"] = "windowfield"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry(in_shape, 0, 0, field=Window(3, 1, 1, 1), window=Window(3, 1, 1, 1))


class ShrinkSpec(LiarSpec):
    """Shrinks the map by 20 pixels a side: negative sizes on a small input."""

    kind: Literal["shrink"] = "shrink"

    def geometry(self, in_shape: Shape, ctx: Context) -> Geometry:
        return Geometry((in_shape[0], in_shape[1] - 20, in_shape[2] - 20), 0, 0)


class LettersSpec(LiarSpec):
    """Returns its feature name as a string, not a set."""

    kind: Literal["letters"] = "letters"

    def features(self, in_shape: Shape, ctx: Context) -> set[str]:
        return "strided"


def _odd(size: int) -> int:
    if size % 2 == 0:
        raise TypeError("size must be odd")
    return size


class PlainValidatorSpec(LiarSpec):
    """Its validator is a plain function of the module, not a method."""

    kind: Literal["plainvalid"] = "plainvalid"
    size: Annotated[int, AfterValidator(_odd)] = 1


class PowerOfTwoSpec(LiarSpec):
    """Reports a bad value with blockspec's `fail`, as docs/plugins.md shows for geometry."""

    kind: Literal["power"] = "power"
    groups: int = 2

    @field_validator("groups")
    @classmethod
    def _power(cls, groups: int) -> int:
        if groups & (groups - 1):
            raise fail("groups", "must be a power of two", groups)
        return groups


class PairSpec(LiarSpec):
    """A pair as docs/plugins.md says to declare one, so YAML's list reaches it."""

    kind: Literal["pair"] = "pair"
    amount: Annotated[tuple[int, int], Strict(False)] = (1, 1)


class NotLiteralSpec(LiarSpec):
    kind: str = "notliteral"


class CallableSpec(LiarSpec):
    kind: Literal["fn"] = "fn"
    fn: Callable[[int], int] = abs


class Twice(LiarSpec):
    kind: Literal["twice"] = "twice"


class TwiceAgain(Twice):
    pass
'''


def _distribution(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[blockspec.layers]\n" + entry_points)


@pytest.fixture
def faulty_site(tmp_path: Path) -> Path:
    """Plugins with the faults a plugin author can make; `twice` is registered by two packages."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "faultyplugin.py").write_text(FAULTY)
    kinds = ("liar", "widen", "miscount", "boom", "notliteral", "fn", "picky", "listshape", "nogeometry", "nomodule",
             "windowfield", "shrink", "letters", "plainvalid", "power", "pair", "narrow", "posbias", "wrongchannels")
    classes = ("LiarSpec", "WidenSpec", "MiscountSpec", "BoomSpec", "NotLiteralSpec", "CallableSpec", "PickySpec",
               "ListShapeSpec", "NoGeometrySpec", "NoModuleSpec", "WindowAsFieldSpec", "ShrinkSpec", "LettersSpec",
               "PlainValidatorSpec", "PowerOfTwoSpec", "PairSpec", "NarrowSpec", "PositionBiasSpec",
               "WrongChannelsSpec")
    _distribution(site, "faultyplugin", "".join(f"{k} = faultyplugin:{c}\n" for k, c in zip(kinds, classes))
                  + "twice = faultyplugin:Twice\n")
    _distribution(site, "otherplugin", "twice = faultyplugin:TwiceAgain\n")
    return site


def _faulty_spec(tmp_path: Path, layer: str) -> Path:
    spec = tmp_path / "faulty.yaml"
    spec.write_text(f"name: f\ninput: {{size: 8}}\nblocks:\n  C1: [conv: {{out: 8}}, {layer}, conv: {{out: 8}}]\n"
                    "  output: [gap: {}, fc: {out: 10}]\n")
    return spec


def test_verify_names_the_layer_whose_parameters_differ_and_exits_1(faulty_site: Path, tmp_path: Path) -> None:
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "liar: {}")), "--verify")
    assert result.returncode == 1, result.stderr
    assert "✗ module differs from the analysis: C1.1 (liar at blocks.C1[1]): torch counts 72 parameters, the analysis 0" in result.stderr
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "liar: {}")), "--verify", "-f", "json")
    document = json.loads(result.stdout)
    assert document["verify"]["module_params"] == document["total_params"] + 72  # torch's count, not the analysis's


def test_verify_stops_at_the_first_layer_whose_shape_differs(faulty_site: Path, tmp_path: Path) -> None:
    """The convolution after it was built for 8 channels: running it would only crash."""
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "widen: {}")), "--verify")
    assert result.returncode == 1, result.stderr
    assert "C1.1 (widen at blocks.C1[1]): forward gives (16, 8, 8), the analysis (8, 8, 8)" in result.stderr
    assert "Traceback" not in result.stderr and "bug in blockspec" not in result.stderr


def test_verify_names_the_layer_whose_macs_differ_from_torchs_count(faulty_site: Path, tmp_path: Path) -> None:
    """8×8 weights at 8×8 positions: 4,096 multiply-accumulates, which torch's FlopCounterMode
    counts as 8,192 FLOPs."""
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "miscount: {}")), "--verify")
    assert result.returncode == 1, result.stderr
    assert "C1.1 (miscount at blocks.C1[1]): torch counts 4,096 MACs, the analysis 0" in result.stderr
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "miscount: {}")), "--verify", "-f", "json")
    document = json.loads(result.stdout)
    assert result.returncode == 1 and document["verify"] == {
        "agrees": False, "module_params": document["total_params"],
        "receptive_field": "not compared: the layers differ",
        "problems": ["C1.1 (miscount at blocks.C1[1]): torch counts 4,096 MACs, the analysis 0"]}


@pytest.mark.parametrize(
    ("body", "says"),
    [("[liar: {}]", "liar at blocks.C1[1].body[0]: torch counts 72 parameters, the analysis 0; "
                    "liar at blocks.C1[1].body[0]: torch counts 4,096 MACs, the analysis 0"),
     ("[conv: {out: 8}, residual: {body: [miscount: {}]}]",
      "miscount at blocks.C1[1].body[1].body[0]: torch counts 4,096 MACs, the analysis 0\n"),  # not again at body[1]
     ("[widen: {}, conv: {out: 8}]", "widen at blocks.C1[1].body[0]: torch counts 128 parameters, the analysis 0; widen "
                                     "at blocks.C1[1].body[0]: forward gives (16, 8, 8), the analysis (8, 8, 8)")],
)
def test_verify_names_the_body_layer_of_a_residual_that_differs(
    faulty_site: Path, tmp_path: Path, body: str, says: str
) -> None:
    """It was named at the residual around it (`widen` failed the residual's sum, exit 2)."""
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, f"residual: {{body: {body}}}")), "--verify")
    assert result.returncode == 1, result.stderr
    assert f"✗ module differs from the analysis: {says}" in result.stderr


def test_verify_names_every_layer_that_differs_past_a_residual_whose_body_does(faulty_site: Path, tmp_path: Path) -> None:
    """It stopped at the body, leaving the liar after the residual unnamed."""
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "residual: {body: [liar: {}]}, liar: {}")),
                       "--verify")
    assert result.returncode == 1, result.stderr
    assert "liar at blocks.C1[1].body[0]: torch counts 72 parameters, the analysis 0" in result.stderr
    assert "C1.2 (liar at blocks.C1[2]): torch counts 72 parameters, the analysis 0" in result.stderr
    assert "(residual at" not in result.stderr  # the residual itself is not named again


def test_verify_measures_each_layers_receptive_field_from_input_gradients(faulty_site: Path, tmp_path: Path) -> None:
    """`narrow` declares a 1×1 window and builds a 3×3 convolution: parameters, shapes and
    MACs agree, so only the gradient shows it, at that layer and at the one after it."""
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "narrow: {}")), "--verify")
    assert result.returncode == 1, result.stderr
    assert ("✗ module differs from the analysis: C1.1 (narrow at blocks.C1[1]): the centre unit's input gradient "
            "reaches rows 4–8, columns 4–8 of a 12×12 input, the analysis' field (rf 3, jump 1, start -1) rows and "
            "columns 5–7; C1.2 (conv at blocks.C1[2]): the centre unit's input gradient reaches rows 3–9, columns 3–9 "
            "of a 12×12 input, the analysis' field (rf 5, jump 1, start -2) rows and columns 4–8\n") in result.stderr
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "liar: {}")), "--verify", "-f", "json")
    assert json.loads(result.stdout)["verify"]["receptive_field"] == "not compared: the layers differ"
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "posbias: {}")), "--verify")
    assert result.returncode == 0, result.stderr  # its module is built for the probe's input size, not the spec's
    assert "receptive field 5 (input gradients)" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("layer", "doing"),
    [
        ("boom: {}", "computing its geometry"),
        ("boom: {when: build}", "building its module"),
        ("boom: {when: forward}", "in its forward pass"),
        ("residual: {body: [conv: {out: 8}, boom: {}]}", "computing its geometry"),
        ("residual: {body: [conv: {out: 8}, boom: {when: build}]}", "building its module"),
        ("residual: {body: [conv: {out: 8}, boom: {when: forward}]}", "in its forward pass"),
    ],
)
def test_an_exception_in_a_plugins_code_names_the_plugin_and_the_layer(
    faulty_site: Path, tmp_path: Path, layer: str, doing: str
) -> None:
    """Inside a residual, at the body layer (it was the residual)."""
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, layer)), "--verify")
    assert result.returncode == 2, result.stderr
    where = "blocks.C1[1].body[1]" if layer.startswith("residual") else "blocks.C1[1]"
    assert f"faulty.yaml: {where}: failed {doing}, in the layer plugin 'boom' (faultyplugin:BoomSpec): ValueError: boom in" in result.stderr
    assert "Traceback" not in result.stderr and "bug in blockspec" not in result.stderr


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("picky: {size: 2}", "blocks.C1[1]: failed validating its fields, in the layer plugin 'picky' "
                             "(faultyplugin:PickySpec): TypeError: size must be odd (a validator reports a bad value "
                             "by raising ValueError)"),
        ("residual: {body: [conv: {out: 8}, {kind: picky, size: 4}]}", "blocks.C1[1].body[1]: failed "
                                                                        "validating its fields, in the layer plugin 'picky'"),
        ("listshape: {}", "blocks.C1[1]: failed computing its geometry, in the layer plugin 'listshape' "
                          "(faultyplugin:ListShapeSpec): TypeError: geometry() returned the output shape [8, 8, 8], "
                          "not (C, H, W) or (F,) in positive integers"),
        ("nogeometry: {}", "blocks.C1[1]: failed computing its geometry, in the layer plugin 'nogeometry' "
                           "(faultyplugin:NoGeometrySpec): TypeError: geometry() returned NoneType, not a Geometry"),
        ("windowfield: {}", "blocks.C1[1]: failed computing its geometry, in the layer plugin 'windowfield' "
                            "(faultyplugin:WindowAsFieldSpec): TypeError: geometry() returned field=Window(k=3, "
                            "stride=1, dilation=1, padding=1), not a Field1D (a Window's .field())"),
        ("residual: {body: [conv: {out: 8}, shrink: {}]}",
         "blocks.C1[1].body[1]: failed computing its geometry, in the layer plugin 'shrink' (faultyplugin:ShrinkSpec): "
         "TypeError: geometry() returned the output shape (8, -12, -12), not (C, H, W) or (F,) in positive integers"),
        ("letters: {}", "blocks.C1[1]: failed computing its geometry, in the layer plugin 'letters' "
                        "(faultyplugin:LettersSpec): TypeError: features() returned 'strided', not a set of names"),
        ("plainvalid: {size: 2}", "blocks.C1[1]: failed validating its fields, in the layer plugin 'plainvalid' "
                                  "(faultyplugin:PlainValidatorSpec): TypeError: size must be odd"),
    ],
)
def test_a_plugins_validator_or_geometry_slip_is_the_plugins(
    faulty_site: Path, tmp_path: Path, layer: str, message: str
) -> None:
    """They failed further on in blockspec's own code: an internal error (exit 70) that asked
    for a bug report against blockspec."""
    result = blockspec(faulty_site, "check", str(_faulty_spec(tmp_path, layer)))
    assert result.returncode == 2, result.stderr
    assert f"faulty.yaml: {message}" in result.stderr
    assert "Traceback" not in result.stderr and "bug in blockspec" not in result.stderr


def test_a_validator_fault_is_placed_at_the_layer_whose_fields_raise_it(faulty_site: Path, tmp_path: Path) -> None:
    """It was placed at the first layer of the plugin's kind, which was valid."""
    spec = tmp_path / "two.yaml"
    spec.write_text("name: f\ninput: {size: 8}\nblocks:\n  C1: [conv: {out: 8}, picky: {size: 3}]\n"
                    "  C2: [conv: {out: 8}, picky: {size: 4}, residual: {body: [power: {groups: 3}]}]\n"
                    "  output: [gap: {}, fc: {out: 10}]\n")
    result = blockspec(faulty_site, "check", str(spec))
    assert result.returncode == 2 and "two.yaml: blocks.C2[1]: failed validating its fields, in the layer plugin 'picky'" in result.stderr
    spec.write_text(spec.read_text().replace("size: 4", "size: 5"))
    result = blockspec(faulty_site, "check", str(spec))  # `fail` in a validator: its path within the layer
    assert result.returncode == 2 and "two.yaml: blocks.C2[2].body[0].groups = 3: must be a power of two" in result.stderr


def test_a_pair_declared_as_the_docs_say_takes_a_yaml_list(faulty_site: Path, tmp_path: Path) -> None:
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "pair: {amount: [2, 1]}")), "-f", "json")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("layer", "says"),
    [("boom: {when: forward}", r"blocks\.C1\[2\]: a fault in the layer plugin 'boom' \(faultyplugin:BoomSpec\): "
                               r"ValueError: boom in forward \(raised in .*faultyplugin\.py, line \d+, in Explode\.forward\)"),
     ("wrongchannels: {}", r"blocks\.C1\[2\]: a fault in the layer plugin 'wrongchannels' \(faultyplugin:WrongChannelsSpec\): "
                           r"RuntimeError: .*channels.* \(raised in .*torch.*conv\.py, line \d+, in .*\)"),
     ("residual: {body: [conv: {out: 16}, wrongchannels: {}]}",
      r"blocks\.C1\[2\]\.body\[1\]: a fault in the layer plugin 'wrongchannels' \(faultyplugin:WrongChannelsSpec\): .*")],
)
def test_a_fault_in_a_plugins_module_while_training_is_the_plugins(
    faulty_site: Path, tmp_path: Path, layer: str, says: str
) -> None:
    """Only `build-summary --verify` named the plugin; `train`, `eval` and `export` asked for a
    bug report against blockspec (exit 70), also where the failing code is torch's, in a
    module the plugin built."""
    from tests.synthetic import tiny_spec_text, write_colour_folder

    spec = tmp_path / "boom.yaml"
    spec.write_text(tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=1).replace(
        "strided: {out: 16}]", f"strided: {{out: 16}}, {layer}]"))
    result = blockspec(faulty_site, "train", str(spec), "--out", str(tmp_path / "run"), "--workers", "0")
    assert result.returncode == 2, result.stderr
    assert re.search(f"error: {says}; rerun with BLOCKSPEC_DEBUG=1 for the traceback", result.stderr), result.stderr
    assert "bug in blockspec" not in result.stderr and "Traceback" not in result.stderr


def test_a_plugin_exiting_at_import_is_skipped_with_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "quitter.py").write_text("import sys\nsys.exit(3)\n")
    _distribution(site, "quitter", "quit = quitter:QuitSpec\n")
    result = blockspec(site, "check", str(ROOT / "architectures" / "flagship.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "blockspec: ignoring layer plugin 'quit' (quitter:QuitSpec): cannot be loaded (SystemExit: 3)\n"


def test_a_plugin_building_no_module_is_named(faulty_site: Path, tmp_path: Path) -> None:
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "nomodule: {}")), "--verify")
    assert result.returncode == 2, result.stderr
    assert ("blocks.C1[1]: failed building its module, in the layer plugin 'nomodule' (faultyplugin:NoModuleSpec): "
            "TypeError: build() returned type, not a torch.nn.Module") in result.stderr
    assert "bug in blockspec" not in result.stderr
    result = blockspec(faulty_site, "build-summary", str(_faulty_spec(tmp_path, "residual: {body: [nomodule: {}]}")), "--verify")
    assert result.returncode == 2 and ("blocks.C1[1].body[0]: failed building its module, in the layer plugin 'nomodule' "
                                       "(faultyplugin:NoModuleSpec): TypeError: build() returned type") in result.stderr


def test_plugins_that_cannot_work_are_skipped_with_a_warning(faulty_site: Path, tmp_path: Path) -> None:
    """A `kind` that is not a Literal (Pydantic could build no spec at all), and a kind two
    packages register (which one won would depend on the install order)."""
    result = blockspec(faulty_site, "check", str(_faulty_spec(tmp_path, "conv: {out: 8}")))
    assert result.returncode == 0, result.stderr
    assert "ignoring layer plugin 'notliteral' (faultyplugin:NotLiteralSpec): its `kind` field must be" in result.stderr
    assert "ignoring layer plugin 'twice': faultyplugin:Twice and faultyplugin:TwiceAgain both register it" in result.stderr


def test_a_script_can_silence_or_capture_the_plugin_warnings(faulty_site: Path) -> None:
    """They were printed to stderr at import, beyond a script's reach; they go through the
    `blockspec` logger."""
    env = {**os.environ, "PYTHONPATH": f"{faulty_site}{os.pathsep}{ROOT}"}
    silenced = "import logging; logging.getLogger('blockspec').setLevel(logging.ERROR); import blockspec.layers"
    result = subprocess.run([sys.executable, "-c", silenced], capture_output=True, text=True, env=env, check=True)
    assert result.stderr == ""
    captured = ("import logging; records = []; handler = logging.Handler(); handler.emit = records.append; "
                "logging.getLogger('blockspec').addHandler(handler); import blockspec.layers; "
                "print(sorted(r.getMessage().split(\"'\")[1] for r in records))")
    result = subprocess.run([sys.executable, "-c", captured], capture_output=True, text=True, env=env, check=True)
    assert "'notliteral'" in result.stdout and "'twice'" in result.stdout and result.stderr == ""


def test_schema_describes_a_plugin_field_it_cannot_type_as_any_value(faulty_site: Path) -> None:
    result = blockspec(faulty_site, "schema")
    assert result.returncode == 0, result.stderr
    assert "layer plugin 'fn' (faultyplugin:CallableSpec) has fields JSON Schema cannot describe" in result.stderr
    assert json.loads(result.stdout)["$defs"]["CallableSpecArgs"]["properties"]["fn"] == {"title": "Fn"}


def test_reference_page_keeps_sections_apart_from_plugin_kinds_named_like_them(tmp_path: Path) -> None:
    """Plugin kinds `input` and `optimizer` share their names with sections of the page: the
    section reached second is titled with its parent's title before its own (the layer
    `input` after the top level's, `train`'s optimizer after the layer), so each heading and
    its anchor stay their own and every link finds its heading."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "namesakes.py").write_text(
        "from typing import Literal\nfrom blockspec.layers.base import LayerSpec\n\n"
        "class InputSpec(LayerSpec):\n    kind: Literal['input'] = 'input'\n\n"
        "class OptimizerSpec(LayerSpec):\n    kind: Literal['optimizer'] = 'optimizer'\n")
    _distribution(site, "namesakes", "input = namesakes:InputSpec\noptimizer = namesakes:OptimizerSpec\n")
    result = blockspec(site, "schema", "--format", "markdown")
    assert result.returncode == 0, result.stderr
    titles = re.findall(r"^#{2,3} (.+)$", result.stdout, flags=re.MULTILINE)
    assert len(titles) == len(set(titles)), titles
    assert {"input", "blocks input", "optimizer", "train optimizer"} <= set(titles)
    anchors = {slug(title) for title in titles}
    assert set(re.findall(r"\]\(#([^)]+)\)", result.stdout)) <= anchors
