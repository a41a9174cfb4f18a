"""Fetching the public data sets' official archives, checked against their published MD5.

Plain urllib rather than torchvision's helpers: torchvision's compiled extension must match
the installed torch exactly or its import fails, and downloading needs none of it.
"""

from __future__ import annotations

import hashlib
import http.client
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from blockspec.atomic import atomic_write
from blockspec.errors import fail

_TIMEOUT_S = 30
_CHUNK = 1 << 20


T = TypeVar("T")


class DownloadError(Exception):
    """A download or extraction failed; callers turn it into a SpecError naming the files."""


def download(urls: list[str], folder: Path, filename: str, md5: str) -> Path:
    """Fetch `filename` from the first mirror that works into `folder`, verified by MD5."""
    target = folder / filename
    if target.is_file() and _md5(target) == md5:
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create {folder}: {error.strerror}") from None
    failures = []
    for url in urls:
        try:
            _fetch(url, target, md5)
            return target
        except (
            OSError,
            http.client.HTTPException,
            DownloadError,
        ) as error:  # URLError is an OSError
            failures.append(f"{url}: {error}")
    raise DownloadError("; ".join(failures))


def download_and_extract(url: str, folder: Path, filename: str, md5: str) -> None:
    """Fetch a .tar.gz into `folder` and unpack it there, refusing members that escape it."""
    archive = download([url], folder, filename, md5)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")
    except (OSError, tarfile.TarError) as error:
        raise DownloadError(f"cannot extract {archive}: {error}") from None


def _fetch(url: str, target: Path, md5: str) -> None:
    digest = hashlib.md5()
    with atomic_write(target) as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
        while chunk := response.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != md5:
            raise DownloadError(f"MD5 {digest.hexdigest()} does not match the published {md5}")


def _md5(file: Path) -> str:
    digest = hashlib.md5()
    with file.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_missing(fetch: Callable[[], T], expected: str, root: Path, path: str, allowed: bool) -> T:
    """Run `fetch` for files that are missing, or say exactly which files were expected where."""
    if not allowed:
        raise fail(f"{path}.root", f"{expected}; they are missing and download is off", str(root))
    try:
        return fetch()
    except DownloadError as error:
        raise fail(
            f"{path}.root", f"{expected}; they are missing and the download failed: {error}", str(root)
        ) from None
