"""benchmarks/cuda_variants.sh's variants are `--set` edits of the flagship: each must make a
valid spec, or a GPU lease (minutes, rare) would spend a run on a typo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from blockspec.load import load_spec

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = (ROOT / "benchmarks" / "cuda_variants.sh").read_text()


def _variants() -> dict[str, list[str]]:
    """name → edits, read from the script's `variants=( … )` list as bash reads it: each
    double-quoted line is a name and whitespace-separated edits, `\\"` standing for `"`."""
    body = re.search(r"^variants=\((.*?)^\)", SCRIPT, re.MULTILINE | re.DOTALL)
    assert body, "no variants=( … ) list in benchmarks/cuda_variants.sh"
    lines = re.findall(r'^\s*"((?:[^"\\]|\\.)*)"', body.group(1), re.MULTILINE)
    found = {}
    for line in lines:
        name, *edits = line.replace('\\"', '"').split()
        found[name] = edits
    return found


VARIANTS = _variants()


def test_the_whole_list_is_read() -> None:
    """Its first entry (the flagship as written) and its last, which has quoted JSON in it."""
    assert VARIANTS["flagship"] == []
    assert VARIANTS["c2at32"][0] == 'blocks.C2[0]={"conv":{"out":64}}'


@pytest.mark.parametrize("name", [name for name, edits in VARIANTS.items() if edits])
def test_each_variant_is_a_valid_spec_that_differs_from_the_flagship(name: str) -> None:
    flagship = load_spec(ROOT / "architectures" / "flagship.yaml")
    variant = load_spec(ROOT / "architectures" / "flagship.yaml", edits=VARIANTS[name], augment=True)
    assert variant != flagship, name
