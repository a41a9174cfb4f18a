"""Ctrl-C during training, taken where the loop can stop cleanly rather than wherever it lands.

Python raises KeyboardInterrupt at whatever bytecode the main thread is running. Inside a
finaliser (a figure or tensor being collected) the exception is printed and dropped, so the
run trains on; inside a library's callback it can come back as another exception type, so
the run ends as an internal error. Both were seen on the development machine under load: the
test suite's Ctrl-C run once exited 70 instead of 130, and 1 of about 50 runs interrupted in a
loop trained on after Ctrl-C. While training, Ctrl-C therefore only records the request; the loop raises
KeyboardInterrupt itself after the current step (or evaluation). A second Ctrl-C interrupts
at once, as usual.

Under torchrun every process gets the signal, but not at the same step: one that stopped
alone would leave the others waiting at their next gradient all-reduce. The processes
therefore decide together (`agree`), every few steps and at each epoch's boundaries.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

AGREE_EVERY = 16
"""Steps between the processes' joint decisions: one small all-reduce and host sync each,
and a Ctrl-C takes effect at most this many steps late."""


@contextmanager
def ctrl_c_between_steps(
    agree: Callable[[bool], bool] | None = None,
) -> Iterator[Callable[..., None]]:
    """Yields the check the loop calls after each step, and with `boundary=True` between
    epochs; it raises KeyboardInterrupt once Ctrl-C was pressed. With `agree` (several
    processes, each calling the check in the same sequence) it raises on every process or on
    none: `agree` turns this process's request into whether any process has one, and is
    called at each boundary and every `AGREE_EVERY`th step. Outside the main thread, or where
    SIGINT is not Python's default handler (ignored, or taken by the embedding program),
    Ctrl-C is left alone, but the joint decisions still happen."""
    requested = threading.Event()
    steps = 0
    installed = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    def check(boundary: bool = False) -> None:
        nonlocal steps
        if agree is None:
            stop = requested.is_set()
        else:
            steps += not boundary
            if not boundary and steps % AGREE_EVERY:
                return
            stop = agree(requested.is_set())
        if stop:
            raise KeyboardInterrupt

    if installed:
        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield check
    finally:
        if installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
