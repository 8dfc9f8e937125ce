"""The service's health checks: free disk space on the root, and a backlog that keeps growing.

Neither stops the service. Low space pauses new episodes (:class:`DiskGuard`); a backlog that
grew over a whole ``ROBOVID_BACKLOG_WARN_S`` window is reported (:class:`BacklogWatch`), at
most once a window. Both are driven by the service loop, on its main thread.
"""

from __future__ import annotations

import errno
import shutil
import time
from collections import deque
from pathlib import Path

import structlog

log = structlog.get_logger("robovid_watch")

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def is_disk_full(error: BaseException) -> bool:
    """True for an OSError that says the filesystem (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


class DiskGuard:
    """Whether a new episode may start: enough free space on the root, and no recent disk-full error."""

    def __init__(self, root: Path, min_free_mb: int) -> None:
        self.root = root
        self.min_free_mb = min_free_mb
        self._paused_for_space = False
        self._full_until = 0.0

    def pause(self, seconds: float) -> None:
        """An episode ran out of space: start none for ``seconds``."""
        self._full_until = time.monotonic() + seconds

    @property
    def paused_for_space(self) -> bool:
        """True while the last check found less free space than ROBOVID_MIN_FREE_MB."""
        return self._paused_for_space

    def space_ok(self) -> bool:
        """True when a new episode may start; logs ``disk_low`` and ``disk_space_back`` on the change."""
        if time.monotonic() < self._full_until:
            return False
        free_mb = shutil.disk_usage(self.root).free / (1024 * 1024)
        ok = free_mb >= self.min_free_mb
        if ok and self._paused_for_space:
            log.info("disk_space_back", free_mb=round(free_mb))
        if not ok and not self._paused_for_space:
            log.error(
                "disk_low",
                free_mb=round(free_mb),
                min_free_mb=self.min_free_mb,
                action="no new episode is started until space is freed (ROBOVID_MIN_FREE_MB)",
            )
        self._paused_for_space = not ok
        return ok


class BacklogWatch:
    """Warns (``backlog_growing``) when the waiting episodes grew over a whole window and never reached zero.

    The backlog now is compared with the newest sample at least one window old (kept as the
    anchor), so the warning does not depend on a sample happening to fall near the window's edge.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._last_warning: float | None = None
        self.latest = 0
        """The backlog at the last sample."""

    def sample(self, backlog: int, now: float | None = None) -> None:
        """Record the number of episodes waiting ``now`` (default: the monotonic clock); warn if it keeps growing."""
        now = time.monotonic() if now is None else now
        window = self.window_s
        self.latest = backlog
        self._samples.append((now, backlog))
        while len(self._samples) > 1 and now - self._samples[1][0] >= window:
            self._samples.popleft()
        anchor_t, anchor = self._samples[0]
        growing = now - anchor_t >= window and backlog > anchor and min(b for _, b in self._samples) > 0
        if growing and (self._last_warning is None or now - self._last_warning > window):
            self._last_warning = now
            log.warning(
                "backlog_growing",
                backlog_episodes=backlog,
                window_s=window,
                action="robovid is not keeping up with the recorder: lower the preset, raise ROBOVID_WORKERS, "
                "or give the service more CPU",
            )
