"""Whether a launcher started this process as one of several: torchrun sets WORLD_SIZE and
RANK (and LOCAL_RANK); a WORLD_SIZE alone, as a batch system may export for a whole job, or
one that is not a number, is no such launch. Read from the environment alone: the command
line asks it before anything imports torch."""

from __future__ import annotations

import os


def launched_rank() -> int | None:
    """This process's rank among several, or None."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "")
    return int(rank) if world.isdigit() and int(world) > 1 and rank.isdigit() else None
