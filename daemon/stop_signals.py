"""The signals that stop robovid-watch and robovid-ship, and the stop request their handlers make.

A handler (``robovid_watch.main``, ``robovid_watch.ship.main``) only sets a :class:`StopRequest`;
workers check it between stages, so nothing is interrupted mid-append. robovid-watch stops on
SIGTERM, SIGINT and SIGHUP (a closed terminal, a careless ``kill -1``), with its ``stopped`` event.

Why not ``threading.Event``: its ``set()`` takes the event's lock. A Python signal handler runs in
the main thread between two bytecodes, so it can run while the main thread itself holds that lock
(inside the same event's ``set`` or ``wait``); ``set()`` then waits for a lock its own thread
holds, forever. That is how a SIGTERMed robovid-ship once stayed alive for 44 minutes (main thread
in an untimed ``lock.acquire``). :class:`StopRequest` sets a plain flag and writes a byte to a
pipe; :meth:`StopRequest.wait` polls that pipe, so a stop made at any instant wakes every wait.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import weakref
from collections.abc import Callable, Collection, Iterator
from types import FrameType

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class StopRequest:
    """``set`` / ``is_set`` / ``wait`` like ``threading.Event``, but ``set`` is safe in a signal handler.

    It is a :class:`robovid._stop.StopFlag`, so the library's encoders and test points take it.
    Its pipe is closed when the request is garbage-collected (never while a handler can reach it).
    """

    def __init__(self) -> None:
        self._flag = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._closer = weakref.finalize(self, _close_fds, self._read, self._write)

    def set(self) -> None:
        """Request the stop: no lock, no allocation beyond a one-byte write that never blocks."""
        self._flag = True
        with contextlib.suppress(OSError):  # a full pipe already wakes every wait
            os.write(self._write, b"\0")

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until :meth:`set` (from any thread or a signal handler)."""
        if not self._flag and timeout > 0:
            poller = select.poll()
            poller.register(self._read, select.POLLIN)
            poller.poll(timeout * 1000.0)  # set() after the check above still wakes it: the byte is in the pipe
        return self._flag

    def close(self) -> None:
        """Close the pipe now (only once nothing can set or wait on the request any more)."""
        self._closer()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


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


@contextlib.contextmanager
def stop_signals_handled(request_stop: Callable[[], None], signals: Collection[int] = STOP_SIGNALS) -> Iterator[None]:
    """Run the block with ``request_stop`` as the handler of ``signals``; ignore them once it is over.

    The handler must only make a lock-free request (:meth:`StopRequest.set`, a ``SimpleQueue.put``).
    After the block the stop is done: Python restores the default action of every signal it
    handles while the interpreter shuts down, so a second SIGTERM (a storm of them, SIGINT from
    a terminal) arriving then would kill the process by that signal instead of letting it exit 0
    after its ``stopped`` event. Ignored signals stay ignored through the shutdown.
    """

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        request_stop()

    for signum in signals:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum in signals:
            signal.signal(signum, signal.SIG_IGN)
