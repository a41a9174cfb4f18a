"""Names read from the file system, as text every output can hold."""

from __future__ import annotations


def readable_name(name: str) -> str:
    """A file or folder name with any bytes that are not UTF-8 (which Python reads as lone
    surrogates, refused by plots, JSON and terminals) written as escapes such as `caf\\xe9`."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
