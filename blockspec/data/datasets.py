"""One entry point from a data set name and folder to arrays in memory."""

from __future__ import annotations

from pathlib import Path

from blockspec.data.archive import is_archive, load_image_archive
from blockspec.data.cifar import CIFAR10, CIFAR100, load_cifar
from blockspec.data.imagedata import ImageData
from blockspec.data.imagefolder import LAYOUT, load_imagefolder
from blockspec.data.mnist import FASHION_MNIST, MNIST, load_idx_set
from blockspec.errors import fail
from blockspec.hints import value_hint
from blockspec.spec import DATASET_NAMES as DATASETS


def load_dataset(
    name: str,
    root: str | Path,
    download: bool = True,
    path: str = "data",
    trained_classes: tuple[str, ...] | None = None,
) -> ImageData:
    """Load data set `name` from `root`; errors are reported at `<path>.dataset` / `<path>.root`.

    The named public sets are downloaded into `root` when missing (if `download`);
    `imagefolder` reads `root/{train,test}/<class>/*` (or such a tree inside a .tar/.zip
    archive, read in place) and is never downloaded. With `trained_classes` (a checkpoint's,
    for `eval`), an image folder holding `test/` alone is read too, labelled by them, with no
    train images or statistics.
    """
    if name not in DATASETS:
        raise fail(f"{path}.dataset", f"unknown data set; choose one of {', '.join(DATASETS)}{value_hint(name, DATASETS)}", name)
    folder = Path(root).expanduser()
    mismatch = _image_folder_mismatch(folder, name) if name != "imagefolder" else None
    if mismatch:
        raise fail(f"{path}.root", mismatch, str(folder))
    if name == "imagefolder" and is_archive(folder):
        return load_image_archive(folder, path, trained_classes)
    if folder.exists() and not folder.is_dir():
        raise fail(f"{path}.root", "is a file; expected a folder", str(folder))
    if name == "imagefolder":
        if not folder.is_dir():
            raise fail(f"{path}.root", f"folder does not exist; {LAYOUT}", str(folder))
        return load_imagefolder(folder, path, trained_classes)
    if not folder.is_dir() and not download:
        raise fail(f"{path}.root", "folder does not exist and download is off", str(folder))
    if name in ("cifar10", "cifar100"):
        return load_cifar(CIFAR10 if name == "cifar10" else CIFAR100, folder, download, path)
    return load_idx_set(MNIST if name == "mnist" else FASHION_MNIST, folder, download, path)


def _image_folder_mismatch(folder: Path, name: str) -> str | None:
    """Why `folder` suits `--dataset imagefolder` rather than the named set, if it does."""
    if is_archive(folder):
        return (
            f"is an archive; {name} reads (and downloads into) a folder. An archive of "
            "train/<class>/ and test/<class>/ image folders is read with `--dataset imagefolder`"
        )
    if _holds_image_folders(folder):
        return (
            f"holds images in train/<class>/ and test/<class>/ folders, not the {name} files; "
            "read it with `--dataset imagefolder`"
        )
    return None


def _holds_image_folders(folder: Path) -> bool:
    """True for an image-folder tree: train/ and test/, each with class subfolders."""
    splits = [folder / "train", folder / "test"]
    return all(split.is_dir() and any(child.is_dir() for child in split.iterdir()) for split in splits)
