"""Data-parallel training under `torchrun`: one process per device, rank 0 writes.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op,
so a plain `blockspec train` runs exactly as before.
"""

from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from blockspec.errors import fail
from blockspec.launch import launched_rank


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_environment() -> Ranks:
    """This process's place among torchrun's (or any launcher's that sets RANK beside
    WORLD_SIZE: `blockspec.launch`)."""
    rank = launched_rank()
    if rank is None:
        return Ranks()
    local = os.environ.get("LOCAL_RANK", "0")
    return Ranks(rank, int(os.environ["WORLD_SIZE"]), int(local) if local.isdigit() else 0)


def resume_command(ranks: Ranks) -> str:
    """The command that starts this run again: torchrun's line under torchrun, else blockspec."""
    return torchrun_command(ranks.world) if ranks.active else "blockspec"


def torchrun_command(processes: int) -> str:
    """How to start `processes` processes again, as torchrun's options say it (several nodes
    where this job's LOCAL_WORLD_SIZE divides them)."""
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    if local.isdigit() and 0 < int(local) < processes and processes % int(local) == 0:
        return f"torchrun --nnodes {processes // int(local)} --nproc-per-node {local} -m blockspec"
    return f"torchrun --nproc-per-node {processes} -m blockspec"


def device_for(requested: str, ranks: Ranks) -> str:
    """Each process takes its own GPU (LOCAL_RANK's); CPU processes share the CPU. `auto`
    never means Apple's MPS here (gloo cannot reduce MPS tensors), and one GPU may not be named
    for every process of a machine (NCCL refuses two processes on one GPU); one process a
    machine may name its GPU."""
    if not ranks.active:
        return requested
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ranks.local_rank}"
    if requested == "auto":
        return "cpu"
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    on_this_machine = int(local) if local.isascii() and local.isdigit() else ranks.world
    if requested.partition(":")[0] == "mps":
        raise fail("--device", "under torchrun the processes reduce over gloo, which cannot take MPS tensors: train "
                   "in one process, or with --device cpu", requested)
    if requested.startswith("cuda:") and on_this_machine > 1:
        raise fail("--device", f"names one device for all {on_this_machine} processes on this machine: under "
                   "torchrun each takes its own GPU with --device cuda (or auto), or all share the CPU with "
                   "--device cpu", requested)
    return requested


def start(ranks: Ranks, device: torch.device) -> None:
    if ranks.active and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend_for(device))
        # the DDP wrapper is held in reference cycles (the session and its step, closures), so
        # without a collection it and the process group it holds outlive the run and are freed
        # while the interpreter shuts down, where a worker aborted in one two-process run in about
        # ten ("terminate called without an active exception"); collected at exit, nothing is
        # left for then (unregistered first: registered once however many groups a process starts)
        atexit.unregister(gc.collect)
        atexit.register(gc.collect)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs where torch has it; gloo on CPUs, and on Windows, whose torch has no
    NCCL (its GPUs' DDP runs over gloo)."""
    return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"


def stop(ranks: Ranks) -> None:
    if ranks.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_over_ranks(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    if not ranks.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def main_decides(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Rank 0's `flag`, on every process: a decision rank 0 takes (from what it records) that
    the others must follow."""
    return sum_over_ranks([float(flag and ranks.main)], ranks, device)[0] > 0


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Whether `flag` is set on any process: a decision every process then takes alike."""
    return sum_over_ranks([float(flag)], ranks, device)[0] > 0


def another_process_ended(error: Exception) -> bool:
    """Whether `error` is a collective operation losing its peer: under torchrun, a process
    that stopped alone (a disk error on rank 0, a kill) leaves the others failing in gloo or
    NCCL, which is not a bug in blockspec. This process's own NCCL failure (out of memory, a
    timeout) is not that."""
    return isinstance(error, dist.DistNetworkError) or (
        isinstance(error, RuntimeError) and any(sign in str(error) for sign in PEER_LOST)
    )


PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",  # gloo's
             "remote process exited", "ncclRemoteError", "closed by remote peer")  # NCCL's
