"""Files that appear complete or not at all.

A checkpoint, record, picture, cache or download interrupted half-way (killed, a full disk,
raced by a second run) must never be read as valid, so content goes to a temporary sibling,
is flushed to the disk, and is renamed over the target only at the end. The file gets the
permissions a plain `open` gives (the user's umask), unlike `tempfile.mkstemp`'s 0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


_PARTIAL = ".tmp"  # the suffix of a write in progress, hidden beside its target


def is_partial_write(path: Path) -> bool:
    """Whether `path` is the temporary file of a write in progress, or of one killed half-way."""
    return path.name.startswith(".") and path.name.endswith(_PARTIAL)


def remove_partial_writes(folder: Path) -> None:
    """Delete the temporary files that writes killed half-way left in `folder`; only safe
    while no other process writes there."""
    for partial in folder.glob(f".*{_PARTIAL}"):
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_write(target: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `target` when the block exits without an exception."""
    temp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{_PARTIAL}")
    try:
        with open(temp, "xb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
