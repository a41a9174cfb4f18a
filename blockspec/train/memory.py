"""Peak memory of the training process, recorded with every epoch."""

from __future__ import annotations

import sys

import torch

from blockspec.train.device import DeviceInfo

try:
    import resource
except ImportError:  # Windows: Python's getrusage exists on Unix only
    resource = None


def memory_peaks(info: DeviceInfo) -> dict[str, float | None]:
    """This process's peak resident host memory (None where the platform gives no peak) and
    peak allocated GPU memory so far, in MB."""
    gpu = round(torch.cuda.max_memory_allocated(info.device) / 2**20, 1) if info.is_cuda else None
    host = _peak_rss_mb()
    return {"peak_host_memory_mb": None if host is None else round(host, 1), "peak_gpu_memory_mb": gpu}


def _peak_rss_mb() -> float | None:
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
