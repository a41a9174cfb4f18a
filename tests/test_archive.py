"""Image folders shipped as archives are read in place, like folders, and cached once decoded."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from blockspec import SpecError
from blockspec.data import load_dataset
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
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert (getattr(from_archive, field) == getattr(from_folder, field)).all(), field
    assert (from_archive.classes, from_archive.mean, from_archive.std) == (from_folder.classes, from_folder.mean, from_folder.std)
    cached = sorted(cache_home.rglob("archive-*.npz"))
    assert len(cached) == 1  # decoded once, into the user's cache (never beside the archive)
    stamp = cached[0].stat().st_mtime_ns
    assert (load_dataset("imagefolder", archive).test_images == from_folder.test_images).all()
    assert cached[0].stat().st_mtime_ns == stamp  # the second load read the cache
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(["cache", "colours", archive.name])


def test_images_a_tar_stores_as_links_load_like_the_folder(tmp_path: Path, cache_home: Path) -> None:
    """GNU tar writes a file's second name (a hard link) and a symbolic link as link members,
    which hold no bytes of their own: they are read through their targets, not dropped."""
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    first, second = sorted((folder / "train").iterdir())[:2]
    (folder / "test" / first.name / "hard.png").hardlink_to(next(first.glob("*.png")))
    (folder / "test" / second.name / "soft.png").symlink_to(Path("../../train") / second.name / next(second.glob("*.png")).name)
    archive = tmp_path / "colours.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname="colours")
    assert {member.type for member in tarfile.open(archive)} >= {tarfile.LNKTYPE, tarfile.SYMTYPE}
    from_archive, from_folder = load_dataset("imagefolder", archive), load_dataset("imagefolder", folder)
    assert from_archive.test_images.shape == from_folder.test_images.shape
    assert (from_archive.test_images == from_folder.test_images).all()
    assert (from_archive.test_labels == from_folder.test_labels).all()


def test_archive_members_are_never_written_to_disk(tmp_path: Path, cache_home: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../escaped.txt", "x")
        bundle.writestr("../train/a/escaped.png", "x")
    with pytest.raises(SpecError, match="no train/ and test/"):
        load_dataset("imagefolder", archive)
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert not (tmp_path.parent / "train").exists()


def test_archive_without_layout(tmp_path: Path, cache_home: Path) -> None:
    archive = tmp_path / "empty.tar.gz"
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(tmp_path / "stuff", arcname="stuff")
    with pytest.raises(SpecError, match="no train/ and test/"):
        load_dataset("imagefolder", archive)


def test_archive_one_folder_down_with_an_unreadable_image_names_the_member(tmp_path: Path, cache_home: Path) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=1, test_per_class=1)
    broken = next((folder / "test").rglob("*.png"))
    broken.write_bytes(b"not a png")
    archive = tmp_path / "colours.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname="colours")
    relative = broken.relative_to(tmp_path).as_posix()
    with pytest.raises(SpecError, match=f"cannot decode {archive}:{relative}"):
        load_dataset("imagefolder", archive)


def test_archive_with_other_test_classes_is_refused(tmp_path: Path, cache_home: Path) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=1, test_per_class=1)
    extra = folder / "test" / "zebra"
    extra.mkdir()
    (extra / "z.png").write_bytes(next((folder / "test").rglob("*.png")).read_bytes())
    archive = tmp_path / "colours.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(folder, arcname=".")
    with pytest.raises(SpecError, match=r"not in train: \['zebra'\]"):
        load_dataset("imagefolder", archive)


def test_damaged_tar_header_mid_archive_is_refused_not_read_short(tmp_path: Path, cache_home: Path) -> None:
    """tarfile ends its listing quietly at a damaged header after the first member."""
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=3)
    archive = tmp_path / "colours.tar"
    with tarfile.open(archive, "w", format=tarfile.USTAR_FORMAT) as bundle:  # no pax headers
        bundle.add(folder, arcname="colours")
    raw = bytearray(archive.read_bytes())
    header = raw.rindex(b"colours/test/")  # the header block of the last test image
    raw[header : header + 512] = b"Z" * 512
    archive.write_bytes(bytes(raw))
    with pytest.raises(SpecError, match="cannot read the archive .*damaged at byte"):
        load_dataset("imagefolder", archive)


def test_encrypted_zip_member_is_a_spec_error(tmp_path: Path, cache_home: Path) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=1, test_per_class=1)
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(folder.rglob("*.png")):
            bundle.write(file, file.relative_to(tmp_path))
    raw = bytearray(archive.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        raw[raw.index(signature) + flags_at] |= 1  # general-purpose flag bit 0: encrypted
    archive.write_bytes(bytes(raw))
    with pytest.raises(SpecError, match="cannot read the archive .*encrypted"):
        load_dataset("imagefolder", archive)


def _tar_of(folder: Path, archive: Path) -> Path:
    """`folder` as `archive`, one folder down (as GNU tar packs a folder)."""
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname="colours")
    return archive


def test_a_tar_updated_in_place_is_read_as_unpacking_it_would(tmp_path: Path, cache_home: Path) -> None:
    """`tar -u` appends a second copy of a changed file: the last copy counts, once."""
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    archive = _tar_of(folder, tmp_path / "colours.tar")
    image = sorted((folder / "train").rglob("*.png"))[0]
    updated = tmp_path / "updated.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(updated)
    with tarfile.open(archive, "a") as bundle:
        bundle.add(updated, arcname=f"colours/{image.relative_to(folder)}")
    data = load_dataset("imagefolder", archive)
    assert len(data.train_images) == len(load_dataset("imagefolder", folder).train_images)
    assert any((picture == (1, 2, 3)).all() for picture in data.train_images)


def test_a_zip_with_subfolders_and_backslashes_loads_every_image(tmp_path: Path, cache_home: Path) -> None:
    """Subfolders of a class count (as in the folder form), and old Windows tools' `\\` too."""
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    archive = tmp_path / "colours.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for index, file in enumerate(sorted(folder.rglob("*.png"))):
            parts = file.relative_to(folder).parts
            inner = (*parts[:2], "sub", parts[2]) if index % 2 else parts
            bundle.write(file, "\\".join(inner) if index % 3 == 0 else "/".join(inner))
    from_archive, from_folder = load_dataset("imagefolder", archive), load_dataset("imagefolder", folder)
    assert len(from_archive.train_images) == len(from_folder.train_images)
    assert len(from_archive.test_images) == len(from_folder.test_images)
    assert from_archive.classes == from_folder.classes


def test_an_empty_class_folder_in_an_archive_is_refused_as_in_a_folder(tmp_path: Path, cache_home: Path) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    for split in ("train", "test"):
        (folder / split / "zz-empty").mkdir()
    archive = _tar_of(folder, tmp_path / "colours.tar")
    with pytest.raises(SpecError, match=r"colours/train/zz-empty holds no images"):
        load_dataset("imagefolder", archive)


def test_a_link_to_a_file_the_archive_lacks_says_how_to_pack_it(tmp_path: Path, cache_home: Path) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    target = next((folder / "train").rglob("*.png"))
    (next((folder / "test").iterdir()) / "outside.png").symlink_to(target.resolve())  # absolute: not in the tar
    archive = _tar_of(folder, tmp_path / "colours.tar")
    with pytest.raises(SpecError, match=r"outside.png links to /.*, which the archive does not hold; pack it with `tar -h`"):
        load_dataset("imagefolder", archive)


def _zip_of(folder: Path, archive: Path, top: str = "", extra: tuple[tuple[str, bytes], ...] = ()) -> Path:
    """`folder`'s images under `top` in a zip without folder entries (as Python's zipfile writes it)."""
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(folder.rglob("*.png")):
            bundle.write(file, f"{top}{file.relative_to(folder).as_posix()}")
        for name, content in extra:
            bundle.writestr(f"{top}{name}", content)
    return archive


@pytest.mark.parametrize("top", ["", "test/", "train/"])
def test_files_beside_the_class_folders_are_not_classes_and_a_top_folder_may_be_named_like_a_split(
    tmp_path: Path, cache_home: Path, top: str
) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    archive = _zip_of(folder, tmp_path / "colours.zip", top, (("train/labels.csv", b"x"), ("test/README", b"y")))
    assert load_dataset("imagefolder", archive).classes == load_dataset("imagefolder", folder).classes


def test_a_class_of_other_files_is_refused_whether_or_not_the_zip_lists_folders(tmp_path: Path, cache_home: Path) -> None:
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    archive = _zip_of(folder, tmp_path / "colours.zip", extra=(("train/zz/notes.txt", b"x"), ("test/zz/notes.txt", b"y")))
    with pytest.raises(SpecError, match=r"colours.zip:train/zz holds no images"):
        load_dataset("imagefolder", archive)


def test_members_in_reverse_order_load_like_the_folder(tmp_path: Path, cache_home: Path) -> None:  # noqa: F811
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    archive = tmp_path / "reversed.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(folder.rglob("*.png"), reverse=True):  # class3 before class0, 0002 before 0000
            bundle.write(file, file.relative_to(tmp_path))
    from_archive, from_folder = load_dataset("imagefolder", archive), load_dataset("imagefolder", folder)
    assert from_archive.classes == from_folder.classes == ("class0", "class1", "class2", "class3")
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert (getattr(from_archive, field) == getattr(from_folder, field)).all(), field


def test_a_photo_stored_sideways_in_an_archive_is_read_upright_as_in_a_folder(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Archives decode as folders do, but keyed their cache by their own version alone: one
    decoded before EXIF orientation was read kept serving the sideways arrays (now the
    decoding's version is part of their key)."""
    import numpy as np

    folder = tmp_path / "photos"
    pixels = np.random.default_rng(0).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    for split in ("train", "test"):
        for name in ("a", "b"):
            (folder / split / name).mkdir(parents=True)
            Image.fromarray(np.rot90(pixels, 1).copy()).save(folder / split / name / "0.png", exif=exif)
    data = load_dataset("imagefolder", str(_zip_of(folder, tmp_path / "photos.zip")))
    assert data.train_images.shape[1:] == (16, 12, 3) and np.array_equal(data.train_images[0], pixels)
    from blockspec.data import archive

    cached = sorted(cache_home.rglob("*.npz"))
    monkeypatch.setattr(archive, "DECODE_VERSION", "another decoding")  # its cache must then not serve it
    load_dataset("imagefolder", str(tmp_path / "photos.zip"))
    assert sorted(cache_home.rglob("*.npz")) != cached  # decoded again, under another key (the old one removed)


class _Zeros(io.RawIOBase):
    """`size` zero bytes, made as they are read: a member's content without holding it."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def test_a_member_declaring_more_than_any_image_is_refused_before_it_is_read(tmp_path: Path, cache_home: Path) -> None:
    """A few hundred kB of gzip (1.9 kB of bz2) declaring gigabytes of zeros was read whole
    into memory before being found no image."""
    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as bundle:
        bundle.add(folder, arcname="colours")
        member = tarfile.TarInfo("colours/train/class0/zz.png")
        member.size = 300 * 2**20
        bundle.addfile(member, _Zeros(member.size))
    assert archive.stat().st_size < 2 * 2**20
    with pytest.raises(SpecError, match=r"bomb\.tar\.gz:colours/train/class0/zz\.png holds 300 MiB, more than any image"):
        load_dataset("imagefolder", archive)


def test_links_to_one_member_share_its_bytes(tmp_path: Path) -> None:
    """Each link read its target again (500 links to a 2 MiB member held 1 GB)."""
    from blockspec.data.archive import _image_members

    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    first = next((folder / "train" / "class0").glob("*.png"))
    for number in range(20):
        (folder / "train" / "class0" / f"link{number}.png").symlink_to(first.name)
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname="colours")
    members = _image_members(archive, "data.root")["colours"]["train"]["class0"]
    assert len({id(members[f"link{number}.png"]) for number in range(20)} | {id(members[first.name])}) == 1


def test_links_are_followed_as_tar_unpacks_them(tmp_path: Path, cache_home: Path) -> None:
    """Names written `./train/…` (`tar -cf x.tar -C dir .`), a link to a link, and a file that
    `tar -u` stored again after a link to it: read as unpacking gives them (a review found the
    first two refused or read past the size checks, the third read from its older copy)."""
    from blockspec.data.archive import _image_members

    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    red = folder / "train" / "class0"
    first = sorted(red.glob("*.png"))[0]
    (red / "hop.png").symlink_to(first.name)
    (red / "chained.png").symlink_to("hop.png")
    archive = tmp_path / "dots.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname=".")
        newer = tarfile.TarInfo(f"./train/class0/{first.name}")
        content = b"a newer copy"
        newer.size = len(content)
        bundle.addfile(newer, io.BytesIO(content))  # as `tar -u` appends it
    assert {member.name for member in tarfile.open(archive)} >= {"./train/class0/chained.png"}
    members = _image_members(archive, "data.root")[""]["train"]["class0"]
    assert members[first.name] == members["hop.png"] == members["chained.png"] == content


def test_a_link_to_a_folder_or_through_a_missing_hop_is_refused_naming_that_hop(tmp_path: Path) -> None:
    """A link to a folder member crashed (AttributeError: extractfile gives None for a folder);
    a chain broken at its second hop named the first link as the one whose target was missing."""
    from blockspec.data.archive import _image_members

    folder = write_colour_folder(tmp_path / "colours", train_per_class=3, test_per_class=2)
    red = folder / "train" / "class0"
    (red / "folder.png").symlink_to("../class1")
    archive = tmp_path / "folder.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname="colours")
    with pytest.raises(SpecError, match=r"folder\.tar:colours/train/class0/folder\.png links to colours/train/class1, a folder or"):
        _image_members(archive, "data.root")
    (red / "folder.png").unlink()
    (red / "a.png").symlink_to("b.png")
    (red / "b.png").symlink_to("missing.png")
    with tarfile.open(archive, "w") as bundle:
        bundle.add(folder, arcname="colours")
    with pytest.raises(SpecError, match=r"colours/train/class0/b\.png links to missing\.png, which the archive does not"):
        _image_members(archive, "data.root")
