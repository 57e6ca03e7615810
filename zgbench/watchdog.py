"""Guards around a plugin's code: a hard wall-clock limit, and exits that end one run only.

- :func:`guard` runs a block with a wall-clock limit. On the main thread (where Python
  delivers signals) an interval timer (``SIGALRM``) raises :class:`RunTimeout`, a
  ``BaseException`` so that an optimizer's ``except Exception`` cannot swallow it, and raises
  it again every second until the block is left, so catching it once does not escape. Off
  the main thread (or where there is no ``SIGALRM``) a timer thread raises it in the run's
  thread with ``PyThreadState_SetAsyncExc``; both act between bytecodes only, so code stuck
  inside one C call is ended by the process executors (``--isolate``), which kill the worker.
- :func:`ending_signals` turns SIGTERM and SIGHUP to the driver into :class:`Terminated`, so
  that it unwinds like Ctrl-C does: executors stop their workers on the way out, and no
  worker, forkserver or resource tracker outlives ``zgbench`` (the default action of these
  signals ends the process at once, its children orphaned).
- It also tells a real Ctrl-C from a ``KeyboardInterrupt`` a plugin raises itself: while
  the block runs, SIGINT sets a flag before raising. :func:`user_interrupted` says which.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: With --seconds, the default --timeout is the time budget plus this much (the last call of
#: a run may start just before the budget ends; checkpoints are not charged).
GRACE = (60.0, 0.5)  # seconds, plus this share of the time budget
#: The default --timeout of a run bounded by evaluations, gradients or steps only.
DEFAULT_TIMEOUT = 3600.0
#: The limit on the last checkpoint of a run that failed or was abandoned (shorter than the
#: executors' kill grace, so that a worker gets to send its record).
SALVAGE = 20.0


def default_timeout(seconds: float | None) -> float:
    """The hard wall-clock limit of a run whose budget has ``seconds`` (or none)."""
    if seconds is None:
        return DEFAULT_TIMEOUT
    return seconds * (1 + GRACE[1]) + GRACE[0]


class RunTimeout(BaseException):
    """A run went past its hard wall-clock limit (``--timeout``)."""


_interrupted = threading.Event()


def user_interrupted() -> bool:
    """True if the last KeyboardInterrupt inside :func:`guard` came from a real SIGINT."""
    return _interrupted.is_set()


@contextmanager
def guard(limit: float | None) -> Iterator[None]:
    """Run the block under a ``limit``-second hard limit (None: no limit)."""
    _interrupted.clear()
    main = threading.current_thread() is threading.main_thread()
    alarm = main and hasattr(signal, "SIGALRM")
    with _signals(limit if alarm else None, main), _async_timer(None if alarm else limit):
        yield


@contextmanager
def _signals(limit: float | None, main: bool) -> Iterator[None]:
    def on_sigint(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt

    def on_alarm(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, 1.0)  # again in a second, if this is caught
        raise RunTimeout(f"the run passed its hard wall-clock limit of {limit:g} s (--timeout)")

    if not main:  # signal handlers can be set on the main thread only
        yield
        return
    old_int = signal.getsignal(signal.SIGINT)
    ours = old_int is signal.default_int_handler  # else someone else handles Ctrl-C: leave it
    if ours:
        signal.signal(signal.SIGINT, on_sigint)
    alarm = limit is not None
    if alarm:
        old_alarm = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_alarm)
        if ours:
            signal.signal(signal.SIGINT, old_int)


@contextmanager
def _async_timer(limit: float | None) -> Iterator[None]:
    if limit is None:
        yield
        return
    target = threading.get_ident()
    done = threading.Event()

    def fire() -> None:
        while not done.wait(limit if not fired else 1.0):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target),
                                                       ctypes.py_object(RunTimeout))
            fired.append(True)

    fired: list[bool] = []
    thread = threading.Thread(target=fire, name="zgbench-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class Terminated(BaseException):
    """The driver received SIGTERM or SIGHUP: stop everything, as for Ctrl-C. A
    ``BaseException`` outside the harness's ``except`` clauses, so that no run records it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


#: The signals :func:`ending_signals` turns into :class:`Terminated` (where they exist).
ENDING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def ending_signals() -> Iterator[None]:
    """While the block runs (on the main thread), SIGTERM and SIGHUP raise
    :class:`Terminated`; the previous handlers come back after it. A signal that is ignored
    (``nohup`` ignores SIGHUP) or handled by someone else stays so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        raise Terminated(signum)

    old = {signum: signal.signal(signum, on_signal) for signum in ENDING
           if signal.getsignal(signum) == signal.SIG_DFL}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
