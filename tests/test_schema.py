"""The JSON Schema users' editors see agrees with the loader, and ships up to date."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from blockspec.layers import LAYER_KINDS
from blockspec.schema import spec_json_schema
from blockspec.schema_doc import schema_markdown
from blockspec.spec import Spec
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "architectures").rglob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(spec_json_schema())


def test_schema_is_valid_draft_2020_12_and_shipped_copy_is_current() -> None:
    jsonschema.Draft202012Validator.check_schema(spec_json_schema())
    shipped = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    assert shipped == spec_json_schema(), "regenerate with: blockspec schema > docs/spec.schema.json"


def test_shipped_reference_is_current() -> None:
    shipped = (ROOT / "docs" / "reference.md").read_text()
    assert shipped == schema_markdown(spec_json_schema()), (
        "regenerate with: blockspec schema --format markdown > docs/reference.md"
    )


def test_reference_has_every_layer_kind_and_top_level_field() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    top_level = reference.split("\n## Top level\n", 1)[1].split("\n## ", 1)[0]
    for field in Spec.model_fields:
        assert f"\n| `{field}` |" in top_level, field
    for kind in LAYER_KINDS:
        assert f"\n### {kind}\n" in reference, kind
        assert f"| [`{kind}`](#{kind}) |" in reference, kind


def test_schema_markdown_flag_and_a_wrong_format(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["schema", "--format", "markdown"], capsys)
    assert code == 0 and out == (ROOT / "docs" / "reference.md").read_text()
    code, out, _ = run_cli(["schema"], capsys)
    assert code == 0 and json.loads(out) == spec_json_schema()
    code, _, err = run_cli(["schema", "--format", "html"], capsys)
    assert code == 2 and err == "error: --format = 'html': allowed: json, markdown\n"


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_shipped_spec_validates_and_points_at_the_schema(path: Path) -> None:
    first_line = path.read_text().splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first_line)
    assert match and (path.parent / match.group(1)).resolve() == ROOT / "docs" / "spec.schema.json"
    assert list(VALIDATOR.iter_errors(yaml.safe_load(path.read_text()))) == []


@pytest.mark.parametrize(
    "text",
    [
        "name: x\nblocks:\n  C1: [conv: {out: 8, dilaton: 2}]\n",
        "name: x\nblocks:\n  C1: [cnov: {out: 8}]\n",
        "name: x\nblocks:\n  C1: [conv: {out: 8}, dws: {}]\n",
        "name: x\nblocks:\n  C1: [residual: {body: [conv: {out: 8, k: 0}]}]\n",
        "name: x\nblocks: {}\n",
        "blocks:\n  C1: [gap: {}]\n",
        "name: x\nblocks:\n  training: [gap: {}]\n",
        "name: x\nblocks:\n  _C1: [gap: {}]\n",
        # found by a differential fuzz of the schema against the loader
        "name: x\nblocks:\n  C1:\n    - conv:\n  output: [gap: {}, fc: {out: 10}]\n",
        "name: x\nblocks:\n  C1: [residual: ]\n  output: [gap: {}, fc: {out: 10}]\n",
        "name: x\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\ntrain: {whiten_stem: 0}\n",
        "name: x\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\ntrain: {optimizer: {lr: .inf}}\n",
        "name: x\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\ntrain: {optimizer: {weight_decay: " + "9" * 400 + "}}\n",
    ],
)
def test_schema_refuses_what_the_loader_refuses(text: str) -> None:
    from blockspec.errors import SpecError
    from blockspec.load import parse_spec

    assert list(VALIDATOR.iter_errors(yaml.safe_load(text)))
    with pytest.raises(SpecError):
        parse_spec(text, source="x.yaml")


def test_a_kind_without_required_fields_may_be_written_bare_in_both() -> None:
    from blockspec.load import parse_spec

    text = "name: x\nblocks:\n  C1: [conv: {out: 8}, flatten: ]\n  output: [fc: {out: 10}]\n"
    assert list(VALIDATOR.iter_errors(yaml.safe_load(text))) == []
    parse_spec(text, source="x.yaml")


def test_a_block_name_with_a_trailing_newline_is_refused() -> None:
    """`re.match` with `$` let "C1\\n" through; an editor's (JavaScript) pattern refuses it."""
    from blockspec.errors import SpecError
    from blockspec.load import parse_spec

    with pytest.raises(SpecError, match="a block name must be an identifier"):
        parse_spec('name: x\nblocks:\n  "C1\\n": [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n')


@pytest.mark.parametrize("path", SPECS[:3] + [ROOT / "architectures" / "flagship.yaml"], ids=lambda p: p.stem)
def test_schema_takes_layers_with_their_kind_as_a_field_as_the_loader_does(path: Path) -> None:
    """`Spec.model_dump()` writes each layer as `{kind: conv, out: 16, ...}`, which the loader
    takes: an editor must not mark such a file wrong."""
    from blockspec.load import parse_spec

    spec = parse_spec(path.read_text(), source=str(path))
    dumped = spec.model_dump(mode="json")
    assert list(VALIDATOR.iter_errors(dumped)) == []
    assert parse_spec(yaml.safe_dump(dumped), source="dump.yaml") == spec


@pytest.mark.parametrize(
    "layer",
    ["{kind: conv, out: 8, dilaton: 2}", "{kind: cnov, out: 8}", "{kind: conv, out: 0}", "{kind: dws}"],
)
def test_schema_and_loader_refuse_the_same_layers_written_with_their_kind(layer: str) -> None:
    from blockspec.errors import SpecError
    from blockspec.load import parse_spec

    text = f"name: x\nblocks:\n  C1: [{layer}]\n  output: [gap: {{}}, fc: {{out: 10}}]\n"
    assert list(VALIDATOR.iter_errors(yaml.safe_load(text)))
    with pytest.raises(SpecError, match=r"blocks\.C1\[0\]") as error:
        parse_spec(text, source="x.yaml")
    assert "one-key mapping" not in str(error.value)  # the kind is named, not the form blamed
    valid = yaml.safe_load("name: x\nblocks:\n  C1: [{kind: conv, out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n")
    assert list(VALIDATOR.iter_errors(valid)) == []


def test_reserved_block_names_are_the_built_modules_attributes() -> None:
    """Spec refuses these names without importing torch; they must be exactly torch's."""
    from collections import OrderedDict

    from blockspec.modules import BlockNet
    from blockspec.spec import BLOCK_NAME, MODULE_ATTRIBUTES

    built = BlockNet("probe", OrderedDict())
    assert MODULE_ATTRIBUTES == {name for name in dir(built) if BLOCK_NAME.match(name)}
