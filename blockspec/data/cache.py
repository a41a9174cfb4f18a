"""A decoded data set kept as one uncompressed .npz, so decoding happens once per version.

The file name carries a key derived from the source files, so any change to them simply
misses the cache; stale versions are removed when a new one is written. Writes are atomic,
so a crash or a concurrent run never sees half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from blockspec.atomic import atomic_write

_FOLDER = ".blockspec-cache"
log = logging.getLogger("blockspec")  # as the plugin warnings: a script can silence or capture it


def cache_folders(root: Path) -> list[Path]:
    """Where a cache for `root` may live: inside it (unless it is a file, such as an
    archive), else in the user's cache directory."""
    inside = [] if root.is_file() else [root / _FOLDER]
    user_cache = _user_cache_folder()
    if user_cache is None:
        return inside
    root_id = hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:16]  # any name the file system holds
    return [*inside, user_cache / root_id]


def _user_cache_folder() -> Path | None:
    """$XDG_CACHE_HOME/blockspec or ~/.cache/blockspec; None for a process without a home
    (a container run under a user id with no passwd entry and HOME unset)."""
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "blockspec"
    try:
        return Path.home() / ".cache" / "blockspec"
    except (RuntimeError, KeyError):
        return None


def read_cache(root: Path, prefix: str, key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under `key`, or None when absent or unreadable (then it is rebuilt)."""
    for folder in cache_folders(root):
        file = folder / f"{prefix}-{key}.npz"
        if not file.is_file():
            continue
        try:
            with np.load(file, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile):  # MemoryError: a header's huge shape
            continue
    return None


def write_cache(root: Path, prefix: str, key: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Store `arrays` in the first writable cache folder; None, with a warning, if none is
    (caching is optional, but without it every run decodes the set again)."""
    refusals = []
    for folder in cache_folders(root):
        file = folder / f"{prefix}-{key}.npz"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_write(file) as out:
                np.savez(out, **arrays)
        except OSError as error:
            refusals.append(f"{folder}: {error.strerror or error}")
            continue
        _remove_stale(folder, prefix, keep=file)
        return file
    log.warning("note: the decoded images of %s are not cached (%s), so each run decodes them again",
                root, "; ".join(refusals) or "no cache folder: no home directory")
    return None


def _remove_stale(folder: Path, prefix: str, keep: Path) -> None:
    for old in folder.glob(f"{prefix}-*.npz"):
        if old != keep:
            old.unlink(missing_ok=True)
