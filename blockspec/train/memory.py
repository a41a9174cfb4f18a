"""Peak memory of the training process, recorded with every epoch."""

from __future__ import annotations

import resource
import sys

import torch

from blockspec.train.device import DeviceInfo


def memory_peaks(info: DeviceInfo) -> dict[str, float | None]:
    """This process's peak resident host memory and peak allocated GPU memory so far, in MB."""
    gpu = round(torch.cuda.max_memory_allocated(info.device) / 2**20, 1) if info.is_cuda else None
    return {"peak_host_memory_mb": round(_peak_rss_mb(), 1), "peak_gpu_memory_mb": gpu}


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
