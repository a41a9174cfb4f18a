"""Unpickling that can rebuild numpy arrays and nothing else.

CIFAR ships as pickles, and a pickle may name any importable callable, so a downloaded or
shared file could run code when loaded. This unpickler resolves only the handful of numpy
globals an ndarray needs; every other global is refused before it is looked up.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from blockspec.errors import fail


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for `_codecs.encode`, which protocol-2 pickles use to store bytes objects."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


_NDARRAY = object()
"""What `numpy.ndarray` resolves to: numpy's pickles only pass the class to `_reconstruct`;
called itself, it would allocate any shape a few bytes ask for (a 193-byte pickle, 3 GB)."""


def _empty_array(subtype: object, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """numpy's `_reconstruct` as its own pickles call it: an empty ndarray, which the pickle's
    state then fills with data of the size it holds."""
    if subtype is not _NDARRAY or tuple(shape) != (0,):
        raise pickle.UnpicklingError("refusing an array built other than numpy pickles build it")
    return _RECONSTRUCT(np.ndarray, (0,), dtype)


_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The globals numpy's own pickles reference, resolved from live objects, not from names."""
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    scalar = np.int64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x spell the module differently
        allowed[(f"{core}.multiarray", "_reconstruct")] = _empty_array
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


_ALLOWED = _allowed_globals()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_pickle(file: Path, path: str) -> Any:
    """Unpickle `file` (Python 2 byte strings kept as bytes); SpecError if unsafe or broken."""
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise fail(path, f"cannot read {file}: {error.strerror}", str(file)) from None
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001 - a corrupt pickle can raise almost anything
        raise fail(
            path,
            f"{file} is not a valid data pickle ({error}); only numpy arrays, lists, dicts, "
            "numbers and strings are accepted",
            str(file),
        ) from None
