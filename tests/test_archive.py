"""Image folders shipped as archives are unpacked once and read like folders."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from blockspec import SpecError
from blockspec.data import load_dataset
from blockspec.data.archive import _publish
from tests.synthetic import write_colour_folder


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.xz", ".zip"])
def test_archive_loads_like_the_folder(tmp_path: Path, cache_home: Path, suffix: str) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    archive = tmp_path / f"colours{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as bundle:
            for file in folder.rglob("*.png"):
                bundle.write(file, file.relative_to(tmp_path))
    else:
        with tarfile.open(archive, "w:" + suffix.rsplit(".", 1)[1]) as bundle:
            bundle.add(folder, arcname="colours")
    from_archive = load_dataset("imagefolder", archive)
    from_folder = load_dataset("imagefolder", folder)
    assert (from_archive.train_images == from_folder.train_images).all()
    assert from_archive.classes == from_folder.classes
    unpacked = list((cache_home / "blockspec" / "archives").iterdir())
    load_dataset("imagefolder", archive)
    assert list((cache_home / "blockspec" / "archives").iterdir()) == unpacked  # unpacked once


def test_zip_member_outside_folder_is_refused(tmp_path: Path, cache_home: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../escaped.txt", "x")
    with pytest.raises(SpecError, match="outside the folder"):
        load_dataset("imagefolder", archive)
    assert not (cache_home / "blockspec" / "escaped.txt").exists()


def test_archive_without_layout(tmp_path: Path, cache_home: Path) -> None:
    archive = tmp_path / "empty.tar.gz"
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(tmp_path / "stuff", arcname="stuff")
    with pytest.raises(SpecError, match="no train/ and test/"):
        load_dataset("imagefolder", archive)


def test_second_unpacking_of_the_same_archive_yields_to_the_first(tmp_path: Path) -> None:
    """Runs started together each unpack the archive; the later ones must use the first copy."""
    target, staging = tmp_path / "key", tmp_path / ".unpacking-x"
    (target / "train").mkdir(parents=True)
    (staging / "train").mkdir(parents=True)
    (target / "train" / "first.txt").write_text("first")
    (staging / "train" / "second.txt").write_text("second")
    _publish(staging, target)
    assert [p.name for p in (target / "train").iterdir()] == ["first.txt"]
    assert not staging.exists()
