"""Ctrl-C (or SIGTERM) while training is taken between steps: the first only records the
request, the loop's check raises it; a second interrupts at once; the default handlers are
back afterwards."""

from __future__ import annotations

import signal

import pytest

from blockspec.train.interrupt import StopRequested, ctrl_c_between_steps
from tests.cli_helpers import python_ctrl_c


def test_first_ctrl_c_waits_for_the_check_second_interrupts_at_once() -> None:
    with python_ctrl_c():
        with ctrl_c_between_steps() as check:
            check()  # nothing asked yet
            signal.raise_signal(signal.SIGINT)  # handled in this thread before raise_signal returns
            with pytest.raises(KeyboardInterrupt):
                check()
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_under_torchrun_stops_its_process_alone() -> None:
    """It stopped this process at once but said the processes stopped together, so the way
    out waited for the others at a barrier while they waited for it at an all-reduce: the
    job hung. (Sent to a worker a few steps apart, not reproducible on time in a test.)"""
    with python_ctrl_c():
        with ctrl_c_between_steps(agree=lambda asked: asked) as check:
            signal.raise_signal(signal.SIGINT)
            with pytest.raises(StopRequested) as together:
                check(boundary=True)
            assert not together.value.alone
            with pytest.raises(StopRequested) as alone:
                signal.raise_signal(signal.SIGINT)
            assert alone.value.alone
        with ctrl_c_between_steps() as check:  # one process: nobody to leave behind
            signal.raise_signal(signal.SIGINT)
            with pytest.raises(StopRequested) as single:
                signal.raise_signal(signal.SIGINT)
            assert not single.value.alone


def test_a_program_that_took_sigint_itself_keeps_it() -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with ctrl_c_between_steps() as check:
            signal.raise_signal(signal.SIGINT)
            check()  # not ours to take: nothing is raised
        assert calls == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM is taken by the test runner")
def test_sigterm_waits_for_the_check_and_says_which_signal_it_was() -> None:
    with ctrl_c_between_steps() as check:
        check()
        signal.raise_signal(signal.SIGTERM)  # without the handler this would end the test run
        with pytest.raises(StopRequested) as stop:
            check()
        assert stop.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
