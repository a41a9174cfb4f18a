"""The Python entry points take what a script naturally holds, and refuse slips by name."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import blockspec

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "architectures" / "flagship.yaml"


def test_a_spec_read_into_a_mapping_loads_as_its_file_does_and_stays_unchanged() -> None:
    document = yaml.safe_load(FLAGSHIP.read_text())
    kept = copy.deepcopy(document)
    from_file = blockspec.load_spec(FLAGSHIP)
    assert blockspec.load_spec(document) == from_file == blockspec.parse_spec(document)
    assert blockspec.load_spec(document, edits=["train.epochs=3"]).train.epochs == 3
    assert document == kept


def test_a_mapping_with_a_mistake_is_a_spec_error_naming_the_field() -> None:
    with pytest.raises(blockspec.SpecError, match=r"^<mapping>: blocks\.C1\[0\]\.out = 0: ") as error:
        blockspec.load_spec({"name": "x", "blocks": {"C1": [{"conv": {"out": 0}}], "output": [{"gap": {}}]}})
    assert [problem.path for problem in error.value.problems] == ["blocks.C1[0].out"]


def test_yaml_text_given_to_load_spec_is_pointed_to_parse_spec() -> None:
    """It was looked up as a file name: the error quoted the whole text as the file."""
    text = FLAGSHIP.read_text()
    with pytest.raises(blockspec.SpecError, match=r"^load_spec: given YAML text, not a file path; to read YAML text, use blockspec\.parse_spec$"):
        blockspec.load_spec(text)
    assert blockspec.parse_spec(text) == blockspec.load_spec(FLAGSHIP)
    short = "name: x\ninput: {size: 32}\nblocks:\n  C1: [conv: {out: 8}]\n  output: [gap: {}, fc: {out: 10}]\n"
    with pytest.raises(blockspec.SpecError, match=r"^load_spec: given YAML text"):  # no '/': a name too long to open
        blockspec.load_spec(short + "#" * 300)


def test_numpy_integers_are_sides_and_bools_are_not() -> None:
    import numpy as np

    assert blockspec.load_spec(FLAGSHIP, input_size=(np.int64(64), np.int32(48))).input.hw == (64, 48)
    with pytest.raises(TypeError, match="input_size"):
        blockspec.load_spec(FLAGSHIP, input_size=(True, 32))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: blockspec.load_spec(3), "load_spec: expected a file path or a mapping, got int"),
        (lambda: blockspec.parse_spec(FLAGSHIP), "parse_spec: expected YAML text or a mapping, got PosixPath"),
        (lambda: blockspec.load_spec(FLAGSHIP, edits="train.epochs=3"), "edits: expected a list of 'PATH=VALUE'"),
        (lambda: blockspec.load_spec(FLAGSHIP, input_size=64), r"input_size: expected \(height, width\)"),
        (lambda: blockspec.parse_spec(FLAGSHIP.read_text(), ["train.epochs=3"]),
         r"source: expected the name to give the spec in errors, a str, got list \(input_size and edits are keyword"),
        (lambda: blockspec.load_spec(FLAGSHIP, (64, 64)), "positional argument"),
        (lambda: blockspec.build_model(str(FLAGSHIP)), r"spec: expected a Spec, as blockspec\.load_spec\(path\) returns, got str"),
        (lambda: blockspec.summarize({"name": "x"}), "spec: expected a Spec, .* got dict"),
    ],
)
def test_arguments_of_the_wrong_type_are_named(call, message: str) -> None:  # noqa: ANN001
    """One edit string was read letter by letter (`--set = 't'`), one number for the size
    failed inside with an index error."""
    with pytest.raises(TypeError, match=message):
        call()


def test_edits_from_a_generator_are_applied_not_dropped() -> None:
    """The type check used the generator up: the edits, a bad one too, were silently dropped."""
    spec = blockspec.load_spec(FLAGSHIP, edits=(edit for edit in ["train.epochs=3", "train.batch_size=64"]))
    assert (spec.train.epochs, spec.train.batch_size) == (3, 64)
    with pytest.raises(blockspec.SpecError, match=r"classes = 0"):
        blockspec.parse_spec(FLAGSHIP.read_text(), edits=iter(["classes=0"]))


def test_a_spec_error_crosses_a_process_pool_whole() -> None:
    """Pickled, it was rebuilt from its message alone, which failed: a pool's worker that
    raised one broke the pool and the message was lost."""
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    with pytest.raises(blockspec.SpecError) as raised:
        blockspec.load_spec(FLAGSHIP, edits=["train.epochs=0", "classes=0"])
    raised.value.__notes__ = ["while sweeping widths"]  # what add_note does, on Python 3.11 on (3.10 has none)
    for again in (pickle.loads(pickle.dumps(raised.value)), copy.copy(raised.value)):
        assert str(again) == str(raised.value) and again.problems == raised.value.problems
        assert again.source == raised.value.source and again.__notes__ == ["while sweeping widths"]
    with ProcessPoolExecutor(1) as pool, pytest.raises(blockspec.SpecError, match=r"missing\.yaml: file not found"):
        pool.submit(blockspec.load_spec, str(ROOT / "missing.yaml")).result()


def test_lazy_names_are_listed_for_tab_completion() -> None:
    assert {"build_model", "load_trained", "TrainedModel"} <= set(dir(blockspec))
    assert set(blockspec.__all__) <= set(dir(blockspec))
    assert not {"Any", "importlib", "annotations", "TYPE_CHECKING"} & set(dir(blockspec))


def test_a_summary_shows_as_its_table_not_as_kilobytes_of_fields(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_helpers import run_cli

    summary = blockspec.summarize(blockspec.load_spec(FLAGSHIP))
    assert repr(summary) == ("<Summary 'flagship': 194,666 parameters, 63,554,816 MACs, receptive field 45, "
                             "rules hold>")
    code, table, _ = run_cli(["build-summary", str(FLAGSHIP)], capsys)
    assert code == 0
    assert [line.rstrip() for line in str(summary).splitlines()] == [line.rstrip() for line in table.splitlines()]
    code, markdown, _ = run_cli(["build-summary", str(FLAGSHIP), "--format", "markdown"], capsys)
    assert code == 0 and summary._repr_markdown_() == markdown.rstrip("\n") + "\n"


def test_numpy_scalars_in_a_mapping_are_read_as_their_python_values() -> None:
    """A class count computed with numpy was "not a valid integer" under strict validation."""
    import numpy as np

    document = yaml.safe_load(FLAGSHIP.read_text())
    document["classes"] = np.int64(10)
    document["train"]["tta_flip"] = np.bool_(True)
    document["blocks"]["C1"][0]["conv"]["out"] = np.int32(32)
    assert blockspec.load_spec(document) == blockspec.load_spec(FLAGSHIP)


def test_numpy_arrays_in_a_mapping_are_read_as_lists() -> None:
    """`_plain` took an array for a scalar: a raw ValueError, or [16] read as 16."""
    import numpy as np

    document = yaml.safe_load(FLAGSHIP.read_text())
    document["input"]["size"] = np.array([32, 32])
    assert blockspec.load_spec(document).input.hw == (32, 32)
    document["input"]["size"] = np.array([[32]])
    with pytest.raises(blockspec.SpecError, match=r"input\.size"):
        blockspec.load_spec(document)
