"""Ctrl-C during training, taken where the loop can stop cleanly rather than wherever it lands.

Python raises KeyboardInterrupt at whatever bytecode the main thread is running. Inside a
finaliser (a figure or tensor being collected) the exception is printed and dropped, so the
run trains on; inside a library's callback it can come back as another exception type, so
the run ends as an internal error. Both were seen on the development machine under load: the
test suite's Ctrl-C run once exited 70 instead of 130, and 1 of about 50 runs interrupted in a
loop trained on after Ctrl-C. While training, Ctrl-C therefore only records the request; the loop raises
KeyboardInterrupt itself after the current step (or evaluation). A second Ctrl-C interrupts
at once, as usual.

SIGTERM, how `docker stop`, Kubernetes, SLURM and `kill` end a job, is taken the same way
(where its handler is still the default, which ends the process at once): the run stops
after the current step with its message, and exits with 143 rather than 130.

Under torchrun every process gets the signal, but not at the same step: one that stopped
alone would leave the others waiting at their next gradient all-reduce. The processes
therefore decide together (`agree`), every few steps and at each epoch's boundaries.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

AGREE_EVERY = 16
"""Steps between the processes' joint decisions: one small all-reduce and host sync each,
and a Ctrl-C takes effect at most this many steps late."""


class _Outside:
    """Stops outside the training loop: the signals `stop_at_once` took (where Python drops the
    exception, inside a finaliser, the loop's first check or the run's end still stops the run),
    and whether a stop is already on its way, after which a further signal is only recorded: it
    would cut the report of the first one short."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.pending: list[int] = []
        self.raised = False


_outside = _Outside()


class StopRequested(KeyboardInterrupt):
    """The run's stop after a signal: `signum` is SIGINT (Ctrl-C) or SIGTERM; `alone`: this
    process stopped without the others (under torchrun they are still training, and would wait
    for it at a meeting point forever)."""

    def __init__(self, signum: int, alone: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.alone = alone
        _outside.raised = True


class StopCheck:
    """The check the loop calls after each step, and with `boundary=True` between epochs: it
    raises StopRequested once a stop was asked for here (or, with `agree`, on any process)."""

    def __init__(self, agree: Callable[[bool], bool] | None) -> None:
        self.agree = agree
        self.received: list[int] = []  # the signals asked to stop, in order
        self.steps = 0
        # torchrun killed (SIGKILL) cannot end its processes: they would train on, orphans holding the run
        self.parent = os.getppid() if agree is not None else None

    def __call__(self, boundary: bool = False) -> None:
        if self.parent is not None and not self.received and os.getppid() != self.parent:
            self.received.append(signal.SIGTERM)  # stopped as torchrun's own SIGTERM would have
        if self.agree is None:
            stop = bool(self.received)
        else:
            self.steps += not boundary
            if not boundary and self.steps % AGREE_EVERY:
                return
            stop = self.agree(bool(self.received))
        if stop:
            raise StopRequested(self.received[0] if self.received else signal.SIGINT)  # another process's Ctrl-C

    def raise_if_requested(self) -> None:
        """This process's stop, now, without asking the others: for a failure the signal itself
        caused (a DataLoader worker ended by a SIGTERM sent to the whole process group)."""
        if self.received:
            raise StopRequested(self.received[0], alone=self.agree is not None)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            raise StopRequested(signum, alone=self.agree is not None)  # a second request: at once
        self.received.append(signum)


_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


def _stop_at_once(signum: int, frame: FrameType | None) -> None:
    _outside.pending.append(signum)
    if not _outside.raised:
        raise StopRequested(signum)


@contextmanager
def _handled(handler: Callable[[int, FrameType | None], None] | signal.Handlers) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM inside the block, in the main thread, where their
    handlers are Python's defaults or blockspec's own (not where the signal is ignored, or
    taken by an embedding program); what was there before is put back."""
    previous = {signum: signal.getsignal(signum) for signum in _DEFAULTS}
    installed = [
        signum for signum, default in _DEFAULTS.items()
        if threading.current_thread() is threading.main_thread() and previous[signum] in (default, _stop_at_once)
    ]
    for signum in installed:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum in installed:
            signal.signal(signum, previous[signum])


@contextmanager
def stop_at_once() -> Iterator[None]:
    """Outside the training loop (loading the data, building, the final records) a stop has no
    step to wait for: SIGINT and SIGTERM raise StopRequested at once, so SIGTERM, like Ctrl-C,
    ends the run with a message rather than the process without one."""
    _outside.reset()
    try:
        with _handled(_stop_at_once):
            yield
    finally:
        _outside.reset()


def raise_if_pending() -> None:
    """At the run's end: a stop `stop_at_once` took whose exception was dropped stops it now."""
    if _outside.pending:
        raise StopRequested(_outside.pending[0])


@contextmanager
def ctrl_c_between_steps(agree: Callable[[bool], bool] | None = None) -> Iterator[StopCheck]:
    """Yields the loop's StopCheck. With `agree` (several processes, each calling the check in
    the same sequence) it raises on every process or on none: `agree` turns this process's
    request into whether any process has one, and is called at each boundary and every
    `AGREE_EVERY`th step. Outside the main thread, or where a signal's handler is neither
    Python's default nor `stop_at_once`'s (ignored, or taken by the embedding program), the
    signal is left alone, but the joint decisions still happen."""
    check = StopCheck(agree)
    check.received.extend(_outside.pending)  # a stop before the loop whose exception was dropped
    _outside.pending.clear()
    with _handled(check.on_signal):
        yield check
