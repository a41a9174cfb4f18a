"""Files that appear complete or not at all.

A checkpoint, record, picture, cache or download interrupted half-way (killed, a full disk,
raced by a second run) must never be read as valid, so content goes to a temporary sibling,
is flushed to the disk, and is renamed over the target only at the end. The file gets the
permissions a plain `open` gives (the user's umask), unlike `tempfile.mkstemp`'s 0600.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from blockspec.errors import fail


_PARTIAL = re.compile(r"\..+\.\d+-[0-9a-f]{8}\.tmp")
"""The name of a write in progress, hidden beside its target (`atomic_write`'s, and no user's)."""


def _temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def is_partial_write(path: Path) -> bool:
    """Whether `path` is the temporary file of a write in progress, or of one killed half-way."""
    return _PARTIAL.fullmatch(path.name) is not None and path.is_file()


def remove_partial_writes(folder: Path) -> None:
    """Delete the temporary files that writes killed half-way left in `folder`; only safe
    while no other process writes there."""
    for partial in filter(is_partial_write, folder.iterdir()):
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_write(target: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `target` when the block exits without an exception."""
    temp = _temporary_name(target)
    try:
        with open(temp, "xb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        _replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


_REPLACE_TRIES = 10  # about 2 s: an antivirus or indexer lets go by then, a program holding the file does not


def _replace(temp: Path, target: Path) -> None:
    """`os.replace`, retried for a while on Windows' PermissionError: there a file another
    program holds open (a scan, a viewer, Excel showing metrics.csv) cannot be replaced
    meanwhile. Elsewhere the refusal is the folder's permissions, said at once."""
    for attempt in range(_REPLACE_TRIES):
        try:
            os.replace(temp, target)
            return
        except PermissionError:
            if sys.platform != "win32" or attempt == _REPLACE_TRIES - 1:
                raise
            time.sleep(0.2)


def check_output_file(path: Path, flag: str) -> None:
    """Refuse, before any work, a file that cannot be written (a folder, a path through a
    file); its missing folders are made when it is written."""
    if path.is_dir():
        raise fail(flag, "is a folder; give the file to write", str(path))
    if path.exists() and not path.is_file():  # written by replacing it: /dev/null would become a file
        raise fail(flag, "is not a regular file (a device, a pipe or a socket); give a file to write", str(path))
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise fail(flag, f"{blocking} is a file, not a folder", str(path))


def write_output(path: Path, content: bytes, flag: str = "--out") -> None:
    """Write a command's file whole or not at all, making its folders; a place that cannot be
    written (no permission, a read-only or special file system, a name too long) is the
    flag's problem, not a crash."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path  # a link is written through, not replaced
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as file:
            file.write(content)
    except OSError as error:
        raise fail(flag, f"cannot write there ({error.strerror or error})", str(path)) from None
