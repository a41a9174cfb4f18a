"""Data sets from real files written in their official formats, the cache, and the loaders."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from blockspec.data import (
    build_augment,
    load_dataset,
    make_loaders,
    normalize_batch,
)
from blockspec.available_memory import available_memory
from blockspec.data.cache import cache_folders
from blockspec.data.download import DownloadError, download_and_extract
from blockspec.data.preview import albumentations_versions, augment_grid_png
from blockspec.data.imagedata import ImageData, channel_stats
from blockspec.errors import SpecError
from blockspec.load import parse_spec
from blockspec.train.data_path import check_data_fits, seed_epoch
from tests.synthetic import write_colour_folder
from tests.test_augment import TRIO

# --- CIFAR ---------------------------------------------------------------------------------


def _cifar_rows(images_hwc: np.ndarray) -> np.ndarray:
    """The official row layout: each image flattened channel by channel (CHW)."""
    return images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)


def _dump(file: Path, content: object) -> None:
    file.write_bytes(pickle.dumps(content, protocol=2))  # what the official (Python 2) files use


def _write_cifar10(folder: Path, per_batch: int = 2, as_list: bool = False) -> np.ndarray:
    """Five train batches, a test batch and batches.meta; returns all images in file order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6 * per_batch, 32, 32, 3), dtype=np.uint8)
    names = [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]
    for i, name in enumerate(names):
        chunk = images[i * per_batch : (i + 1) * per_batch]
        rows = _cifar_rows(chunk)
        data = rows.tolist() if as_list else rows
        labels = [(i + j) % 10 for j in range(per_batch)]
        _dump(
            folder / name,
            {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": []},
        )
    label_names = [
        n.encode()
        for n in (
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        )
    ]
    _dump(
        folder / "batches.meta",
        {b"num_cases_per_batch": per_batch, b"label_names": label_names, b"num_vis": 3072},
    )
    return images


def test_cifar10_loads_official_pickles_from_parent_or_folder(tmp_path: Path) -> None:
    images = _write_cifar10(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        data = load_dataset("cifar10", root, download=False)
        assert data.train_images.shape == (10, 32, 32, 3) and data.test_images.shape == (
            2,
            32,
            32,
            3,
        )
        assert data.train_images.dtype == np.uint8 and data.train_images.flags.c_contiguous
        np.testing.assert_array_equal(data.train_images, images[:10])
        np.testing.assert_array_equal(data.test_images, images[10:])
        assert data.train_labels.dtype == np.int64 and data.train_labels.tolist()[:4] == [
            0,
            1,
            1,
            2,
        ]
        assert data.classes[0] == "airplane" and len(data.classes) == 10
        assert data.mean == (0.4914, 0.4822, 0.4465) and data.train_images.shape[1:] == (32, 32, 3)


def test_cifar10_data_stored_as_plain_list(tmp_path: Path) -> None:
    images = _write_cifar10(tmp_path / "cifar-10-batches-py", as_list=True)
    np.testing.assert_array_equal(
        load_dataset("cifar10", tmp_path, download=False).train_images, images[:10]
    )


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    fine_names = [f"class{i}".encode() for i in range(100)]
    _dump(folder / "meta", {b"fine_label_names": fine_names, b"coarse_label_names": [b"x"] * 20})
    _dump(
        folder / "train",
        {b"data": _cifar_rows(images[:3]), b"fine_labels": [99, 5, 0], b"coarse_labels": [1, 1, 1]},
    )
    _dump(
        folder / "test",
        {b"data": _cifar_rows(images[3:]), b"fine_labels": [7, 8], b"coarse_labels": [1, 1]},
    )
    data = load_dataset("cifar100", tmp_path, download=False)
    np.testing.assert_array_equal(data.train_images, images[:3])
    assert (
        data.train_labels.tolist() == [99, 5, 0]
        and len(data.classes) == 100
        and data.classes[99] == "class99"
    )


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    marker = tmp_path / "pwned"
    _dump(folder / "test_batch", {b"data": _Exploit(marker), b"labels": [0]})
    with pytest.raises(SpecError, match="refusing to load global (posix|os).system"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not marker.exists()


class _HugeArray:
    def __reduce__(self) -> tuple[object, tuple[tuple[int, int], np.dtype]]:
        return np.ndarray, ((1_000_000, 3072), np.dtype(np.uint8))


def test_restricted_unpickler_builds_arrays_only_as_numpy_pickles_do(tmp_path: Path) -> None:
    """A 99-byte batch calling numpy.ndarray itself was taken as a million uninitialised
    training images (3 GB); numpy's own pickles only pass the class to _reconstruct."""
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    _dump(folder / "data_batch_1", {b"data": _HugeArray(), b"labels": [0] * 1_000_000})
    with pytest.raises(SpecError, match="is not a valid data pickle .*not callable"):
        load_dataset("cifar10", tmp_path, download=False)


def test_cifar_missing_files_name_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as error:
        load_dataset("cifar10", tmp_path, download=False)
    text = str(error.value)
    assert (
        "data.root" in text
        and "data_batch_1" in text
        and str(tmp_path / "cifar-10-batches-py") in text
    )


def test_cifar_bad_batch_shape(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(SpecError, match=r"shape \[N, 3072\]"):
        load_dataset("cifar10", tmp_path, download=False)


def _tar_gz(file: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(file, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return hashlib.md5(file.read_bytes()).hexdigest()


def test_download_checks_md5_and_extracts_safely(tmp_path: Path) -> None:
    """The real download path, fed from a file:// URL instead of the network."""
    _write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    members = {
        f"cifar-10-batches-py/{f.name}": f.read_bytes()
        for f in (tmp_path / "src" / "cifar-10-batches-py").iterdir()
    }
    archive = tmp_path / "cifar.tar.gz"
    md5 = _tar_gz(archive, members)
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="does not match"):
        download_and_extract(archive.as_uri(), dest, "cifar.tar.gz", "0" * 32)
    assert list(dest.iterdir()) == []  # nothing half-written is left behind
    download_and_extract(archive.as_uri(), dest, "cifar.tar.gz", md5)
    assert load_dataset("cifar10", dest, download=False).train_images.shape == (10, 32, 32, 3)

    evil = tmp_path / "evil.tar.gz"
    evil_md5 = _tar_gz(evil, {"../escaped": b"x"})
    with pytest.raises(DownloadError, match="cannot extract"):
        download_and_extract(evil.as_uri(), tmp_path / "evil", "evil.tar.gz", evil_md5)
    assert not (tmp_path / "escaped").exists()


def test_unknown_dataset_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="data.dataset = 'cifar-10'.*did you mean 'cifar10'"):
        load_dataset("cifar-10", tmp_path)
    with pytest.raises(SpecError, match="does not exist"):
        load_dataset("mnist", tmp_path / "nowhere", download=False)


def test_named_set_pointed_at_an_image_folder_tree_says_use_imagefolder(tmp_path: Path) -> None:
    """The CIFAR-10 JPEG copy read as `cifar10` gets the flag to use, not a download attempt."""
    for split in ("train", "test"):
        (tmp_path / "jpeg" / split / "cat").mkdir(parents=True)
    with pytest.raises(SpecError, match="train/<class>/ and test/<class>/ folders.*--dataset imagefolder"):
        load_dataset("cifar10", tmp_path / "jpeg")
    archive = tmp_path / "jpeg.tar.gz"
    _tar_gz(archive, {"train/cat/a.png": b""})
    with pytest.raises(SpecError, match="is an archive.*--dataset imagefolder"):
        load_dataset("cifar10", archive)


# --- MNIST ---------------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_idx_set(folder: Path, gz: bool) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    train, test = (
        rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
    )
    files = {
        "train-images-idx3-ubyte": _idx(train),
        "train-labels-idx1-ubyte": _idx(np.array([0, 1, 2, 3, 9])),
        "t10k-images-idx3-ubyte": _idx(test),
        "t10k-labels-idx1-ubyte": _idx(np.array([4, 5, 6])),
    }
    for name, content in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return train, test


@pytest.mark.parametrize(
    ("name", "sub", "gz"),
    [
        ("mnist", "MNIST/raw", False),
        ("fashion-mnist", "FashionMNIST/raw", True),
        ("mnist", "", True),
    ],
)
def test_idx_sets_load(tmp_path: Path, name: str, sub: str, gz: bool) -> None:
    train, test = _write_idx_set(tmp_path / sub if sub else tmp_path / "flat", gz)
    root = tmp_path if sub else tmp_path / "flat"
    data = load_dataset(name, root, download=False)
    assert data.train_images.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(data.train_images[..., 0], train)
    np.testing.assert_array_equal(data.test_images[..., 0], test)
    assert data.train_labels.tolist() == [0, 1, 2, 3, 9] and data.test_labels.dtype == np.int64
    assert len(data.mean) == 1 and len(data.classes) == 10


def test_idx_bad_header(tmp_path: Path) -> None:
    _write_idx_set(tmp_path / "MNIST" / "raw", gz=False)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(SpecError, match="not an unsigned-byte IDX file"):
        load_dataset("mnist", tmp_path, download=False)


@pytest.mark.parametrize("dims", [(-1, -4), (65536, 65536, 65536, 65536)])
def test_idx_dimensions_that_are_negative_or_overflow_are_refused(tmp_path: Path, dims: tuple[int, ...]) -> None:
    """Their product matched the bytes held (-1 × -4 = 4; 2**64 wrapped to 0 in numpy) and
    reshape failed as a bug (exit 70)."""
    _write_idx_set(tmp_path / "MNIST" / "raw", gz=False)
    header = bytes([0, 0, 8, len(dims)]) + b"".join(int(d).to_bytes(4, "big", signed=True) for d in dims)
    data = bytes(4 if dims[0] < 0 else 0)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(header + data)
    with pytest.raises(SpecError, match=r"t10k-images-idx3-ubyte: header says \["):
        load_dataset("mnist", tmp_path, download=False)


@pytest.mark.parametrize("dims, body, says", [
    pytest.param((10,), bytes(50_000_000), "header says [10] (10 bytes) but holds more than 10 bytes", id="more"),
    pytest.param((65535, 65535, 65535), b"", "bytes of memory available", id="past-memory"),
    pytest.param((2**31 - 1,) * 4, b"", "header says [2147483647, ", id="past-any-memory"),
])
def test_a_gzipped_idx_file_is_read_no_further_than_its_header_says(
    tmp_path: Path, dims: tuple[int, ...], body: bytes, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole file was decompressed before its header was read: a .gz of a few kilobytes
    can hold gigabytes (here 50 MB of zeros in 50 kB). Where the memory available is not
    known, a header's size alone must not allocate it."""
    import tracemalloc

    from blockspec.data import mnist

    _write_idx_set(tmp_path / "MNIST" / "raw", gz=True)
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + body))
    if len(dims) == 4:
        monkeypatch.setattr(mnist, "available_memory", lambda: None)
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="t10k-labels-idx1-ubyte.gz: ") as error:
            load_dataset("mnist", tmp_path, download=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert says in str(error.value)
    assert peak < 20_000_000


# --- image folders -------------------------------------------------------------------------


def _save(file: Path, pixels: np.ndarray) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.squeeze()).save(file)


def _write_folder(root: Path, size: int = 8, gray: bool = False) -> dict[str, np.ndarray]:
    """Two classes; PNGs (lossless, so compared exactly) plus one JPEG per split."""
    rng = np.random.default_rng(3)
    shape = (size, size) if gray else (size, size, 3)
    written = {}
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            for i in range(count):
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                name = f"{split}/{cls}/{i}.png"
                _save(root / name, pixels)
                written[name] = pixels
            _save(root / f"{split}/{cls}/x.jpg", rng.integers(0, 256, shape, dtype=np.uint8))
    return written


def _cache_files(root: Path) -> list[Path]:
    return sorted((root / ".blockspec-cache").glob("imagefolder-*.npz"))


def test_imagefolder_loads_png_and_jpeg(tmp_path: Path) -> None:
    written = _write_folder(tmp_path)
    data = load_dataset("imagefolder", tmp_path)
    assert data.classes == ("cat", "dog")
    assert data.train_images.shape == (8, 8, 8, 3) and data.test_images.shape == (6, 8, 8, 3)
    assert data.train_labels.tolist() == [
        0,
        0,
        0,
        0,
        1,
        1,
        1,
        1,
    ]  # files sorted by name within a class
    np.testing.assert_array_equal(data.train_images[0], written["train/cat/0.png"])
    np.testing.assert_array_equal(
        data.test_images[4], written["test/dog/1.png"]
    )  # cat: 0, 1, x; dog: 0, 1
    expected_mean = data.train_images.reshape(-1, 3).astype(np.float64).mean(axis=0) / 255
    expected_std = data.train_images.reshape(-1, 3).astype(np.float64).std(axis=0) / 255
    np.testing.assert_allclose(data.mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(data.std, expected_std, rtol=1e-12)


def test_imagefolder_cache_is_reused_then_invalidated(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    first = load_dataset("imagefolder", tmp_path)
    [cache] = _cache_files(tmp_path)
    written_at = cache.stat().st_mtime_ns
    again = load_dataset("imagefolder", tmp_path)  # nothing changed: the cache serves it
    np.testing.assert_array_equal(again.train_images, first.train_images)
    assert _cache_files(tmp_path) == [cache] and cache.stat().st_mtime_ns == written_at

    # Rewritten in place with its old size and modification time restored (`cp -p` of an
    # edited copy): the change time still moves, so the cache misses and the load decodes.
    image = tmp_path / "train/cat/0.png"
    stat = image.stat()
    blank = np.zeros((8, 8, 3), np.uint8)
    _save(image, blank)
    image.write_bytes(image.read_bytes().ljust(stat.st_size, b"\0"))  # a PNG of zeros is smaller
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (image.stat().st_size, image.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    changed = load_dataset("imagefolder", tmp_path)
    np.testing.assert_array_equal(changed.train_images[0], blank)
    [new_cache] = _cache_files(tmp_path)
    assert new_cache != cache

    (tmp_path / "train/dog/x.jpg").unlink()
    assert len(load_dataset("imagefolder", tmp_path).train_images) == 7


def test_swapped_class_folders_are_not_served_from_the_cache(tmp_path: Path) -> None:
    """Files unpacked from one archive share their sizes and times: swapping two class folders
    leaves every (path, size, modification time) as it was, but not the path's inode."""
    stamp = 1_700_000_000 * 10**9
    for split in ("train", "test"):
        for cls, value in (("cat", 30), ("dog", 220)):
            for i in range(2):
                path = tmp_path / split / cls / f"{i}.bmp"
                _save(path, np.full((8, 8, 3), value, np.uint8))
                os.utime(path, ns=(stamp, stamp))
    before = load_dataset("imagefolder", tmp_path)
    for split in ("train", "test"):
        (tmp_path / split / "cat").rename(tmp_path / split / "tmp")
        (tmp_path / split / "dog").rename(tmp_path / split / "cat")
        (tmp_path / split / "tmp").rename(tmp_path / split / "dog")
    after = load_dataset("imagefolder", tmp_path)
    assert before.train_images[before.train_labels == 0].mean() == 30
    assert after.train_images[after.train_labels == 0].mean() == 220


class _WindowsEntry:
    """An os.DirEntry as Windows' scandir gives it: `stat()` without the inode and device (0),
    and creation for change time (which an extractor restoring times leaves at the stamp)."""

    def __init__(self, entry: os.DirEntry) -> None:
        self._entry = entry

    def __getattr__(self, name: str) -> object:
        return getattr(self._entry, name)

    def stat(self, *, follow_symlinks: bool = True) -> SimpleNamespace:
        real = self._entry.stat(follow_symlinks=follow_symlinks)
        return SimpleNamespace(**{name: getattr(real, name) for name in dir(real) if name.startswith("st_")}
                               | {"st_ino": 0, "st_dev": 0, "st_ctime_ns": real.st_mtime_ns})


class _Listing(list):
    def __enter__(self) -> _Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_swapped_class_folders_are_seen_where_scandir_gives_no_inodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Windows the cache key took its inodes from scandir, which gives 0 there: the swapped
    folders' stale arrays were served, every cat labelled dog."""
    listing = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path=".": _Listing(_WindowsEntry(entry) for entry in listing(path)))
    test_swapped_class_folders_are_not_served_from_the_cache(tmp_path)


def test_images_in_subfolders_of_a_class_count(tmp_path: Path) -> None:
    """As torchvision's ImageFolder takes them; hidden folders stay out, .jfif is a JPEG."""
    _write_folder(tmp_path)
    pixels = np.full((8, 8, 3), 7, np.uint8)
    _save(tmp_path / "train/cat/2023/batch2/a.png", pixels)
    Image.fromarray(pixels).save(tmp_path / "train/dog/b.jfif", format="JPEG")
    _save(tmp_path / "train/dog/.thumbnails/c.png", pixels)
    data = load_dataset("imagefolder", tmp_path)
    assert len(data.train_images) == 10 and np.bincount(data.train_labels).tolist() == [5, 5]


def test_imagefolder_gray_and_mixed_modes(tmp_path: Path) -> None:
    written = _write_folder(tmp_path / "gray", gray=True)
    gray = load_dataset("imagefolder", tmp_path / "gray")
    assert gray.train_images.shape[3] == 1
    np.testing.assert_array_equal(gray.train_images[0, ..., 0], written["train/cat/0.png"])

    written = _write_folder(tmp_path / "mixed", gray=True)
    _save(tmp_path / "mixed/train/dog/rgb.png", np.full((8, 8, 3), 7, np.uint8))
    mixed = load_dataset("imagefolder", tmp_path / "mixed")
    assert mixed.train_images.shape[3] == 3
    for channel in range(3):  # grayscale files are replicated into RGB, as PIL's convert does
        np.testing.assert_array_equal(
            mixed.train_images[0, ..., channel], written["train/cat/0.png"]
        )


def test_gray_images_with_alpha_are_gray(tmp_path: Path) -> None:
    """An LA PNG (gray plus alpha) is one channel, as RGBA is three: the alpha is dropped."""
    written = _write_folder(tmp_path / "la", gray=True)
    alpha = np.full((8, 8), 200, np.uint8)
    Image.fromarray(np.stack([written["train/cat/0.png"], alpha], axis=2), mode="LA").save(tmp_path / "la/train/cat/0.png")
    loaded = load_dataset("imagefolder", tmp_path / "la")
    assert loaded.train_images.shape[3] == 1
    np.testing.assert_array_equal(loaded.train_images[0, ..., 0], written["train/cat/0.png"])


def test_imagefolder_mixed_sizes_name_the_file(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    _save(tmp_path / "test/dog/big.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(SpecError, match=r"one size; 14 are 8×8 and 1 is not: \S*big\.png \(12×10\); resize"):
        load_dataset("imagefolder", tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: None, "no train/ folder"),
        (lambda root: (root / "train").mkdir(), "no test/ folder"),
        (lambda root: [(root / s).mkdir() for s in ("train", "test")], "has no class folders"),
        (
            lambda root: [(root / s / "cat").mkdir(parents=True) for s in ("train", "test")],
            "holds no images",
        ),
        (  # an empty class folder in train/ alone: named as empty, not as missing in test/
            lambda root: [write_colour_folder(root), (root / "train" / "empty").mkdir()],
            "train/empty holds no images",
        ),
    ],
)
def test_imagefolder_layout_errors(tmp_path: Path, damage, message: str) -> None:
    damage(tmp_path)
    with pytest.raises(SpecError, match=message) as error:
        load_dataset("imagefolder", tmp_path)
    assert "data.root" in str(error.value) and "root/train/<class>/<images>" in str(error.value)


def test_imagefolder_other_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_dataset("imagefolder", tmp_path / "missing")
    _write_folder(tmp_path)
    _save(tmp_path / "test/bird/0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SpecError, match=r"same class folders as train/; not in train: \['bird'\]"):
        load_dataset("imagefolder", tmp_path)
    (tmp_path / "test/bird/0.png").unlink()
    (tmp_path / "test/bird").rmdir()
    (tmp_path / "train/cat/broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SpecError, match=r"cannot decode .*broken\.jpg"):
        load_dataset("imagefolder", tmp_path)


@pytest.mark.parametrize(
    ("pixels", "suffix"),
    [(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000, ".png"), (np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), ".tiff")],
)
def test_imagefolder_refuses_16_bit_and_float_images(tmp_path: Path, pixels: np.ndarray, suffix: str) -> None:
    """PIL's conversion to 8 bits clips them to 0 and 255: refused, never decoded wrong."""
    _write_folder(tmp_path)
    Image.fromarray(pixels).save(tmp_path / f"train/cat/wide{suffix}")
    with pytest.raises(SpecError, match=rf"cannot decode .*wide\{suffix}: .*16-bit or floating point"):
        load_dataset("imagefolder", tmp_path)


# --- statistics, loaders, preview ------------------------------------------------------------


def test_channel_stats_exact() -> None:
    images = np.random.default_rng(4).integers(0, 256, (7, 5, 6, 3), dtype=np.uint8)
    mean, std = channel_stats(images)
    flat = images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(axis=0), rtol=1e-12)


def _synthetic(n: int = 40) -> ImageData:
    rng = np.random.default_rng(5)
    return ImageData(
        train_images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
        train_labels=rng.integers(0, 10, n).astype(np.int64),
        test_images=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
        test_labels=rng.integers(0, 10, 10).astype(np.int64),
        classes=tuple(str(i) for i in range(10)),
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )




def _first_batch(seed: int, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    data = _synthetic()
    train, _ = make_loaders(
        data, build_augment(TRIO, data.mean), 8, workers, seed, False
    )
    return next(iter(train))


def test_loader_same_seed_same_batch_different_seed_differs() -> None:
    images, labels = _first_batch(seed=1)
    assert (
        images.dtype == torch.uint8
        and images.shape == (8, 3, 32, 32)
        and labels.dtype == torch.int64
    )
    again, again_labels = _first_batch(seed=1)
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    other, _ = _first_batch(seed=2)
    assert not torch.equal(images, other)


def test_loader_workers_deterministic_and_independent() -> None:
    data = _synthetic()
    augment = build_augment(
        [{"CoarseDropout": {"hole_height_range": [8, 8], "hole_width_range": [8, 8], "p": 1.0}}],
        data.mean,
    )

    def epoch(seed: int) -> torch.Tensor:
        train, _ = make_loaders(data, augment, 4, 2, seed, False)
        return torch.cat([images for images, _ in train])

    first = epoch(3)
    assert torch.equal(first, epoch(3))
    # Each worker has its own stream: the hole positions of the two workers' first batches differ.
    holes = (first == 0).all(dim=1)
    assert not torch.equal(holes[:4], holes[4:8])


def _epochs_through(train, epochs: list[int]) -> dict[int, torch.Tensor]:
    """Each epoch's training images, read through `train` in turn as a run reads them."""
    seen = {}
    for epoch in epochs:
        seed_epoch(3, epoch, train)
        seen[epoch] = torch.cat([images for images, _ in train])
    return seen


def test_dataloader_workers_persist_from_epoch_to_epoch() -> None:
    """Workers started afresh every epoch: where they are spawned (Windows, macOS) that is an
    interpreter, torch and albumentations imported again per worker, seconds an epoch."""
    import multiprocessing

    data = _synthetic()
    train, _ = make_loaders(data, build_augment(TRIO, data.mean), 4, 2, 3, False)
    before = {process.pid for process in multiprocessing.active_children()}
    workers = []
    for epoch in (1, 2, 3):
        _epochs_through(train, [epoch])
        workers.append({process.pid for process in multiprocessing.active_children()} - before)
    assert len(workers[0]) == 2 and workers[0] == workers[1] == workers[2], workers


def test_the_interpreter_exits_with_a_loader_still_held() -> None:
    """multiprocessing's exit hook waits, without a limit, for the workers it sends SIGTERM,
    which they ignore: a loader reachable at exit (here a global; a failed test's or an
    internal error's traceback alike) hung `blockspec train` and pytest."""
    program = (
        "from tests.test_data import _synthetic\n"
        "from tests.test_augment import TRIO\n"
        "from blockspec.data import build_augment, make_loaders\n"
        "data = _synthetic()\n"
        "HELD = make_loaders(data, build_augment(TRIO, data.mean), 4, 2, 3, False)\n"
        "for _ in HELD[0]: pass\n"
        "for _ in HELD[1]: pass\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", program], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr


def test_an_epoch_from_persistent_workers_is_the_epoch_a_resumed_run_sees() -> None:
    """Workers that lived through epochs 1–3 give epoch 3 as fresh ones do (a run resumed at
    epoch 3); the last epochs' switch (data.augment_off) reaches them too: epoch 4 is the
    plain images, neither holed nor flipped, where epoch 3 was not."""
    from blockspec.data.loader import FinalEpochs

    data = _synthetic()
    holes = build_augment([{"CoarseDropout": {"hole_height_range": [8, 8], "hole_width_range": [8, 8], "p": 1.0}}],
                          data.mean)

    def loader() -> torch.utils.data.DataLoader:
        return make_loaders(data, holes, 4, 2, 3, False, alternate_flip=True, final=FinalEpochs(4, None, False))[0]

    def plain(epoch: int) -> torch.Tensor:
        sampler = loader().sampler
        sampler.set_epoch(epoch)
        return torch.from_numpy(data.train_images[[index for _, index in sampler]].transpose(0, 3, 1, 2))

    lived = _epochs_through(loader(), [1, 2, 3, 4])
    assert torch.equal(lived[3], _epochs_through(loader(), [3])[3])
    assert torch.equal(lived[4], plain(4)) and not torch.equal(lived[3], plain(3))


def test_loader_limits_and_test_order() -> None:
    data = _synthetic()
    limited = data.limited(train=17, test=3)
    assert (limited.classes, limited.mean, limited.std) == (data.classes, data.mean, data.std)  # the full set's
    train, test = make_loaders(limited, None, 16, 0, 0, False)
    assert len(train.dataset) == 17 and len(train) == 1  # 16 + a lone image: that one is dropped
    batch, _ = next(iter(test))
    rows = np.sort(np.random.default_rng(0).permutation(10)[:3])
    assert torch.equal(batch, torch.from_numpy(data.test_images[rows].transpose(0, 3, 1, 2)))
    assert data.limited().train_images.base is data.train_images  # no limit, no copy
    with pytest.raises(SpecError, match="--limit-train = 0"):
        data.limited(train=0)


def test_a_spawned_worker_gets_the_data_set_as_shared_memory_not_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows and macOS spawn DataLoader workers: the data set was pickled
    whole through each worker's pipe (147 MB of CIFAR-10), and a worker ended by Ctrl-C while
    starting left the main process blocked writing it. (Linux forks its workers: nothing is
    pickled there.) A spawned worker's batches are a forked one's."""
    import sys
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401 (the tensor reductions DataLoader's workers pickle with)

    data = _synthetic(2000)  # 6 MB of images
    augment = build_augment([{"CoarseDropout": {"hole_height_range": [8, 8], "hole_width_range": [8, 8], "p": 1.0}}],
                            data.mean)
    batches = []
    for context in ("fork", "spawn"):
        train, _ = make_loaders(data, augment, 16, 2, 3, False)
        with monkeypatch.context() as platform:
            platform.setattr(sys, "platform", "darwin")
            payload = bytes(ForkingPickler.dumps(train.dataset))
        assert len(payload) < 10_000, len(payload)
        again = pickle.loads(payload)
        for dataset in (again, train.dataset):  # the worker's, and the main process's reading shared memory now
            assert np.array_equal(dataset.images, data.train_images) and np.array_equal(dataset.labels, data.train_labels)
        train.multiprocessing_context = context
        batches.append(next(iter(train)))
    train.dataset.images = data.train_images[::-1].copy()  # replaced after a pickling: the next one sends these
    with monkeypatch.context() as platform:
        platform.setattr(sys, "platform", "darwin")
        assert np.array_equal(pickle.loads(ForkingPickler.dumps(train.dataset)).images, data.train_images[::-1])
    assert torch.equal(batches[0][0], batches[1][0]) and torch.equal(batches[0][1], batches[1][1])


def test_normalize_batch() -> None:
    x = torch.tensor([[[[0, 255]], [[51, 102]]]], dtype=torch.uint8)  # [1, 2, 1, 2]
    out = normalize_batch(x, mean=(0.5, 0.2), std=(0.5, 0.1))
    expected = torch.tensor([[[[-1.0, 1.0]], [[0.0, 2.0]]]])
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-6)


def test_preview_grid_png(tmp_path: Path) -> None:
    data = _synthetic()
    png = augment_grid_png(data.train_images, albumentations_versions(build_augment(TRIO, data.mean), seed=0), n=3)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 0


def test_test_images_of_another_size_than_the_spec_are_refused() -> None:
    """A loader (IDX files, say) may give test images of another size than its train images;
    the network would then be evaluated on maps it was not built for."""
    spec = parse_spec("name: m\ninput: {channels: 1, size: 8}\nclasses: 2\nblocks:\n  output: [gap: {}, fc: {out: 2}]\n")
    labels = np.array([0, 1])
    data = ImageData(np.zeros((2, 8, 8, 1), np.uint8), labels, np.zeros((2, 6, 6, 1), np.uint8), labels,
                     ("a", "b"), (0.5,), (0.25,))
    with pytest.raises(SpecError, match="but the test images of data set 'cifar10' are 1×6×6"):
        check_data_fits(spec, data)


def test_class_names_in_two_unicode_forms_are_named_as_such(tmp_path: Path) -> None:
    """`café` written by macOS (NFD) and by most other systems (NFC) look the same in a message."""
    import unicodedata

    pixels = np.zeros((8, 8, 3), np.uint8)
    for split, form in (("train", "NFC"), ("test", "NFD")):
        for cls in (unicodedata.normalize(form, "café"), "dog"):
            _save(tmp_path / split / cls / "0.png", pixels)
    with pytest.raises(SpecError, match=r"\['café'\] spelled in two Unicode normal forms \(NFC and NFD"):
        load_dataset("imagefolder", tmp_path)


def test_a_link_to_a_missing_image_is_refused_not_skipped(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "train/cat/gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(SpecError, match=r"train/cat/gone.png links to .*nowhere.png, which does not exist"):
        load_dataset("imagefolder", tmp_path)


def test_linked_subfolders_count_and_a_link_back_up_is_not_followed(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    pixels = np.full((8, 8, 3), 9, np.uint8)
    _save(tmp_path / "elsewhere/a.png", pixels)
    (tmp_path / "train/cat/more").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "train/cat/loop").symlink_to(tmp_path / "train/cat")  # would list the class forever
    (tmp_path / "train/dog/up").symlink_to(tmp_path / "train")  # would give dog every cat too
    (tmp_path / "train/dog/top").symlink_to(tmp_path)
    (tmp_path / "train/dog/outside").symlink_to(tmp_path.parent)  # holds the set, and may hold others
    data = load_dataset("imagefolder", tmp_path)
    assert np.bincount(data.train_labels).tolist() == [5, 4]
    (tmp_path / "train/bird").symlink_to(tmp_path / "train")
    (tmp_path / "test/bird").mkdir()
    with pytest.raises(SpecError, match=r"train/bird links to \S*/train, a folder above it: every class's images"):
        load_dataset("imagefolder", tmp_path)


def test_links_that_branch_to_one_folder_level_after_level_are_refused(tmp_path: Path) -> None:
    """Two links a level to the next level, 20 levels: each image was listed 2**20 times (the
    walk never ended); a folder linked twice still counts twice, as in torchvision, and one
    that 100 subfolders link to is listed in each."""
    _write_folder(tmp_path)
    levels = [tmp_path / "dag" / f"d{number}" for number in range(21)]
    for level in levels:
        level.mkdir(parents=True)
    _save(levels[-1] / "deep.png", np.zeros((8, 8, 3), np.uint8))
    for level, below in zip(levels, levels[1:]):
        (level / "x").symlink_to(below)
        (level / "y").symlink_to(below)
    (tmp_path / "train/cat/twice").symlink_to(levels[-1])
    (tmp_path / "train/cat/again").symlink_to(levels[-1])
    for subject in range(100):
        (tmp_path / f"train/dog/s{subject}").mkdir()
        (tmp_path / f"train/dog/s{subject}/background").symlink_to(levels[-1])
    assert np.bincount(load_dataset("imagefolder", tmp_path).train_labels).tolist() == [6, 104]
    (tmp_path / "train/cat/links").symlink_to(levels[0])
    with pytest.raises(SpecError, match=r"links reach the same folders again and again \([\d,]+ entries into \d+ folders"):
        load_dataset("imagefolder", tmp_path)


def test_every_file_that_cannot_be_decoded_is_named_at_once(tmp_path: Path) -> None:
    """Named one a run, each fix of a large folder cost another whole decode."""
    _write_folder(tmp_path)
    for number in range(7):
        (tmp_path / f"test/dog/bad{number}.png").write_bytes(b"not a png")
    with pytest.raises(SpecError, match=r"cannot decode 7 files: \S*bad0\.png: .*; \S*bad4\.png: [^;]*; and 2 more$"):
        load_dataset("imagefolder", tmp_path)


def test_images_of_another_size_than_most_are_the_ones_named(tmp_path: Path) -> None:
    """The first file listed was taken as the size: one odd file first blamed every other."""
    _write_folder(tmp_path)
    _save(tmp_path / "train/cat/0.png", np.zeros((12, 10, 3), np.uint8))  # listed first
    with pytest.raises(SpecError, match=r"one size; 13 are 8×8 and 1 is not: \S*train/cat/0\.png \(10×12\); resize"):
        load_dataset("imagefolder", tmp_path)


def test_huge_images_among_small_ones_are_named_without_being_decoded(tmp_path: Path) -> None:
    """A few photos of a camera's size in a folder of thumbnails were decoded whole before the
    size check named them (27 MB of pixels each here; a hundred of them, gigabytes)."""
    _write_folder(tmp_path)
    for name in ("train/cat/photo.png", "test/dog/photo.png"):
        _save(tmp_path / name, np.zeros((3000, 3000, 3), np.uint8))
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match=r"one size; 14 are 8×8 and 2 are not: \S*train/cat/photo\.png \(3000×3000\), "
                                            r"\S*test/dog/photo\.png \(3000×3000\); resize"):
            load_dataset("imagefolder", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20, f"{peak / 2**20:.0f} MB held while loading"


def test_a_set_too_large_to_decode_in_memory_is_refused_before_decoding(tmp_path: Path) -> None:
    """Sized from the headers of files spread over the set: past the memory available, the
    decode was killed, or its pool hung on a MemoryError. The files are cut after their
    header, so a decode that was not refused fails at once rather than filling the memory."""
    _write_folder(tmp_path)
    big = tmp_path / "big.png"
    Image.new("RGB", (8000, 8000)).save(big)  # 192 MB decoded
    big.write_bytes(big.read_bytes()[:1000])
    available = available_memory()
    if available is None or available > 200 * 2**30:
        pytest.skip("this machine's available memory is not known, or too large to fill with links")
    for number in range(available // (8000 * 8000 * 3) + 1):
        os.link(big, tmp_path / f"train/cat/big{number}.png")
    with pytest.raises(SpecError, match=r"images of 8000×8000 take about [\d,.]+ GiB decoded, more than the [\d,.]+ GiB of"):
        load_dataset("imagefolder", tmp_path)


@pytest.mark.parametrize("damage", [
    lambda arrays: arrays.update(train_labels=arrays["train_labels"] + 5),  # a class the set lacks
    lambda arrays: arrays.pop("mean"),
    lambda arrays: arrays.update(test_images=arrays["test_images"][..., 0]),
])
def test_a_cache_file_that_is_no_whole_set_is_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Callable[[dict[str, np.ndarray]], object]
) -> None:
    """Labels past the classes, a missing key or images of three axes failed later as a bug
    (IndexError, KeyError: exit 70)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _write_folder(tmp_path / "set")
    first = load_dataset("imagefolder", tmp_path / "set")
    (cached,) = (tmp_path / "set" / ".blockspec-cache").glob("imagefolder-*.npz")
    with np.load(cached) as stored:
        arrays = {name: stored[name] for name in stored.files}
    damage(arrays)
    np.savez(cached, **arrays)
    again = load_dataset("imagefolder", tmp_path / "set")
    assert (again.train_labels == first.train_labels).all() and again.mean == first.mean
    assert (again.test_images == first.test_images).all()


def test_a_cache_that_cannot_be_written_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Silently uncached, every run decoded the whole set again."""
    _write_folder(tmp_path)
    (tmp_path / ".blockspec-cache").write_text("a file where the cache folder goes")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".blockspec-cache"))
    load_dataset("imagefolder", tmp_path)
    inside, users = cache_folders(tmp_path)
    assert [record.getMessage() for record in caplog.records] == [
        f"note: the decoded images of {tmp_path} are not cached ({inside}: File exists; {users}: Not a directory), "
        "so each run decodes them again"]


def _gray_folder(root: Path, mode: str = "L") -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for number in range(3):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).convert(mode).save(folder / f"{number}.png")
    return root


GRAY_SPEC = "name: g\ninput: {channels: 1, size: 8}\nclasses: 2\nblocks:\n  output: [gap: {}, fc: {out: 2}]\n"


def test_one_colour_file_among_gray_ones_is_named_where_a_gray_spec_refuses_the_set(tmp_path: Path) -> None:
    root = _gray_folder(tmp_path / "gray")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "b" / "red.png")
    with pytest.raises(SpecError) as error:
        check_data_fits(parse_spec(GRAY_SPEC), load_dataset("imagefolder", str(root)))
    assert ("are 3×8×8 (" + str(root / "train" / "b" / "red.png") + " is in colour (1 of 13 images are), so every "
            "image is read with 3 channels)") in str(error.value)


def test_gray_images_saved_in_colour_are_said_to_be(tmp_path: Path) -> None:
    root = _gray_folder(tmp_path / "palette", mode="P")
    with pytest.raises(SpecError, match=r"every image is gray but saved in colour \(RGB or palette mode\)"):
        check_data_fits(parse_spec(GRAY_SPEC), load_dataset("imagefolder", str(root)))



_KILL_A_DECODER = """
import os, signal, sys, threading, time
from blockspec.data import load_dataset
from blockspec.errors import SpecError

def kill_a_decoder():
    while True:
        for task in os.listdir("/proc/self/task"):
            try:
                children = open(f"/proc/self/task/{task}/children").read().split()
            except FileNotFoundError:  # a thread that ended
                continue
            if children:
                os.kill(int(children[0]), signal.SIGKILL)
                return
        time.sleep(0.001)

threading.Thread(target=kill_a_decoder, daemon=True).start()
try:
    load_dataset("imagefolder", sys.argv[1])
    print("loaded")
except SpecError as error:
    print(error)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the decoding processes through Linux's /proc")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                    reason="one core decodes without a pool")
def test_a_decoding_process_killed_ends_the_load_with_an_error_not_a_hang(tmp_path: Path) -> None:
    """The system's out-of-memory killer ending one of the pool's processes left the pool
    waiting for its chunk forever, or, if it was waiting for one and held the queue's lock,
    hanging as it ended: `blockspec train` hung with no message. The load runs in a process
    group of its own, ended if it hangs, where a thread kills the first decoding process it
    sees, as the system would."""
    root = write_colour_folder(tmp_path / "data", train_per_class=1500, test_per_class=10, size=8)
    load = subprocess.Popen([sys.executable, "-c", _KILL_A_DECODER, str(root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    try:
        stdout, stderr = load.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(load.pid, signal.SIGKILL)  # the pool's processes with it
        load.communicate()
        pytest.fail("the load hung")
    assert load.returncode == 0, stderr
    assert stdout.startswith("data.root: a process decoding its images ended abruptly (if the system ended it, "
                             "the memory ran out: free some, or decode a smaller set)"), stdout
