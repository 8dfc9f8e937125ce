"""The signals that stop robovid-watch (SIGTERM, SIGINT, SIGHUP), and keeping them for the main thread.

A handler (``robovid_watch.main``) only sets the service's stop event; workers check it between
stages, so nothing is interrupted mid-append. SIGHUP (a closed terminal, a careless ``kill -1``)
stops it like SIGTERM, with its ``stopped`` event.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def block_stop_signals() -> None:
    """Run in every worker thread (and so in the encoder threads it starts): stop signals are not for them.

    The kernel hands a process signal to any thread that does not block it. Taken by an
    encoder thread, a SIGTERM would wait for the main thread's next wake-up (up to a second)
    before its handler ran; blocked everywhere else, it interrupts the main thread at once.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals while threads are started in this block: they inherit the mask."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
