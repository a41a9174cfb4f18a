"""An image folder shipped as an archive (.tar, .tar.gz, .tar.xz, .zip), read in place.

Its images are decoded straight from the archive's members, never written to disk: for the
CIFAR-10 JPEG copy, reading the 60,000 members took 8 s on a 2-core CPU where unpacking
them into files took 44 s, and decoding from memory skips reading those files back. The
decoded arrays are cached like an image folder's, keyed by the archive's path, size and
mtime, so a changed archive is read afresh and an unchanged one costs one cache load.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import posixpath
import tarfile
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np

from blockspec.available_memory import available_memory
from blockspec.data.cache import read_cache, write_cache
from blockspec.data.imagedata import ImageData
from blockspec.data.imagefolder import (
    DECODE_VERSION,
    EXTENSIONS,
    ImageList,
    check_same_classes,
    decode_set,
    from_arrays,
    is_whole_set,
    no_images,
    relabelled,
)
from blockspec.errors import SpecError, fail

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")
SPLITS = ("train", "test")
_CACHE_PREFIX = "archive"
# bump when reading archives changes (4: subfolders, last copy; 5: zip names in UTF-8 without its flag); the
# decoding's own version (imagefolder.DECODE_VERSION, EXIF orientation in its 4) is in the key too
_CACHE_VERSION = "5"

# (folder above train/ and test/ inside the archive, "" for the top) → split → class →
# {file path below the class folder: bytes}; a later member of one name replaces an earlier one
# (a tar updated with `tar -u` holds both), as unpacking it would
Layouts = dict[str, dict[str, dict[str, dict[str, bytes]]]]


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def load_image_archive(archive: Path, path: str, trained_classes: tuple[str, ...] | None = None) -> ImageData:
    """Load (from the cache when the archive is unchanged) the train/test class folders inside
    `archive`, at its top or one folder down. `trained_classes` (eval's): an archive holding
    test/ alone is read too, labelled by them, as imagefolder.load_test_folder does."""
    where = f"{path}.root"
    stat = archive.stat()
    key = hashlib.sha256(
        f"{_CACHE_VERSION}|{DECODE_VERSION}|{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode(errors="surrogateescape")
    ).hexdigest()[:24]
    cached = read_cache(archive, _CACHE_PREFIX, key)
    if cached is not None and is_whole_set(cached):
        return from_arrays(cached)
    layouts = _image_members(archive, where)
    top = _top_holding(layouts, SPLITS)
    some = top is not None and trained_classes is not None and set(layouts[top]["test"]) != set(trained_classes)
    if some or (top is None and trained_classes is not None and (top := _top_holding(layouts, ("test",))) is not None):
        # eval of a test/ alone, or of some of the trained classes: its train/, if any, is not needed
        found = tuple(sorted(layouts[top]["test"]))
        test = _image_list(archive, top, "test", layouts[top]["test"], found, where)
        return from_arrays(decode_set(no_images(), relabelled(test, found, trained_classes, where, str(archive)),
                                      trained_classes, where))
    if top is None:
        raise fail(where, "the archive holds no train/ and test/ folders with images (at its top or one level down)",
                   str(archive))
    classes = tuple(sorted(layouts[top]["train"]))
    check_same_classes(classes, tuple(sorted(layouts[top]["test"])), where, str(archive))
    train, test = (_image_list(archive, top, split, layouts[top][split], classes, where) for split in SPLITS)
    arrays = decode_set(train, test, classes, where)
    write_cache(archive, _CACHE_PREFIX, key, arrays)
    return from_arrays(arrays)


def _top_holding(layouts: Layouts, splits: tuple[str, ...]) -> str | None:
    """The reading of the paths under which each of `splits` holds images."""
    return next((top for top in sorted(layouts) if all(any(layouts[top][split].values()) for split in splits)), None)


def _image_members(archive: Path, where: str) -> Layouts:
    """The archive's image files under some `[top/]{train,test}/<class>/` (in subfolders of a
    class too, as torchvision's ImageFolder takes them), read into memory; class folders
    without images are kept, empty, for the check that refuses them."""
    layouts: Layouts = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))

    def places(name: str, is_dir: bool) -> list[tuple[dict[str, bytes], str]]:
        """Where an image member goes, under each reading of its path: `train/` at the top, or
        one folder down (a top folder may itself be named train or test); folders and other
        files inside a class only make the class known."""
        parts = PurePosixPath(name.replace("\\", "/")).parts  # old Windows zip tools wrote backslashes
        parts = parts[1:] if parts[:1] == (".",) else parts
        if any(part.startswith(".") for part in parts):
            return []
        found = []
        for at in (0, 1):
            if len(parts) < at + 2 or parts[at] not in SPLITS or (len(parts) == at + 2 and not is_dir):
                continue  # not under a split, or a file beside the class folders
            top, split, label, below = "/".join(parts[:at]), parts[at], parts[at + 1], parts[at + 2:]
            files = layouts[top][split][label]
            if below and not is_dir and os.path.splitext(below[-1])[1].lower() in EXTENSIONS:
                found.append((files, "/".join(below)))
        return found

    budget = _ReadBudget(archive, where)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    if targets := places(_zip_member_name(info), info.is_dir()):
                        budget.take(info.filename, info.file_size)  # zipfile reads no more than it declares
                        content = bundle.read(info)
                        for files, below in targets:
                            files[below] = content
        else:
            with tarfile.open(archive) as bundle:
                reader = _TarReader(bundle, archive, where, budget)
                for member in bundle:  # tar stores each further name of a file as a link member
                    reader.passed(member)
                    is_file = member.isfile() or member.islnk() or member.issym()
                    if (is_file or member.isdir()) and (targets := places(member.name, member.isdir())):
                        content = reader.content(member)
                        for files, below in targets:
                            files[below] = content
                _check_tar_ends_cleanly(bundle)
    # zlib.error, lzma.LZMAError: damaged compressed data; RuntimeError: an encrypted zip
    # member; NotImplementedError: a zip compression method Python lacks; KeyError: a link to a
    # member the archive lacks
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError,
            RuntimeError, NotImplementedError, KeyError) as error:
        raise fail(where, f"cannot read the archive ({type(error).__name__}: {error})", str(archive)) from None
    return layouts


class _TarReader:
    """Members' bytes as tar unpacks them: a link through its target (a hard link's last copy
    before it, a symbolic link's last copy in the archive), each stored file read once however
    many links name it (a thousand links to one large member held a thousand copies)."""

    def __init__(self, bundle: tarfile.TarFile, archive: Path, where: str, budget: _ReadBudget) -> None:
        self.bundle, self.archive, self.where, self.budget = bundle, archive, where, budget
        self.read: dict[int, bytes] = {}  # a stored file's bytes, by where its data lies
        self.latest: dict[str, tarfile.TarInfo] = {}  # name → its last copy so far: a hard link's target

    def passed(self, member: tarfile.TarInfo) -> None:
        if member.isreg():
            self.latest[posixpath.normpath(member.name)] = member

    def content(self, member: tarfile.TarInfo) -> bytes:
        stored = self._stored_file(member)
        if stored.offset_data not in self.read:
            self.budget.take(member.name, stored.size)
            self.read[stored.offset_data] = self.bundle.extractfile(stored).read()
        return self.read[stored.offset_data]

    def _stored_file(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        """The regular member holding the data `member` names, links followed hop by hop."""
        named = member
        for _ in range(_LINK_HOPS):
            if member.isreg():
                return member
            if not (member.islnk() or member.issym()):
                raise self._refused(named, f"links to {member.name}, a folder or a special file, not an image")
            target = self.latest.get(posixpath.normpath(member.linkname)) if member.islnk() else None
            try:  # a hard link whose target came before it is known; tarfile's own search otherwise
                member = target or self.bundle._find_link_target(member)  # noqa: SLF001 (the rule extraction follows)
            except KeyError:  # an absolute path, a file left out
                raise self._refused(member, f"links to {member.linkname}, which the archive does not hold; pack it with "
                                    "`tar -h` (--dereference) so that it holds the files themselves") from None
        raise self._refused(member, f"is a link more than {_LINK_HOPS} links deep: a loop")

    def _refused(self, member: tarfile.TarInfo, why: str) -> SpecError:
        return fail(self.where, f"{self.archive}:{member.name} {why}", str(self.archive))


_LINK_HOPS = 40  # as the kernel's own limit on symbolic links in one path


class _ReadBudget:
    """Refuse, before reading it, a member larger than any image (a few compressed bytes can
    declare gigabytes) or one that would take the members read past half the memory available
    (the other half decodes them)."""

    def __init__(self, archive: Path, where: str) -> None:
        self.archive, self.where = archive, where
        available = available_memory()
        self.left = available // 2 if available is not None else None

    def take(self, name: str, size: int) -> None:
        if size > MEMBER_LIMIT:
            raise fail(self.where, f"{self.archive}:{name} holds {size / 2**20:,.0f} MiB, more than any image it could "
                       f"decode ({MEMBER_LIMIT / 2**20:,.0f} MiB at most)", str(self.archive))
        if self.left is not None:
            self.left -= size
            if self.left < 0:
                raise fail(self.where, f"its images take more than half the memory available to read "
                           f"(at {self.archive}:{name})", str(self.archive))


MEMBER_LIMIT = 256 * 2**20


def _zip_member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as the folder it was zipped from had it: a zip without the UTF-8 flag
    holds the name's bytes as the zipping system wrote them, which zipfile decodes as cp437;
    Linux tools write UTF-8 there (`caté` read as `cat├⌐`), Windows ones cp437, so bytes that
    are valid UTF-8 are read as UTF-8 and the rest as cp437."""
    if info.flag_bits & _ZIP_UTF8_FLAG:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeDecodeError:
        return info.filename


_ZIP_UTF8_FLAG = 0x800


def _check_tar_ends_cleanly(bundle: tarfile.TarFile) -> None:
    """tarfile takes a damaged header after the first member for the archive's end, which
    would drop every image after it without a word: what follows the last member read must be
    the zero blocks a tar ends with (reading them also checks a compressed stream's checksum)."""
    bundle.fileobj.seek(bundle.offset)
    while chunk := bundle.fileobj.read(1 << 20):
        if chunk.count(0) != len(chunk):
            raise tarfile.ReadError(f"damaged at byte {bundle.offset} of its tar stream, before its end")


def _image_list(
    archive: Path, top: str, split: str, by_class: dict[str, dict[str, bytes]], classes: tuple[str, ...], where: str
) -> ImageList:
    """Classes in order, and files by path within each, as an image folder lists them."""
    names: list[str] = []
    contents: list[bytes] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        if not by_class[name]:
            folder = PurePosixPath(top, split, name)
            raise fail(where, f"{archive}:{folder} holds no images ({', '.join(sorted(EXTENSIONS))})", str(archive))
        for file, content in sorted(by_class[name].items()):
            names.append(f"{archive}:{PurePosixPath(top, split, name, file)}")
            contents.append(content)
            labels.append(label)
    return ImageList(names, contents, np.asarray(labels, dtype=np.int64))
