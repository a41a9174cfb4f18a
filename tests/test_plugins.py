"""A layer kind from the user's own installed package, found through an entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
