"""Every YAML snippet in README.md and docs/ is valid, so the docs cannot drift from the code;
the site builds with `mkdocs build --strict` (broken links, anchors and pages left out of
the nav all fail it), and the index links every page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from blockspec import parse_spec
from blockspec.data import read_augment
from blockspec.layers import LAYER_KINDS, AnyLayer

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"name": "snippet", "blocks": {"C1": [{"conv": {"out": 8}}], "output": [{"gap": {}}, {"fc": {"out": 10}}]}}
SNIPPETS = [
    (path, index, text)
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for index, text in enumerate(re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL))
]


def test_docs_have_snippets() -> None:
    assert len(SNIPPETS) >= 15


@pytest.mark.parametrize(("path", "index", "text"), SNIPPETS, ids=lambda v: v.name if isinstance(v, Path) else None)
def test_snippet_is_valid(path: Path, index: int, text: str) -> None:
    document = yaml.safe_load(text)
    if isinstance(document, list) and all(next(iter(e)) in LAYER_KINDS for e in document):
        TypeAdapter(list[AnyLayer]).validate_python(document)
    elif isinstance(document, list):
        read_augment(document)
    else:
        spec = parse_spec(yaml.safe_dump({**MINIMAL, **document}), f"{path.name} snippet {index}")
        read_augment(spec.data.augment)


def test_index_links_every_page() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    pages = sorted(path.name for path in (ROOT / "docs").glob("*.md") if path.name != "index.md")
    assert [page for page in pages if f"]({page})" not in index] == []


def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)]
    result = subprocess.run(
        build, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


ERROR_EXAMPLES = {  # docs/spec.md's "Errors" examples, each from the spec that prints it
    "C1: [conv: {out: 8, dilaton: 2}]": "unknown field; did you mean 'dilation'?",
    "C1: [conv2d: {out: 8}]": "unknown layer kind 'conv2d'",
    "C1: [conv: {out: 8, k: 3, dilation: 2, stride: 2, padding: same}]": "'same' needs stride 1",
    "C1: [residual: {body: [conv: {out: 3, padding: 0}]}]": "the body maps 32×32 to 30×30",
    "C1: [conv: {out: 8}]\nrules: {require: [depthwise-separable]}": "unknown feature(s)",
}


@pytest.mark.parametrize("blocks", sorted(ERROR_EXAMPLES))
def test_the_error_examples_are_what_build_summary_prints(blocks: str, tmp_path: Path) -> None:
    head, _, rest = blocks.partition("\n")
    path = tmp_path / "x.yaml"
    path.write_text(f"name: x\nblocks:\n  {head}\n  output: [gap: {{}}, fc: {{out: 10}}]\n{rest}\n")
    result = subprocess.run(
        [sys.executable, "-m", "blockspec", "build-summary", "x.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    printed = result.stderr.strip()
    assert result.returncode == 2 and ERROR_EXAMPLES[blocks] in printed
    assert f"\n{printed}\n" in (ROOT / "docs" / "spec.md").read_text()


def test_the_python_pages_snippets_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/python.md's snippets, in order, in one namespace, from the repository's root; its
    checkpoint and image are made here (a checkpoint of the page's `small` spec, untrained)."""
    import numpy as np
    import torch
    from PIL import Image

    from blockspec import build_model
    from blockspec.train.checkpoint import save_atomic

    page = (ROOT / "docs" / "python.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    small = parse_spec(re.search(r'parse_spec\("""(.*?)"""\)', page, re.DOTALL).group(1))
    checkpoint = tmp_path / "best.pt"
    recorded = {"classes": [f"c{index}" for index in range(10)], "mean": [0.5] * 3, "std": [0.25] * 3}
    save_atomic({"model": build_model(small).state_dict(), "spec": small.to_yaml(), **recorded, "epoch": 3}, checkpoint)
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(tmp_path / "cat.png")
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    for snippet in snippets:
        code = snippet.replace('"runs/small/best.pt"', repr(str(checkpoint))).replace('"cat.png"', repr(str(tmp_path / "cat.png")))
        exec(compile(code, "docs/python.md", "exec"), namespace)  # noqa: S102 (the page's own code)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == "blocks.C3[0].out 0 Input should be greater than 0"
    assert printed[-1].startswith("c") and printed[-1].endswith(" 3")
    assert isinstance(namespace["trained"].model, torch.nn.Module)
