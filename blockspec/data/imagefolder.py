"""Any image classification set laid out as `root/{train,test}/<class>/<image files>`.

Images are decoded once (in parallel), checked to share one size, and cached as arrays
together with their statistics, keyed by the file listing, so later runs start instantly.
"""

from __future__ import annotations

import functools
import hashlib
import io
import multiprocessing
import os
import signal
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps

from blockspec.available_memory import available_memory
from blockspec.data.cache import read_cache, write_cache
from blockspec.data.imagedata import ImageData, channel_stats
from blockspec.errors import fail
from blockspec.filenames import readable_name
from blockspec.progress import Bar

EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
LAYOUT = "expected root/train/<class>/<images> and root/test/<class>/<images>"
TEST_LAYOUT = "evaluation reads root/test/<class>/<images>"  # a held-out set alone
_CACHE_PREFIX = "imagefolder"
DECODE_VERSION = "4"  # bump when the decoding changes (3: LA images gray, 4: EXIF orientation); archives decode so too
_POOL_MIN_FILES = 2048  # below this a process pool costs more than it saves
_CHUNK = 512
_MOST_DECODERS = 61  # the most processes a ProcessPoolExecutor takes on Windows


@dataclass(frozen=True)
class ImageList:
    """One split's images in label order: the name each is reported by, and what is decoded
    (a file's path, or its bytes when read from an archive)."""

    names: list[str]
    sources: list[str] | list[bytes]
    labels: np.ndarray


def load_imagefolder(root: Path, path: str, trained_classes: tuple[str, ...] | None = None) -> ImageData:
    """Load (from the cache when the files are unchanged) a train/test class-folder set.
    `trained_classes` (eval's): a folder holding test/ alone, or a test/ of other classes than
    those (some of them), is read as test/ alone, labelled by them."""
    where = f"{path}.root"
    if trained_classes is not None and not (root / "train").is_dir():
        return load_test_folder(root, path, trained_classes)
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise fail(where, f"no {split}/ folder in {root}; {LAYOUT}", str(root))
    classes = _class_names(root / "train", where)
    if trained_classes is not None and set(_class_names(root / "test", where)) != set(trained_classes):
        return load_test_folder(root, path, trained_classes)  # eval of some of the classes: train/ is not needed
    train, train_signature = _list_split(root, "train", classes, where)  # first: an empty class folder is named as such
    check_same_classes(classes, _class_names(root / "test", where), where, str(root))
    test, test_signature = _list_split(root, "test", classes, where)
    key = hashlib.sha256(
        "\n".join([DECODE_VERSION, *train_signature, *test_signature]).encode(errors="surrogateescape")
    ).hexdigest()[:24]
    cached = read_cache(root, _CACHE_PREFIX, key)
    if cached is not None and is_whole_set(cached):
        return from_arrays(cached)
    arrays = decode_set(train, test, classes, where)
    write_cache(root, _CACHE_PREFIX, key, arrays)
    return from_arrays(arrays)


def load_test_folder(root: Path, path: str, classes: tuple[str, ...]) -> ImageData:
    """`root/test/<class>/` alone, labelled by a trained checkpoint's `classes` (its score
    order; the folder may hold some of them): all `eval` needs, since checkpoints record the
    training images' statistics. No train statistics, and not cached: a test set decodes in
    seconds."""
    where = f"{path}.root"
    if not (root / "test").is_dir():
        raise fail(where, f"no test/ folder in {root}; {TEST_LAYOUT}", str(root))
    found = _class_names(root / "test", where, TEST_LAYOUT)
    test, _ = _list_split(root, "test", found, where, TEST_LAYOUT)
    return from_arrays(decode_set(no_images(), relabelled(test, found, classes, where, str(root)), classes, where))


def no_images() -> ImageList:
    return ImageList([], [], np.zeros(0, dtype=np.int64))


def relabelled(
    images: ImageList, found: tuple[str, ...], classes: tuple[str, ...], where: str, root: str
) -> ImageList:
    """`images`, labelled by `found` class folders, relabelled by their names' place in `classes`."""
    found = tuple(readable_name(name) for name in found)
    unknown = [name for name in found if name not in classes]
    if unknown:
        raise fail(where, f"test/ holds classes the checkpoint was not trained on: {', '.join(unknown)} "
                   f"(it scores {', '.join(classes)})", root)
    order = np.asarray([classes.index(name) for name in found], dtype=np.int64)
    return ImageList(images.names, images.sources, order[images.labels])


def check_same_classes(classes: tuple[str, ...], test_classes: tuple[str, ...], where: str, root: str) -> None:
    if test_classes != classes:
        missing, extra = (
            sorted(set(classes) - set(test_classes)),
            sorted(set(test_classes) - set(classes)),
        )
        normal_forms = {unicodedata.normalize("NFC", name) for name in missing} & {
            unicodedata.normalize("NFC", name) for name in extra
        }
        hint = (f"; {sorted(normal_forms)} spelled in two Unicode normal forms (NFC and NFD, as macOS writes them): "
                "rename one" if normal_forms else "")
        raise fail(
            where,
            "test/ must have the same class folders as train/; "
            + ", ".join(f"{words}: {names}" for words, names in (("missing in test", missing), ("not in train", extra)) if names)
            + hint,
            root,
        )


def _class_names(folder: Path, where: str, layout: str = LAYOUT) -> tuple[str, ...]:
    names = tuple(
        sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.is_dir() and not entry.name.startswith(".")
        )
    )
    if not names:
        raise fail(where, f"{folder} has no class folders; {layout}", str(folder))
    return names


def _list_split(
    root: Path, split: str, classes: tuple[str, ...], where: str, layout: str = LAYOUT
) -> tuple[ImageList, list[str]]:
    """The split's images (in subfolders of a class too, as torchvision's ImageFolder takes
    them), and per file its relative path, size, modification and change times and inode: the
    cache key's input, which a renamed, moved or rewritten file changes even where size and
    modification time are equal (class folders swapped after unpacking an archive)."""
    files: list[str] = []
    labels: list[int] = []
    signature: list[str] = []
    # a link up to the split folder or above would count other classes' images as this one's
    above = frozenset(_identity(folder) for folder in (root / split, *root.resolve().parents, root.resolve()))
    for label, name in enumerate(classes):
        folder = root / split / name
        if _identity(folder) in above:
            raise fail(where, f"{folder} links to {os.path.realpath(folder)}, a folder above it: every class's images "
                       "would count as this one's", str(folder))
        entries = sorted(images_below(folder, where, seen=above), key=lambda entry: entry[0])
        if not entries:
            raise fail(
                where,
                f"{folder} holds no images ({', '.join(sorted(EXTENSIONS))}); {layout}",
                str(folder),
            )
        for relative, entry in entries:
            stat = os.stat(entry.path)  # not entry.stat(): Windows' scandir gives no inode (0), so a swap went unseen
            files.append(entry.path)  # str: a Path per file costs seconds on 60k files
            labels.append(label)
            signature.append(f"{split}/{name}/{relative}\t{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t{stat.st_ino}")
    return ImageList(files, files, np.asarray(labels, dtype=np.int64)), signature


def images_below(
    folder: Path, where: str, seen: frozenset[tuple[int, int]] = frozenset()
) -> Iterator[tuple[str, os.DirEntry]]:
    """(path relative to `folder`, entry) of every image file in it and its subfolders, linked
    ones included as torchvision's ImageFolder follows them, a folder reached by two links
    listed twice (a rare class oversampled); a link back up, to a folder above it or one
    `seen` names, is not followed, and links that branch to one folder level after level
    (listing it exponentially often) are refused; hidden files and folders left out, a link to
    a missing image refused."""
    yield from _walk(folder, where, "", seen, _Visits())


class _Visits:
    """How often the walk entered each folder: more than `PATHS_A_FOLDER` entries a folder on
    average is links branching to the same folders again and again."""

    PATHS_A_FOLDER = 64

    def __init__(self) -> None:
        self.count: Counter[tuple[int, int]] = Counter()
        self.total = 0

    def enter(self, folder: Path, identity: tuple[int, int], where: str) -> None:
        self.count[identity] += 1
        self.total += 1
        if self.total > self.PATHS_A_FOLDER * len(self.count):
            raise fail(where, f"links reach the same folders again and again ({self.total:,} entries into "
                       f"{len(self.count):,} folders, the last {os.path.realpath(folder)}), and their images would be "
                       "listed once for each path: link them fewer times", str(folder))


def _walk(
    folder: Path, where: str, prefix: str, above: frozenset[tuple[int, int]], visits: _Visits
) -> Iterator[tuple[str, os.DirEntry]]:
    here = _identity(folder)
    visits.enter(folder, here, where)
    above = above | {here}
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            target = os.stat(entry.path)  # with its inode, which Windows' scandir leaves 0
            if (target.st_dev, target.st_ino) not in above:
                yield from _walk(Path(entry.path), where, f"{prefix}{entry.name}/", above, visits)
        elif os.path.splitext(entry.name)[1].lower() in EXTENSIONS:
            if entry.is_file():
                yield f"{prefix}{entry.name}", entry
            elif entry.is_symlink():
                raise fail(where, f"{entry.path} links to {os.readlink(entry.path)}, which does not exist", entry.path)


def _identity(folder: Path) -> tuple[int, int]:
    """The folder a path reaches, however linked: its device and inode."""
    here = os.stat(folder)
    return here.st_dev, here.st_ino


def decode_set(
    train: ImageList, test: ImageList, classes: tuple[str, ...], where: str
) -> dict[str, np.ndarray]:
    """Decode both splits into one consistent size and colour mode, plus train statistics
    (none when the train split is empty: a test set alone)."""
    files = train.names + test.names
    sources = [*train.sources, *test.sources]
    common = _common_size(sources)
    _check_room_to_decode(len(sources), common, where)
    decoded = _decode_files(sources, common[:2] if common else None, where)
    _check_decoded(files, decoded, where)
    gray = all(image.ndim == 2 for image in decoded)
    colour_note = "" if gray else _colour_note(files, decoded)
    images = np.stack([_as_channels(image, gray) for image in decoded])
    train_images, test_images = images[: len(train.names)], images[len(train.names) :]
    mean, std = channel_stats(train_images) if len(train_images) else ((), ())
    return {
        "train_images": train_images,
        "train_labels": train.labels,
        "test_images": test_images,
        "test_labels": test.labels,
        "classes": np.asarray(classes),  # as the folders are named: from_arrays makes them readable
        "mean": np.asarray(mean),
        "std": np.asarray(std),
        "colour_note": np.asarray(colour_note),
    }


def _common_size(sources: list[str] | list[bytes]) -> tuple[int, int, int] | None:
    """(width, height, bytes a pixel) most common among the headers of a few files spread over
    the set: what the set's images are taken to be before decoding; None if none is readable."""
    sampled = Counter(filter(None, map(_size_and_depth, sources[:: max(1, len(sources) // _SAMPLED)])))
    return sampled.most_common(1)[0][0] if sampled else None


def _check_room_to_decode(count: int, common: tuple[int, int, int] | None, where: str) -> None:
    """Refuse, before decoding, a set whose pixels would not fit in the memory available (past
    it the decode is killed, or its pool hangs), sized as `count` images of the `common` size
    (images of any other size are not decoded: the size check names them)."""
    available = available_memory()
    if available is None or common is None:  # unreadable files are named when decoding
        return
    width, height, depth = common
    needed = count * width * height * depth
    if needed > available:
        raise fail(where, f"its {count:,} images of {width}×{height} take about {needed / 2**30:,.1f} GiB decoded, "
                   f"more than the {available / 2**30:,.1f} GiB of memory available")


_SAMPLED = 32  # headers read to size a set


def _size_and_depth(source: str | bytes) -> tuple[int, int, int] | None:
    """(width, height as stored, bytes a pixel once decoded) from a file's header; None if unreadable."""
    try:
        with Image.open(source if isinstance(source, str) else io.BytesIO(source)) as image:
            return (*image.size, 1 if image.mode in _GRAY_MODES else 3)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


class OtherSize(NamedTuple):
    """An image left undecoded, its header's size not the set's either way round: the size
    check names it (as stored: the orientation a camera recorded is not read, which for a PNG
    means decoding it), and a few huge photos among small images cost no memory on the way."""

    width: int
    height: int


Decoded = np.ndarray | str | OtherSize  # a file's pixels, why it cannot be read, or its other size


_LISTED = 5  # files named in a message, of many alike


def _check_decoded(files: list[str], decoded: list[Decoded], where: str) -> None:
    """Every file that cannot be decoded named at once (each fix would otherwise cost another
    whole decode), then the files whose size differs from most images'."""
    failed = [(file, image) for file, image in zip(files, decoded) if isinstance(image, str)]
    if failed:
        listed = "; ".join(f"{file}: {why}" for file, why in failed[:_LISTED]) + _more(len(failed))
        raise fail(where, f"cannot decode {listed}" if len(failed) == 1 else f"cannot decode {len(failed):,} files: {listed}",
                   failed[0][0])
    sizes = Counter(_hw(image) for image in decoded)
    if len(sizes) > 1:
        common, count = sizes.most_common(1)[0]
        odd = [(file, image) for file, image in zip(files, decoded) if _hw(image) != common]
        listed = ", ".join(f"{file} ({_wxh(image)})" for file, image in odd[:_LISTED]) + _more(len(odd))
        raise fail(where, f"all images must have one size; {count:,} are {common[1]}×{common[0]} and {len(odd):,} "
                   f"{'is' if len(odd) == 1 else 'are'} not: {listed}; resize them to one size first", odd[0][0])


def _more(count: int) -> str:
    return f"; and {count - _LISTED:,} more" if count > _LISTED else ""


def _colour_note(files: list[str], decoded: list[np.ndarray]) -> str:
    """Why a set read in colour may have been meant as gray: a few colour files among gray
    ones make every image 3-channel, and gray images saved as RGB or palette are read so."""
    colour = [file for file, image in zip(files, decoded) if image.ndim == 3]
    if len(colour) < len(files):
        return (f"{colour[0]} is in colour ({len(colour):,} of {len(files):,} images are), so every image is read "
                "with 3 channels")
    if all((image[..., :1] == image).all() for image in decoded):  # image by image: no set-sized mask
        return ("every image is gray but saved in colour (RGB or palette mode), so they are read with 3 channels; "
                "save them in grayscale (L) mode")
    return ""


def is_whole_set(arrays: dict[str, np.ndarray]) -> bool:
    """Whether a cache's arrays form a data set `from_arrays` can use: uint8 NHWC images, one
    label each, every label a class; else the set is decoded again (the cache file was
    written by something else, or edited)."""
    try:
        classes = len(arrays["classes"])
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (len(images),):
                return False
            if len(labels) and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= classes):
                return False
        return len(arrays["mean"]) == len(arrays["std"]) == (arrays["train_images"].shape[3] if len(arrays["train_images"]) else 0)
    except (KeyError, TypeError, ValueError, IndexError):
        return False


def from_arrays(arrays: dict[str, np.ndarray]) -> ImageData:
    return ImageData(
        train_images=np.ascontiguousarray(arrays["train_images"]),
        train_labels=arrays["train_labels"],
        test_images=np.ascontiguousarray(arrays["test_images"]),
        test_labels=arrays["test_labels"],
        classes=tuple(readable_name(str(name)) for name in arrays["classes"]),  # caches before 2026-12-07 hold them raw
        mean=tuple(float(m) for m in arrays["mean"]),
        std=tuple(float(s) for s in arrays["std"]),
        colour_note=str(arrays["colour_note"]) if "colour_note" in arrays else "",  # caches before 2026-12-07 lack it
    )


def _decode_files(sources: list[str] | list[bytes], expected: tuple[int, int] | None, where: str) -> list[Decoded]:
    """Each source's pixels, or why it cannot be read, or `OtherSize` where its header's
    (width, height) is not `expected` either way round (None: every image is decoded; one
    turned by its EXIF orientation is decoded and compared upright)."""
    decode = functools.partial(_decode_chunk, expected=expected)
    workers = _cpu_count()
    if len(sources) < _POOL_MIN_FILES or workers == 1:
        return decode(sources)
    chunks = [sources[i : i + _CHUNK] for i in range(0, len(sources), _CHUNK)]
    # fork on Linux: children need no re-import of torch/albumentations, which would cost seconds
    # each; elsewhere the platform's default, since on macOS a forked child can crash in system
    # libraries that had started threads (why Python's default there is spawn)
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    # an executor, not a Pool: a Pool replaces a killed process (the system out of memory) and
    # waits for its chunk forever, and hangs ending itself if the process held the queue's lock
    pool = ProcessPoolExecutor(min(workers, len(chunks), _MOST_DECODERS), mp_context=context,
                               initializer=_signals_to_the_parent)
    try:
        with Bar(total=len(sources), desc=f"decoding {len(sources):,} images", unit="img",
                 leave=False, mininterval=0.5, disable=None) as bar:
            decoded: list[Decoded] = []
            for chunk in pool.map(decode, chunks):
                decoded += chunk
                bar.update(len(chunk))
            return decoded
    except BrokenProcessPool:
        raise fail(where, "a process decoding its images ended abruptly (if the system ended it, the memory ran out: "
                   "free some, or decode a smaller set)") from None
    finally:  # a Ctrl-C: the chunks not started are dropped, and the processes end with the ones they hold
        pool.shutdown(wait=False, cancel_futures=True)


def _signals_to_the_parent() -> None:
    """In a decoding child: Ctrl-C and SIGTERM reach the whole process group, and the parent
    answers them (it stops, and ending the pool ends the children); a forked child would
    otherwise run the parent's handlers and raise in the middle of a chunk."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


_WIDE_MODES = ("I", "F")  # PIL's 32-bit integer, 16-bit integer (I;16…) and float modes
_GRAY_MODES = ("L", "LA", "1")  # LA: gray with alpha, which is dropped as RGBA's is


def wide_pixels(image: Image.Image) -> str | None:
    """Why an image cannot be read as 8-bit pixels, or None: PIL's conversion to 8 bits clips
    16-bit integer and floating-point pixels to 0 and 255 instead of scaling them."""
    if image.mode.startswith(_WIDE_MODES):
        return f"{image.mode} pixels (16-bit or floating point); save it with 8-bit channels"
    return None


_ORIENTATION = 0x0112  # the EXIF tag a camera records its hold in; 5–8 turn the image a quarter


def shown_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as viewers show the file, its EXIF orientation applied (a JPEG's EXIF is
    in its header; PIL decodes a PNG to find its own)."""
    width, height = image.size
    return (height, width) if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8) else (width, height)


def upright_pixels(image: Image.Image, mode: str) -> np.ndarray:
    """The pixels in `mode` as viewers show them: a photo stored sideways with an EXIF
    orientation is turned upright (PIL leaves that to the caller). An alpha channel is
    dropped, as torchvision's loader drops it."""
    if image.getexif().get(_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    return np.asarray(image.convert(mode))


def _decode_chunk(sources: list[str] | list[bytes], expected: tuple[int, int] | None) -> list[Decoded]:
    """HxW arrays for grayscale files, HxWx3 for everything else; an error text on failure."""
    out: list[Decoded] = []
    for source in sources:
        try:
            with Image.open(source if isinstance(source, str) else io.BytesIO(source)) as image:
                if wide := wide_pixels(image):
                    out.append(wide)
                    continue
                if expected is not None and image.size not in (expected, expected[::-1]):
                    out.append(OtherSize(*image.size))
                    continue
                out.append(upright_pixels(image, "L" if image.mode in _GRAY_MODES else "RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            out.append(str(error) or type(error).__name__)
    return out


def _as_channels(image: np.ndarray, gray: bool) -> np.ndarray:
    if gray:
        return image[..., None]
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def _hw(image: np.ndarray | OtherSize) -> tuple[int, int]:
    return (image.height, image.width) if isinstance(image, OtherSize) else image.shape[:2]


def _wxh(image: np.ndarray | OtherSize) -> str:
    height, width = _hw(image)
    return f"{width}×{height}"


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
