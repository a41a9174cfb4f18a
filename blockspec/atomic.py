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


@contextmanager
def atomic_write(target: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `target` when the block exits without an exception."""
    temp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
