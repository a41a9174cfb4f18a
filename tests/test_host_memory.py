"""reuse_freed_host_memory: after it, a 64 MB tensor comes from the heap, not a fresh mmap
(glibc's own accounting, mallinfo2, read in a clean process: mmapped bytes and the heap's
bytes in use)."""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT

PROBE = """
import ctypes, ctypes.util, torch
from blockspec.train.host_memory import reuse_freed_host_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
def mapped_and_heap_mb(): info = libc.mallinfo2(); return info.hblkhd >> 20, info.uordblks >> 20
before = mapped_and_heap_mb()
first = torch.ones(64 << 18)   # 64 MB
with_default = mapped_and_heap_mb()
applied = reuse_freed_host_memory()
second = torch.ones(64 << 18)
print((before, with_default, applied, mapped_and_heap_mb()))
"""


def _has_glibc_mallinfo2() -> bool:
    name = ctypes.util.find_library("c")
    return sys.platform.startswith("linux") and name is not None and hasattr(ctypes.CDLL(name), "mallinfo2")


@pytest.mark.skipif(not _has_glibc_mallinfo2(), reason="glibc's malloc (mallinfo2) only")
def test_large_blocks_come_from_the_heap_after_the_switch() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (mapped0, heap0), (mapped1, heap1), applied, (mapped2, heap2) = ast.literal_eval(result.stdout)
    assert mapped1 - mapped0 >= 64 and heap1 - heap0 < 64  # glibc's default: its own mmap
    assert applied
    assert mapped2 == mapped1 and heap2 - heap1 >= 64  # after: heap memory in use grows instead (the heap's
    # own size may grow by less, where it had free room at its top already)
