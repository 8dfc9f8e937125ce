"""A stop request that a signal handler may make: setting it takes no lock.

``threading.Event.set()`` takes the event's lock. A Python signal handler runs in the main
thread between two bytecodes, so it can run while the main thread itself holds that lock
(inside ``Event.wait``'s ``with self._cond``); ``set()`` then waits for a lock its own thread
holds, forever. That is how a SIGTERMed robovid-ship once stayed alive for 44 minutes (main
thread in an untimed ``lock.acquire``). :class:`StopRequest` sets a plain flag and writes a
byte to a pipe; :meth:`StopRequest.wait` polls that pipe, so a stop always wakes it.
"""

from __future__ import annotations

import contextlib
import os
import select


class StopRequest:
    """``set`` / ``is_set`` / ``wait`` like ``threading.Event``, but ``set`` is safe in a signal handler."""

    def __init__(self) -> None:
        self._flag = False
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

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
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
