"""How much host memory this process could still take: what the kernel could hand out, capped
by the room left under a container's memory limit (its cgroup), which the kernel's own count
(MemAvailable) does not see: past that limit the container is killed, however much the
machine has free."""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NO_LIMIT = 2**60  # cgroup v1 writes "no limit" as a page-rounded 2⁶³−1


def available_memory(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """Bytes: MemAvailable (page cache included) or else the physical memory, capped by the
    cgroup's room; None where none of them can be read."""
    candidates = [amount for amount in (_meminfo_available() or _physical_memory(), cgroup_room(cgroup_root))
                  if amount is not None]
    return min(candidates, default=None)


def cgroup_room(root: Path = CGROUP_ROOT) -> int | None:
    """The limit of this process's memory cgroup less what it holds that cannot be reclaimed
    (its usage less its inactive file cache, as `docker stats` counts it); None without a
    limit. The files are the ones a container sees of its own cgroup: v2's memory.max, v1's
    memory/memory.limit_in_bytes."""
    for folder, limit_file, usage_file, inactive_key in (
        (root, "memory.max", "memory.current", "inactive_file"),
        (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ):
        limit = _read_int(folder / limit_file)
        usage = _read_int(folder / usage_file)
        if limit is None or usage is None:
            continue
        if limit >= NO_LIMIT:
            return None
        inactive = _stat_field(folder / "memory.stat", inactive_key) or 0
        return max(limit - max(usage - inactive, 0), 0)
    return None


def _read_int(path: Path) -> int | None:
    """The file's number; None where it is missing, unreadable or not a number (v2's "max")."""
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _stat_field(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
