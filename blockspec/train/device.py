"""Which device to train on, and what it can do (autocast dtype, channels-last, pinning)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from blockspec.errors import fail

DEVICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class DeviceInfo:
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    pin_memory: bool

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self, cache: bool = True) -> contextlib.AbstractContextManager:
        """Autocast to the device's dtype, or nothing; `cache=False` for a CUDA graph capture,
        which must not keep casts of tensors made outside it."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=cache)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on this device, in the memory layout it trains and is evaluated in here:
        training, `eval` and `load_trained` place it alike, so their scores agree."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def describe(self) -> str:
        dtype = str(self.autocast_dtype).removeprefix("torch.") if self.autocast_dtype else "fp32"
        if self.is_cuda:
            return f"cuda ({torch.cuda.get_device_name(self.device)}, {dtype})"
        if self.device.type == "cpu" and self.autocast_dtype is not None:
            dtype += ", depthwise fp32"  # see modules.DepthwiseConv2d
        return f"{self.device.type} ({dtype})"


def pick_device(requested: str, amp: bool = True, channels_last: bool = True, flag: str = "--device") -> DeviceInfo:
    """`auto` prefers CUDA, then Apple's MPS, then the CPU; a named device must exist. `flag`
    is how errors name the choice (`load_trained`'s argument is `device`)."""
    name, colon, index = requested.partition(":")
    if name not in DEVICES or (colon and not (index.isdigit() and name != "auto")):
        raise fail(flag, f"unknown device; allowed: {', '.join(DEVICES)} (or cuda:N)", requested)
    if name == "auto":
        if torch.cuda.is_available():
            requested = "cuda"
        elif torch.backends.mps.is_available():
            requested = "mps"
        else:
            requested = "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise fail(flag, "CUDA was requested but torch sees no CUDA device", requested)
    elif name == "cuda" and index and int(index) >= (count := torch.cuda.device_count()):
        raise fail(flag, f"torch sees {count} CUDA device(s): cuda:0 to cuda:{count - 1}", requested)
    elif name == "mps" and not torch.backends.mps.is_available():
        raise fail(flag, "MPS was requested but is not available", requested)
    device = torch.device(requested)
    if device.type == "cuda":
        if device.index is not None:
            # the current device too: pinned memory, a graph capture's synchronisation and
            # libraries' contexts follow it, and would otherwise take room on GPU 0
            torch.cuda.set_device(device)
        # bf16 needs no loss scaling; older GPUs without it train in fp32 rather than risk
        # fp16 gradients underflowing.
        dtype = torch.bfloat16 if amp and gpu_has_native_bf16(device) else None
        return DeviceInfo(device, dtype, channels_last, pin_memory=True)
    if device.type == "cpu":
        # oneDNN runs convolutions faster channels-last on CPU too, and bf16 faster where the
        # CPU has AVX512-BF16/AMX (elsewhere it is emulated, so it stays off). Depthwise
        # convolutions stay fp32 inside autocast (modules.DepthwiseConv2d): their bf16
        # backward is the slow one (benchmarks/cpu_modes.py).
        dtype = torch.bfloat16 if amp and cpu_has_native_bf16() else None
        return DeviceInfo(device, dtype, channels_last, pin_memory=False)
    return DeviceInfo(device, None, channels_last=False, pin_memory=False)


def graphs_replay_on(info: DeviceInfo) -> bool:
    """Whether the whole step may be captured as a CUDA graph here: NVIDIA's CUDA only. On ROCm
    MIOpen's convolutions are not graph-safe (AMD's graph-safe support list) and HIP's capture
    does not refuse what it cannot replay, so the eager fallback would never be taken."""
    return info.is_cuda and not torch.version.hip


def compile_refusal(info: DeviceInfo) -> str | None:
    """Why `train.compile` is not applied on this device, or None: it is used on CUDA only, and
    Inductor's Triton kernels need compute capability 7.0 (a P100 or GTX 10xx has 6.x, where
    the first step failed inside torch)."""
    if not info.is_cuda:
        return "CUDA only"
    if not torch.version.hip and (capability := torch.cuda.get_device_capability(info.device)) < (7, 0):
        return f"Triton needs compute capability 7.0; this GPU has {capability[0]}.{capability[1]}"
    return None


_ROCM_BF16 = ("gfx908", "gfx90a", "gfx94", "gfx95", "gfx11", "gfx12")  # AMD Instinct MI100 on, RDNA3 on


def gpu_has_native_bf16(device: torch.device) -> bool:
    """True when `device` computes bf16 in hardware: NVIDIA from Ampere (compute capability 8.0)
    on, AMD's architectures with bf16 matrix instructions. torch's `is_bf16_supported()`
    answers for the current device, not this one, and says yes where bf16 tensors can merely
    be stored (a T4 or V100: cuDNN has no bf16 convolutions there) and on every ROCm GPU."""
    if torch.version.hip:
        return torch.cuda.get_device_properties(device).gcnArchName.startswith(_ROCM_BF16)
    return torch.cuda.get_device_capability(device) >= (8, 0)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 in hardware (the probes are private torch API)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return torch.backends.mkldnn.is_available() and any(getattr(torch.cpu, name, lambda: False)() for name in probes)
