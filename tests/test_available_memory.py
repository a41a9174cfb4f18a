"""The memory a container may still take: its cgroup's limit less what it holds, beside the
kernel's MemAvailable (which counts the whole machine)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from blockspec.available_memory import NO_LIMIT, available_memory, cgroup_room
from blockspec.errors import is_out_of_memory

GiB = 2**30


def _files(folder: Path, **contents: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (folder / name.replace("__", ".")).write_text(text + "\n")
    return folder


def test_cgroup_v2_room_is_the_limit_less_the_memory_held_apart_from_inactive_file_cache(tmp_path: Path) -> None:
    _files(tmp_path, memory__max=str(4 * GiB), memory__current=str(3 * GiB),
           memory__stat=f"anon {2 * GiB}\nfile {GiB}\ninactive_file {GiB // 2}")
    assert cgroup_room(tmp_path) == 4 * GiB - (3 * GiB - GiB // 2)


def test_cgroup_v1_room_reads_the_memory_controllers_files(tmp_path: Path) -> None:
    _files(tmp_path / "memory", memory__limit_in_bytes=str(2 * GiB), memory__usage_in_bytes=str(GiB),
           memory__stat=f"cache 100\ntotal_inactive_file {GiB // 4}")
    assert cgroup_room(tmp_path) == 2 * GiB - (GiB - GiB // 4)


def test_no_limit_written_either_way_gives_no_room_to_cap(tmp_path: Path) -> None:
    assert cgroup_room(_files(tmp_path / "v2", memory__max="max", memory__current="12345")) is None
    assert cgroup_room(_files(tmp_path / "v1" / "memory", memory__limit_in_bytes=str(NO_LIMIT + 4096),
                              memory__usage_in_bytes="12345").parent) is None
    assert cgroup_room(tmp_path / "missing") is None


def test_a_container_over_its_limit_has_no_room_and_caps_the_machines_memory(tmp_path: Path) -> None:
    _files(tmp_path, memory__max=str(GiB), memory__current=str(2 * GiB))
    assert cgroup_room(tmp_path) == 0
    assert available_memory(tmp_path) == 0


def test_without_a_cgroup_limit_the_kernels_count_stands(tmp_path: Path) -> None:
    machine = available_memory(tmp_path / "missing")
    assert machine is not None and machine > 0
    _files(tmp_path, memory__max=str(2**50), memory__current="0")
    capped = available_memory(tmp_path)
    assert capped is not None and abs(capped - machine) < 256 * 2**20  # MemAvailable moves a little between reads


def _raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except BaseException as error:  # noqa: BLE001
        return error
    raise AssertionError("it did not raise")


def _bug_in_unallocated_storage() -> None:
    tensor = torch.ones(3)
    tensor.untyped_storage().resize_(0)
    tensor.tolist()


def test_out_of_memory_is_told_from_torchs_and_numpys_own_errors_and_not_from_a_bug() -> None:
    """The command line reports it as the machine's limit (exit 1), not as a bug in blockspec;
    a bug whose words say "unallocated" was taken for one."""
    assert is_out_of_memory(_raised(lambda: torch.empty(2**62, dtype=torch.uint8)))  # the allocator refuses 4 EiB
    assert is_out_of_memory(_raised(lambda: np.empty(2**62, dtype=np.uint8)))
    assert not is_out_of_memory(_raised(_bug_in_unallocated_storage))
