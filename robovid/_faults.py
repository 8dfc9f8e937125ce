"""Test hooks at named points of the library and the service, inactive unless their variables are set.

- ``ROBOVID_FAULT_POINT=name:n`` makes the process SIGKILL itself the n-th time (1-based) it
  reaches ``fault_point(name)``, the way a power cut or ``kill -9`` would stop it there.
- ``ROBOVID_TEST_POINTS=DIR`` lets a test watch and hold the process at any point: each pass
  through ``fault_point(name)`` appends one byte to ``DIR/name.passed`` (its size counts the
  passes), and while ``DIR/name.hold`` exists the passing thread waits there. Setting ``stop``
  (the service's stop event, for points that pass it) releases a held thread at once, so a test
  can hold a worker, send SIGTERM, and see the stop land exactly at that point.

The variables are read once at import; when both are unset a call costs two comparisons.
Tests use them instead of relying on one process being faster than another.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from robovid._stop import StopFlag

_SPEC = os.environ.get("ROBOVID_FAULT_POINT", "")
_NAME, _, _NTH = _SPEC.rpartition(":")
_TARGET = int(_NTH) if _NTH.isdigit() else 1
_POINTS_DIR = os.environ.get("ROBOVID_TEST_POINTS", "")
_HOLD_POLL_S = 0.01
_hits = 0
_lock = threading.Lock()


def fault_point(name: str, stop: StopFlag | None = None) -> None:
    """Pass the named point: counted and held when a test asks; die here, by SIGKILL, if it is the crash point."""
    global _hits
    if _POINTS_DIR:
        _observe(name, stop)
    if not _NAME or name != _NAME:
        return
    with _lock:
        _hits += 1
        if _hits == _TARGET:
            os.kill(os.getpid(), signal.SIGKILL)


def _observe(name: str, stop: StopFlag | None) -> None:
    base = os.path.join(_POINTS_DIR, name)
    fd = os.open(base + ".passed", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    while os.path.exists(base + ".hold"):
        if stop is None:
            time.sleep(_HOLD_POLL_S)
        elif stop.wait(_HOLD_POLL_S):
            return
