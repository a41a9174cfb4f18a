"""Keep freed host memory for reuse while training on a CPU.

glibc serves every allocation above 32 MB (the most its adaptive threshold reaches) with a
fresh mmap and unmaps it on free, so each such activation or gradient buffer is faulted in
and zeroed by the kernel again at every step. At batch 512 the flagship's 32×32 maps are
67 MB each: batch norm, activations and additions then cost several times their batch-128
time per image (benchmarks/step_profile.py, docs/benchmarks.md). Serving them from the heap
and not trimming it keeps those pages mapped; this is what jemalloc or tcmalloc, which
PyTorch's CPU tuning guide recommends preloading, do by design.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_MAX = -4
# mallopt takes an int, so the largest trim threshold is 2 GB of free heap top: far above
# what one training step frees at once.
LARGEST_TRIM_THRESHOLD = 2**31 - 1


def reuse_freed_host_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and never give the heap back;
    True where it took effect (Linux with glibc), False elsewhere, where nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):  # musl has no tunable mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD))
