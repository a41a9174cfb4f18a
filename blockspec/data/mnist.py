"""MNIST and Fashion-MNIST from their IDX files, plain or gzipped.

IDX is a tiny big-endian header followed by raw bytes, so it is parsed here directly; the
files are searched where torchvision puts them as well as in the folder given.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from blockspec.available_memory import available_memory
from blockspec.data.download import download, fetch_missing
from blockspec.data.imagedata import ImageData
from blockspec.errors import fail

_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_UBYTE = 0x08
_CHUNK = 2**20


@dataclass(frozen=True)
class _IdxSet:
    folder: str  # torchvision's sub-folder name: root/<folder>/raw
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]
    md5: tuple[str, ...]  # of the .gz files, in _FILES order
    mean: tuple[float, ...]
    std: tuple[float, ...]


# mean/std: the commonly published statistics of the official 60k training images.
MNIST = _IdxSet(
    folder="MNIST",
    classes=tuple(str(digit) for digit in range(10)),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    md5=(
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    mean=(0.1307,),
    std=(0.3081,),
)
FASHION_MNIST = _IdxSet(
    folder="FashionMNIST",
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5=(
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
    mean=(0.2860,),
    std=(0.3530,),
)


def load_idx_set(spec: _IdxSet, root: Path, download_missing: bool, path: str) -> ImageData:
    """Load the four IDX files from `root/<folder>/raw` or `root`, downloading if allowed."""
    files = _find_files(spec, root)
    if files is None:
        files = _fetch(spec, root, download_missing, path)
    train_images, train_labels, test_images, test_labels = (_read_idx(file, path) for file in files)
    for images, labels, file in (
        (train_images, train_labels, files[0]),
        (test_images, test_labels, files[2]),
    ):
        if images.ndim != 3 or labels.shape != (len(images),):
            raise fail(
                f"{path}.root",
                f"{file}: expected [N, H, W] images and N labels, "
                f"found {list(images.shape)} and {list(labels.shape)}",
                str(file),
            )
        if labels.size and labels.max() >= len(spec.classes):
            raise fail(
                f"{path}.root", f"{file}: labels must lie in 0..{len(spec.classes) - 1}", str(file)
            )
    return ImageData(
        train_images=train_images[..., None],
        train_labels=train_labels.astype(np.int64),
        test_images=test_images[..., None],
        test_labels=test_labels.astype(np.int64),
        classes=spec.classes,
        mean=spec.mean,
        std=spec.std,
    )


def _folders(spec: _IdxSet, root: Path) -> tuple[Path, Path]:
    return root / spec.folder / "raw", root


def _find_files(spec: _IdxSet, root: Path) -> list[Path] | None:
    for folder in _folders(spec, root):
        found = [_existing(folder / name) for name in _FILES]
        if all(file is not None for file in found):
            return [file for file in found if file is not None]
    return None


def _existing(file: Path) -> Path | None:
    for candidate in (file, file.with_name(file.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _fetch(spec: _IdxSet, root: Path, download_missing: bool, path: str) -> list[Path]:
    raw, _ = _folders(spec, root)
    expected = f"expected {', '.join(_FILES)} (each optionally .gz) in {raw} or {root}"
    return fetch_missing(
        lambda: [
            download([mirror + name + ".gz" for mirror in spec.mirrors], raw, name + ".gz", md5)
            for name, md5 in zip(_FILES, spec.md5)
        ],
        expected,
        root,
        path,
        download_missing,
    )


def _read_idx(file: Path, path: str) -> np.ndarray:
    """An unsigned-byte IDX array: 2 zero bytes, type code, rank, big-endian int32 dims, data.
    Read as a stream, no further than the header's size: a small .gz can hold gigabytes."""
    try:
        with gzip.open(file) if file.suffix == ".gz" else file.open("rb") as stream:
            return _parse_idx(stream, file, path)
    except (OSError, EOFError, zlib.error) as error:
        raise fail(f"{path}.root", f"cannot read {file}: {error}", str(file)) from None


def _parse_idx(stream: BinaryIO, file: Path, path: str) -> np.ndarray:
    start = stream.read(4)
    if len(start) < 4 or start[0] != 0 or start[1] != 0 or start[2] != _UBYTE:
        raise fail(
            f"{path}.root", f"{file} is not an unsigned-byte IDX file (bad header)", str(file)
        )
    rank = start[3]
    dims = stream.read(4 * rank)
    if rank == 0 or len(dims) < 4 * rank:
        raise fail(f"{path}.root", f"{file} has a truncated IDX header", str(file))
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">i4"))
    if min(shape) < 0:
        raise fail(f"{path}.root", f"{file}: header says {list(shape)}: a dimension is negative", str(file))
    size = math.prod(shape)  # Python's integers: numpy's product of large dimensions wraps around
    said = f"{file}: header says {list(shape)} ({size:,} bytes)"
    room = available_memory()
    if room is not None and size > room:
        raise fail(f"{path}.root", f"{said}, more than the {room:,} bytes of memory available", str(file))
    data = bytearray()  # grown as bytes arrive: a header's size alone allocates nothing
    while len(data) < size and (chunk := stream.read(min(_CHUNK, size - len(data)))):
        data += chunk
    if len(data) < size or stream.read(1):
        held = f"{len(data):,}" if len(data) < size else f"more than {size:,}"
        raise fail(f"{path}.root", f"{said} but holds {held} bytes", str(file))
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)  # writable: a bytearray's buffer
