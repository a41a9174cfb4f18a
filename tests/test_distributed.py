"""`torchrun --nproc_per_node 2 -m blockspec train …` on two CPU processes (gloo)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from blockspec.data import ImageData, make_loaders
from blockspec.data.device_loader import DeviceLoader
from blockspec.train.data_path import seed_epoch
from tests.cli_helpers import metrics, start_torchrun, wait_for_epochs, without_timing
from tests.synthetic import tiny_spec_text, write_colour_folder

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (torchrun starts each worker in a session of its
    own, so its process group does not hold them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, index = [pid], 0
    while index < len(tree):
        tree += children.get(tree[index], [])
        index += 1
    return tree


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once, as a machine crash would."""
    for member in _descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _worker(pid: int, rank: int) -> int:
    """The process of `rank` among torchrun `pid`'s workers."""
    for member in _descendants(pid):
        with contextlib.suppress(OSError):
            if f"\0RANK={rank}\0" in "\0" + Path(f"/proc/{member}/environ").read_text() and member != pid:
                return member
    raise AssertionError(f"no worker of rank {rank}")


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-8000:]  # a worker's own error sits above torchrun's report
    return out


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(spec, run dir, stdout) of one uninterrupted two-process run."""
    root = tmp_path_factory.mktemp("ddp")
    spec = root / "tiny.yaml"
    text = tiny_spec_text(write_colour_folder(root / "data"), epochs=EPOCHS, extra="  batch_size: 4")
    spec.write_text(text.replace("  batch_size: 16\n", ""))  # many small steps: slow enough to kill mid-run
    out = root / "straight"
    return spec, out, _finish(start_torchrun([str(spec), "--out", str(out)], root))


def test_two_processes_train_one_run(ddp_run: tuple[Path, Path, str]) -> None:
    spec, out, stdout = ddp_run
    assert "× 2 processes (DDP)" in stdout and "96 train" in stdout
    assert stdout.count(f"epoch   {EPOCHS}/{EPOCHS}") == 1  # rank 1 stays silent
    history = metrics(out)
    assert [r["epoch"] for r in history] == list(range(1, EPOCHS + 1))
    assert all(r["images_per_second"] > 0 for r in history)
    assert history[-1]["test_acc"] >= 75
    last = torch.load(out / "last.pt", weights_only=True)
    assert (last["epoch"], last["processes"]) == (EPOCHS, 2)
    assert json.loads((out / "summary.json").read_text())["processes"] == 2
    assert not (spec.parent / "runs").exists()  # no second run directory from rank 1


# registered before blockspec runs, so it runs after blockspec's own exit handlers
_COUNT_AT_EXIT = """
import atexit, gc, sys
import torch
atexit.register(lambda: print("DDP wrappers left at exit:", sum(
    isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects()), file=sys.stderr))
from blockspec.cli import main
main()
"""


def test_no_ddp_wrapper_is_left_for_interpreter_shutdown(ddp_run: tuple[Path, Path, str]) -> None:
    """DDP's wrapper sits in a reference cycle: left to the interpreter's shutdown, it (and
    the gloo process group it holds) was freed there, and about one run in ten ended with a
    worker aborting ("terminate called without an active exception") after a finished run."""
    spec, straight, _ = ddp_run
    probe = spec.parent / "count_at_exit.py"
    probe.write_text(_COUNT_AT_EXIT)
    process = start_torchrun([str(spec), "--out", str(straight.parent / "exit"), "--set", "train.epochs=1"], spec.parent,
                        program=(str(probe),))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-8000:]  # a run that trained: no run, no wrapper to leave
    assert err.count("DDP wrappers left at exit: 0") == 2, err[-3000:]


def test_a_run_is_resumed_only_in_as_many_processes_as_it_trained_in(
    ddp_run: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Resumed alone, a two-process run went on at another global batch, without a word,
    wherever the step count per epoch came out the same."""
    from tests.cli_helpers import run_cli

    _, straight, _ = ddp_run
    run_dir = straight.parent / "alone"
    run_dir.mkdir()
    last = torch.load(straight / "last.pt", weights_only=True)
    last.update(epoch=EPOCHS - 1, history=last["history"][:-1], steps_per_epoch=2 * last["steps_per_epoch"])
    torch.save(last, run_dir / "last.pt")
    (run_dir / "spec.yaml").write_text(last["spec"])
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--device", "cpu", "--workers", "0"], capsys)
    assert code == 2 and ("the run trained in 2 processes and this is one process; resume it in as many as it "
                          "started with (on one machine: torchrun --nproc-per-node 2 -m blockspec train --resume …)") in err, err


@pytest.mark.parametrize("command", [["check", str(ROOT / "architectures/flagship.yaml")], ["eval", "--checkpoint", "x"]])
def test_a_command_other_than_train_is_refused_under_torchrun(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process ran it whole: `eval -f json` printed two documents back to back."""
    from tests.cli_helpers import run_cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    if command[0] == "check":  # a WORLD_SIZE without a RANK, as a batch system may export for a job, is no launch
        assert run_cli(command, capsys)[0] == 0
    for rank, says in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        code, out, err = run_cli(command, capsys)
        assert code == 2 and not out and err.count(f"only `train` runs in several processes; run `blockspec "
                                                   f"{command[0]}` in one, without torchrun") == says, err
    assert run_cli([command[0], "--help"], capsys)[0] == 0  # help is help anywhere


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc to find the workers")
def test_killed_ddp_run_resumes_to_the_uninterrupted_result(ddp_run: tuple[Path, Path, str]) -> None:
    """Every process SIGKILLed after epoch 1, then `torchrun … --resume`: same metrics."""
    spec, straight, _ = ddp_run
    run_dir = spec.parent / "killed"
    process = start_torchrun([str(spec), "--out", str(run_dir)], spec.parent)
    wait_for_epochs(run_dir, 1, process, limit=240)
    _kill_tree(process.pid)
    process.communicate()
    assert 1 <= len(metrics(run_dir)) < EPOCHS
    _finish(start_torchrun(["--resume", str(run_dir)], spec.parent))
    assert without_timing(metrics(run_dir)) == without_timing(metrics(straight))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc to find the workers")
def test_ctrl_c_reaching_one_process_stops_every_process_at_the_same_step(tmp_path: Path) -> None:
    """SIGINT to rank 1 alone, as when the signal reaches the workers steps apart: rank 0
    must stop with it (alone, rank 1 would leave rank 0 waiting at an all-reduce), report
    the run's last finished epoch once, and leave last.pt at that epoch."""
    run_dir, process = _long_run(tmp_path)
    os.kill(_worker(process.pid, 1), signal.SIGINT)
    _, err = process.communicate(timeout=120)
    finished = torch.load(run_dir / "last.pt", weights_only=True)["epoch"]
    assert 1 <= finished == len(metrics(run_dir)) < 200
    assert err.count("interrupted; ") == 1 and "internal error" not in err, err[-3000:]
    assert f"last.pt holds epoch {finished}. Resume with: torchrun --nproc-per-node 2 -m blockspec train --resume" in err


def _long_run(tmp_path: Path, *options: str) -> tuple[Path, subprocess.Popen]:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=200, extra="  batch_size: 4")
                    .replace("  batch_size: 16\n", ""))
    run_dir = tmp_path / "run"
    process = start_torchrun([str(spec), "--out", str(run_dir), *options], tmp_path)
    wait_for_epochs(run_dir, 1, process, limit=240)
    return run_dir, process


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc to find the workers")
def test_an_error_one_process_meets_alone_is_said_by_that_process(tmp_path: Path) -> None:
    """Rank 1's DataLoader worker ended by the system: rank 1's message, what to do, was never
    printed (rank 0 speaks for the run), and rank 0's sent the user to it ("another process of
    this torchrun job ended first … its own message, or torchrun's, says why")."""
    run_dir, process = _long_run(tmp_path, "--workers", "1", "--loader", "albumentations")
    try:
        rank_1 = _worker(process.pid, 1)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:  # again if one ended as its epoch did
            for loader_worker in _descendants(rank_1)[1:]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(loader_worker, signal.SIGKILL)
            time.sleep(0.2)
        _, err = process.communicate(timeout=120)
    finally:
        _kill_tree(process.pid)
    assert re.search(r"^error: \(rank 1\) --workers = 1: a DataLoader worker process ended in epoch \d+ \(.*; if the "
                     r"system ended it, the memory ran out: free some, then `torchrun --nproc-per-node 2 -m blockspec "
                     rf"train --resume {re.escape(str(run_dir))}`", err, re.MULTILINE), err[-3000:]
    assert err.count("a DataLoader worker process ended") == 1, err[-3000:]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc to find the workers")
def test_the_processes_stop_when_torchrun_is_killed(tmp_path: Path) -> None:
    """torchrun SIGKILLed cannot end its workers: they trained on as orphans, holding the run."""
    run_dir, process = _long_run(tmp_path)
    workers = [_worker(process.pid, rank) for rank in (0, 1)]
    process.kill()
    try:  # orphaned workers that train on hold its output pipes: a regression must fail, not hang
        process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        for pid in workers:
            _kill_tree(pid)
        raise AssertionError("the workers trained on") from None
    deadline = time.monotonic() + 120
    while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
              for pid in workers):
        assert time.monotonic() < deadline, "the workers trained on"
        time.sleep(0.2)
    finished = torch.load(run_dir / "last.pt", weights_only=True)["epoch"]
    assert 1 <= finished == len(metrics(run_dir)) < 200


def _epoch_rows(loader, epoch: int, rank: int) -> list[int]:
    seed_epoch(0, epoch, loader, rank)
    return [int(label) for _, labels in loader for label in labels]


def _data(count: int) -> ImageData:
    images = np.zeros((count, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64)  # a label names its row
    return ImageData(images, labels, images[:2], labels[:2], tuple("c" * count), (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("path", ["batched", "dataloader"])
def test_ranks_split_each_epoch_and_the_split_changes(path: str) -> None:
    """Like DistributedSampler: the two shares of an epoch cover every image (one padded
    repeat for an odd count), and an image does not stay on the same rank every epoch."""
    data = _data(21)

    def loader(rank: int):
        if path == "batched":
            return DeviceLoader(data.train_images, data.train_labels, 4, torch.device("cpu"), None,
                                data.mean, True, 0, shard=(rank, 2))
        return make_loaders(data, None, 4, 0, 0, False, shard=(rank, 2))[0]

    shares = {epoch: [_epoch_rows(loader(rank), epoch, rank) for rank in (0, 1)] for epoch in (1, 2)}
    for first, second in shares.values():
        assert len(first) == len(second) == 11
        assert sorted(set(first) | set(second)) == list(range(21))
    assert set(shares[1][0]) != set(shares[2][0])


def test_a_problem_every_process_meets_is_said_once(tmp_path: Path) -> None:
    """Each rank printed the same error, before torchrun's own report."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec_text(write_colour_folder(tmp_path / "data"), epochs=1))
    process = start_torchrun([str(spec), "--init-from", str(tmp_path / "missing.pt")], tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert err.count("error: --init-from = ") == 1, err[-3000:]


def test_only_a_lost_peers_signs_count_as_another_process_ending() -> None:
    """Any gloo or NCCL error was taken for one, this process's own out-of-memory included."""
    import torch.distributed as dist

    from blockspec.train.distributed import another_process_ended

    assert another_process_ended(RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]"))
    assert another_process_ended(dist.DistBackendError("NCCL error in: x, remote process exited or there was a network error"))
    assert not another_process_ended(RuntimeError("NCCL error in: x, unhandled cuda error, out of memory"))


def test_the_resume_hint_names_the_nodes_of_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from blockspec.train.distributed import torchrun_command

    assert torchrun_command(2) == "torchrun --nproc-per-node 2 -m blockspec"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert torchrun_command(8) == "torchrun --nnodes 2 --nproc-per-node 4 -m blockspec"


@pytest.mark.parametrize(("requested", "cuda", "chosen"), [
    ("auto", True, "cuda:1"), ("cuda", True, "cuda:1"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("cpu", False, "cpu"),
])
def test_each_process_takes_its_own_gpu_or_the_cpu(
    monkeypatch: pytest.MonkeyPatch, requested: str, cuda: bool, chosen: str
) -> None:
    """`auto` on a Mac meant MPS in every process, which gloo cannot reduce over."""
    from blockspec.train.distributed import Ranks, device_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device_for(requested, Ranks(rank=1, world=2, local_rank=1)) == chosen
    assert device_for(requested, Ranks()) == requested  # one process: as asked


def test_one_gpu_named_for_every_process_of_a_machine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process on cuda:1: NCCL's "Duplicate GPU detected"; one process a machine (a job
    over nodes) may name its GPU. MPS is refused however the processes are spread."""
    from blockspec.errors import SpecError
    from blockspec.train.distributed import Ranks, device_for

    ranks = Ranks(rank=0, world=2, local_rank=0)
    with pytest.raises(SpecError, match=r"^--device = 'cuda:1': names one device for all 2 processes on this machine: "
                                        r"under torchrun each takes its own GPU with --device cuda \(or auto\)"):
        device_for("cuda:1", ranks)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # torchrun --nnodes 2 --nproc-per-node 1
    assert device_for("cuda:1", ranks) == "cuda:1"
    for mps in ("mps", "mps:0"):
        with pytest.raises(SpecError, match=rf"^--device = '{mps}': under torchrun the processes reduce over gloo, "
                                            r"which cannot take MPS tensors"):
            device_for(mps, ranks)


def test_gpus_reduce_over_gloo_where_torch_has_no_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows builds of torch have no NCCL: torchrun on their GPUs ended as a bug in blockspec."""
    import torch.distributed as dist

    from blockspec.train.distributed import backend_for

    assert backend_for(torch.device("cpu")) == "gloo"
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    assert backend_for(torch.device("cuda", 1)) == "nccl"
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    assert backend_for(torch.device("cuda", 1)) == "gloo"
