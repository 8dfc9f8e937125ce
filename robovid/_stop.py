"""What the library reads of a caller's stop request: ``threading.Event`` or robovid-watch's ``StopRequest``.

Long operations (an encode, a held test point) take ``stop`` and look at it between steps. They
only ever ask whether it is set, or sleep until it is; they never set it. robovid-watch passes a
request its signal handler can set without taking a lock (``robovid_watch.stop_signals``).
"""

from __future__ import annotations

from typing import Protocol


class StopFlag(Protocol):
    """``is_set()`` and ``wait(timeout)`` as ``threading.Event`` has them."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds or until set; return whether it is set."""
        ...
