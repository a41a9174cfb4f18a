"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

Read directly (with the numpy-only unpickler) instead of through torchvision, whose loader
insists on the MD5 sums of the original files and so rejects any re-packed or test copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blockspec.data.download import download_and_extract, fetch_missing
from blockspec.data.imagedata import ImageData
from blockspec.data.safe_pickle import load_pickle
from blockspec.errors import fail

_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class _CifarFormat:
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    names_key: str
    labels_key: str
    url: str
    md5: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


# mean/std: the widely published statistics of the official 50k training images.
CIFAR10 = _CifarFormat(
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    names_key="label_names",
    labels_key="labels",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = _CifarFormat(
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    names_key="fine_label_names",
    labels_key="fine_labels",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


def load_cifar(fmt: _CifarFormat, root: Path, download: bool, path: str) -> ImageData:
    """Load a CIFAR set from `root/<folder>` or from `root` itself, downloading if allowed."""
    folder = _find_folder(fmt, root)
    if folder is None:
        folder = _fetch(fmt, root, download, path)
    classes = _read_classes(fmt, folder / fmt.meta_file, path)
    train = [_read_batch(fmt, folder / name, len(classes), path) for name in fmt.train_files]
    test_images, test_labels = _read_batch(fmt, folder / fmt.test_file, len(classes), path)
    return ImageData(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
        mean=fmt.mean,
        std=fmt.std,
    )


def _find_folder(fmt: _CifarFormat, root: Path) -> Path | None:
    for folder in (root / fmt.folder, root):
        if all((folder / name).is_file() for name in fmt.files):
            return folder
    return None


def _fetch(fmt: _CifarFormat, root: Path, download: bool, path: str) -> Path:
    expected = f"expected {', '.join(fmt.files)} in {root / fmt.folder} (or directly in {root})"
    archive = fmt.url.rsplit("/", 1)[1]
    fetch_missing(
        lambda: download_and_extract(fmt.url, root, archive, fmt.md5), expected, root, path, download
    )
    folder = _find_folder(fmt, root)
    if folder is None:
        raise fail(
            f"{path}.root", f"{expected}; the downloaded archive did not provide them", str(root)
        )
    return folder


def _read_dict(file: Path, path: str) -> dict[str, Any]:
    """A batch file's top-level dict, with Python 2 byte-string keys decoded."""
    content = load_pickle(file, f"{path}.root")
    if not isinstance(content, dict):
        raise fail(
            f"{path}.root", f"{file} should hold a dict, found {type(content).__name__}", str(file)
        )
    return {
        key.decode("latin-1") if isinstance(key, bytes) else str(key): value
        for key, value in content.items()
    }


def _field(content: dict[str, Any], key: str, file: Path, path: str) -> Any:
    if key not in content:
        raise fail(
            f"{path}.root", f"{file} has no {key!r} entry (found {sorted(content)})", str(file)
        )
    return content[key]


def _read_classes(fmt: _CifarFormat, file: Path, path: str) -> tuple[str, ...]:
    names = _field(_read_dict(file, path), fmt.names_key, file, path)
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, (bytes, str)) for n in names)
    ):
        raise fail(
            f"{path}.root",
            f"{file}: {fmt.names_key!r} should be a non-empty list of names",
            str(file),
        )
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else n for n in names)


def _read_batch(
    fmt: _CifarFormat, file: Path, num_classes: int, path: str
) -> tuple[np.ndarray, np.ndarray]:
    """Images as NHWC uint8 (each stored row is 3072 bytes in CHW order) and int64 labels."""
    content = _read_dict(file, path)
    pixels = np.asarray(_field(content, "data", file, path))
    labels = np.asarray(_field(content, fmt.labels_key, file, path))
    if (
        pixels.ndim != 2
        or pixels.shape[1] != _PIXELS
        or not np.issubdtype(pixels.dtype, np.integer)
    ):
        raise fail(
            f"{path}.root",
            f"{file}: 'data' should be integers of shape [N, {_PIXELS}], "
            f"found {pixels.dtype} {list(pixels.shape)}",
            str(file),
        )
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise fail(f"{path}.root", f"{file}: pixel values must lie in 0..255", str(file))
    if labels.shape != (len(pixels),) or (
        labels.size and not np.issubdtype(labels.dtype, np.integer)
    ):
        raise fail(
            f"{path}.root",
            f"{file}: {fmt.labels_key!r} should be {len(pixels)} integer labels, "
            f"found shape {list(labels.shape)}",
            str(file),
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise fail(f"{path}.root", f"{file}: labels must lie in 0..{num_classes - 1}", str(file))
    images = pixels.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)
