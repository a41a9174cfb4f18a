"""The run directory on disk: created fresh, never reused silently, held by one run at a
time, and checked for room.

A full disk must be reported before training starts, not after an epoch of work is lost;
and if the disk fills up later, the message says which epoch last.pt still holds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from blockspec.atomic import is_partial_write, remove_partial_writes
from blockspec.errors import Problem, SpecError, fail

PLOTS_AND_METRICS_BYTES = 4 * 2**20  # curves, misclassified and confusion PNGs, metrics files
LOCK_FILE = ".blockspec.lock"
WRITE_PROBE = ".write-test"  # written and removed when a run takes its directory
_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)  # not on Windows, where links need privileges to make


_WINDOWS_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                              *(f"{port}{n}" for port in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³"))})


def windows_folder_problem(name: str) -> str | None:
    """Why Windows cannot make a folder of this name, or None: it refuses <>"|?* in names, drops
    a trailing dot or space (`tiny.` would be runs\\tiny) and reserves its device names, whatever
    the extension. (What every system refuses, `/`, `\\`, `:`, the spec's `name` refuses.)"""
    if any(character in name for character in '<>"|?*'):
        return 'holds one of < > " | ? *, which Windows refuses in folder names'
    if name.endswith((".", " ")):
        return "ends in a dot or a space, which Windows drops from folder names"
    if name.split(".")[0].strip().upper() in _WINDOWS_DEVICES:
        return "is a device name of Windows (CON, PRN, AUX, NUL, COM1–9, LPT1–9), which no folder may have"
    return None


def prepare_run_dir(out: Path | None, name: str, held: contextlib.ExitStack) -> Path:
    """A new, writable run directory, held (`hold_run_dir`) until `held` closes; an existing
    non-empty one is never reused silently."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / name / stamp
        suffix = 1
        while out.exists():
            out = Path("runs") / name / f"{stamp}-{suffix}"
            suffix += 1
    check_run_dir_free(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        held.enter_context(hold_run_dir(out))
        check_run_dir_free(out)  # again, held now: another run may have started here since
        probe = out / WRITE_PROBE  # created here or refused: a link in its place is never written through
        probe.unlink(missing_ok=True)  # a killed run's
        with os.fdopen(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW, 0o644), "wb") as file:
            file.write(b"0" * 65536)  # a file object: a short write on a full disk raises, as os.write's would not
        probe.unlink()
    except OSError as error:
        raise fail("--out", f"cannot write there ({error.strerror})", str(out)) from None
    return out


@contextlib.contextmanager
def hold_run_dir(run_dir: Path, flag: str = "--out") -> Iterator[None]:
    """Keep a second run or resume from writing into `run_dir` while this one does: their
    checkpoints and records would interleave. The lock is the operating system's, so a killed
    run leaves nothing held. Where there is no `fcntl` (Windows), runs are not locked. `flag`
    names the option that chose the directory, for the refusal."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:  # a link in the lock's place is not followed: the run would create or append to its target
        descriptor = os.open(run_dir / LOCK_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NO_FOLLOW, 0o644)
    except OSError as error:
        link = "; a link is there: remove it" if error.errno == errno.ELOOP else ""
        raise fail(flag, f"cannot hold its {LOCK_FILE} ({error.strerror}{link})", str(run_dir)) from None
    with os.fdopen(descriptor, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise fail(flag, "another blockspec run is writing to this run directory", str(run_dir)) from None
        remove_partial_writes(run_dir)  # held: no other run writes here
        yield


def check_run_dir_free(out: Path) -> None:
    """Refuse, before any slow work, to reuse a run directory that holds something besides
    what a run killed before its first checkpoint leaves: the lock, the write probe, a
    half-written file (a run told to start again must be able to)."""
    if out.exists() and not out.is_dir():
        raise fail("--out", "is a file, not a run directory; choose another --out", str(out))
    if out.exists() and any(not _left_by_a_killed_run(path) for path in out.iterdir()):
        resume = f"continue it with `--resume {out}` or " if (out / "last.pt").is_file() else ""
        raise fail("--out", f"the folder already exists and is not empty; {resume}choose another --out", str(out))


def _left_by_a_killed_run(path: Path) -> bool:
    """The lock, the write probe or a half-written file, each a plain file (a link in their
    place is someone else's)."""
    return not path.is_symlink() and (path.name in (LOCK_FILE, WRITE_PROBE) or is_partial_write(path))


def checkpoint_dir(resume: Path) -> Path:
    return resume if resume.is_dir() else resume.parent


def check_room_for_run(run_dir: Path, command: str) -> None:
    """After the first last.pt: is there room for best.pt and for the temporary copy an atomic
    save of last.pt writes beside the old one, plus plots and metrics? `command` starts the
    run again (blockspec, or torchrun's line)."""
    checkpoint = (run_dir / "last.pt").stat().st_size
    needed = 2 * checkpoint + PLOTS_AND_METRICS_BYTES
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise fail(
            "--out",
            f"only {free / 2**20:.1f} MB free there and the run needs about {needed / 2**20:.1f} MB "
            f"more (a checkpoint is {checkpoint / 2**20:.1f} MB); free some space, then continue "
            f"with `{command} train --resume {run_dir}`",
            str(run_dir),
        )


def _remedy(error: OSError) -> str:
    """What to do about a failed write, by its cause: not every one is a full disk."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space"
    if isinstance(error, PermissionError):
        return ("close any program holding one of the run's files open (on Windows a viewer or Excel locks the file "
                "it shows) and check the folder is writable")
    return "fix the cause"


@contextlib.contextmanager
def disk_errors_reported(run_dir: Path, action: str, kept_epoch: int | None, command: str) -> Iterator[None]:
    """An OSError while writing the run (disk full, directory removed) becomes a spec-style
    error that says what last.pt still holds — saves are atomic, so it is intact. `kept_epoch`
    is None before the first checkpoint exists; `command` starts the run again."""
    try:
        yield
    except OSError as error:
        remedy = _remedy(error)
        then = (
            f"{run_dir / 'last.pt'} still holds epoch {kept_epoch}: {remedy}, then "
            f"`{command} train --resume {run_dir}`"
            if kept_epoch is not None
            else f"nothing was trained yet: {remedy}, then start again with an empty --out"
        )
        raise fail("--out", f"could not {action} ({error.strerror or error}); {then}", str(run_dir)) from None


def worker_death_error(error: RuntimeError, epoch: int, run_dir: Path, kept_epoch: int, workers: int,
                       command: str) -> SpecError:
    """What a user can do about a worker that ended: the system's, not blockspec's, doing
    (it was said as an internal error, a bug in blockspec). `command` starts the run again
    (blockspec, or torchrun's line); under torchrun the process whose worker ended says it."""
    said = str(error).strip().rstrip(".")  # torch's "… is killed by signal: Killed. "
    if "shared memory" in said:  # torch's SIGBUS: the batches pass through /dev/shm
        said = said.split(". ")[0]
        cause = ("the workers ran out of shared memory (/dev/shm, 64 MB in a container started without a larger "
                 "--shm-size): raise its limit")
        other = "a new run with --workers 0 needs none"
    else:
        cause = "if the system ended it, the memory ran out: free some"
        other = "a new run with fewer --workers needs less"
    return SpecError(Problem("--workers", f"a DataLoader worker process ended in epoch {epoch} ({said}); {cause}, "
                             f"then `{command} train --resume {run_dir}` ({run_dir / 'last.pt'} holds epoch {kept_epoch}; "
                             f"{other})", workers), alone=True)
