"""An image folder shipped as an archive (.tar, .tar.gz, .tar.xz, .zip): unpacked once.

The unpacked copy lives in the user's cache, keyed by the archive's path, size and mtime,
so a changed archive is unpacked afresh and an unchanged one costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from blockspec.errors import fail

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def unpacked_root(archive: Path, where: str) -> Path:
    """The folder inside the unpacked archive that holds `train/` and `test/`."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "blockspec" / "archives"
    target = home / key
    if not target.is_dir():
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=home))
        try:
            _extract(archive, staging, where)
            _publish(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for candidate in (target, *sorted(p for p in target.iterdir() if p.is_dir())):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    raise fail(where, "the archive holds no train/ and test/ folders (at its top or one level down)", str(archive))


def _publish(staging: Path, target: Path) -> None:
    """Move the unpacked copy into place; when runs started together unpack the same archive,
    the first to finish wins and the others use its copy."""
    try:
        os.replace(staging, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, destination: Path, where: str) -> None:
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as bundle:
                for member in bundle.namelist():
                    resolved = (destination / member).resolve()
                    if not resolved.is_relative_to(destination.resolve()):
                        raise fail(where, f"refusing archive member outside the folder: {member}", str(archive))
                bundle.extractall(destination)
        else:
            with tarfile.open(archive) as bundle:
                bundle.extractall(destination, filter="data")  # no links out, no devices
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as error:
        raise fail(where, f"cannot unpack the archive ({type(error).__name__}: {error})", str(archive)) from None
