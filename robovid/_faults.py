"""Test hooks at named points of the library and the service, inactive unless their variables are set.

- ``ROBOVID_FAULT_POINT=name:n`` makes the process SIGKILL itself the n-th time (1-based) it
  reaches ``fault_point(name)``, the way a power cut or ``kill -9`` would stop it there;
  ``name:n:segv`` makes it crash there with a real segmentation fault instead (CPython's own
  ``faulthandler._sigsegv``), the way a crash inside a native encoder would.
- ``ROBOVID_FAULT_EPISODE=N`` counts only the passes of a thread working on episode N (inside
  :func:`fault_scope`), so a fault hits that episode whatever else runs beside it: the same episode
  crashes the process at every start, like input that crashes the encoder.
- ``ROBOVID_TEST_POINTS=DIR`` lets a test watch and hold the process at any point: each pass
  through ``fault_point(name)`` appends one byte to ``DIR/name.passed`` (its size counts the
  passes), and while ``DIR/name.hold`` exists the passing thread waits there (while
  ``DIR/name.episode-N.hold`` exists, only a thread working on episode N: see :func:`fault_scope`). Setting ``stop``
  (the service's stop event, for points that pass it) releases a held thread at once, so a test
  can hold a worker, send SIGTERM, and see the stop land exactly at that point.

The variables are read once at import; when both are unset a call costs two comparisons.
Tests use them instead of relying on one process being faster than another.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
import time
from collections.abc import Iterator

from robovid._stop import StopFlag

_SPEC = os.environ.get("ROBOVID_FAULT_POINT", "")
_SEGV = _SPEC.endswith(":segv")
_NAME, _, _NTH = _SPEC.removesuffix(":segv").rpartition(":")
_EPISODE = os.environ.get("ROBOVID_FAULT_EPISODE", "")
_scope = threading.local()
_TARGET = int(_NTH) if _NTH.isdigit() else 1
_POINTS_DIR = os.environ.get("ROBOVID_TEST_POINTS", "")
_HOLD_POLL_S = 0.01
_hits = 0
_lock = threading.Lock()


def fault_point(name: str, stop: StopFlag | None = None) -> None:
    """Pass the named point: counted and held when a test asks; die here (SIGKILL, or a segfault) if it is the crash point."""
    global _hits
    if _POINTS_DIR:
        _observe(name, stop)
    if not _NAME or name != _NAME or (_EPISODE and getattr(_scope, "episode", None) != _EPISODE):
        return
    with _lock:
        _hits += 1
        if _hits == _TARGET:
            _crash()


def _crash() -> None:
    if _SEGV:
        faulthandler._sigsegv()  # type: ignore[attr-defined]  # CPython's own test helper: a real SIGSEGV
    os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def fault_scope(episode: int) -> Iterator[None]:
    """The calling thread works on ``episode`` inside the block (what ``ROBOVID_FAULT_EPISODE`` matches)."""
    previous = getattr(_scope, "episode", None)
    _scope.episode = str(episode)
    try:
        yield
    finally:
        _scope.episode = previous


def _observe(name: str, stop: StopFlag | None) -> None:
    base = os.path.join(_POINTS_DIR, name)
    fd = os.open(base + ".passed", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    episode = getattr(_scope, "episode", None)
    while os.path.exists(base + ".hold") or (episode is not None and os.path.exists(f"{base}.episode-{episode}.hold")):
        if stop is None:
            time.sleep(_HOLD_POLL_S)
        elif stop.wait(_HOLD_POLL_S):
            return
