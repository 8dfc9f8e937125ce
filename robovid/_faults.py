"""Named crash points for the fault-injection tests (inactive unless ROBOVID_FAULT_POINT is set).

``ROBOVID_FAULT_POINT=name:n`` makes the process SIGKILL itself the n-th time (1-based)
it reaches ``fault_point(name)``, the way a power cut or ``kill -9`` would stop it there.
The variable is read once at import; an unset variable costs one comparison per call.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("ROBOVID_FAULT_POINT", "")
_NAME, _, _NTH = _SPEC.rpartition(":")
_TARGET = int(_NTH) if _NTH.isdigit() else 1
_hits = 0
_lock = threading.Lock()


def fault_point(name: str) -> None:
    """Die here, by SIGKILL, if this is the configured crash point."""
    global _hits
    if not _NAME or name != _NAME:
        return
    with _lock:
        _hits += 1
        if _hits == _TARGET:
            os.kill(os.getpid(), signal.SIGKILL)
