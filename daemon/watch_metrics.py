"""robovid-watch's metrics (``robovid_watch.prom``): what the service did, how far behind it is, how full its disk.

The service keeps the :class:`WatchStats` of its :class:`WatchMetricsFile` up to date as
episodes finish, and the file is written from its main loop every ``METRICS_EVERY_S`` (and at
stop); see :mod:`robovid_watch.metrics` for the format and why a file. The health checks the
metrics report are :mod:`robovid_watch.health`.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from robovid.metadata import read_segments

from .metrics import WATCH_FILE, Metric, counter, gauge, write_textfile

if TYPE_CHECKING:
    from .health import BacklogWatch, DiskGuard
    from .stages import Outcome
    from .state import RootState

log = structlog.get_logger("robovid_watch")

METRICS_EVERY_S = 5.0
REALTIME_WINDOW_S = 600.0
"""The real-time factor covers the episodes finished in the last 10 minutes."""


@dataclass(frozen=True)
class FinishedEpisode:
    """One committed episode, for the real-time factor."""

    camera: str
    finished_at: float
    recorded_s: float
    """num_frames / fps: how long the camera recorded it."""
    busy_s: float
    """encode + verify + append wall time."""


def busy_wall_s(spans: list[tuple[float, float]]) -> float:
    """Wall seconds covered by at least one (start, end) span (their union)."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(spans):
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


def realtime_factor(episodes: list[FinishedEpisode]) -> float | None:
    """Recording seconds (per camera) processed per second of busy wall time; None without episodes.

    >= 1 keeps up with a recorder that records every camera at once (the definition of
    ``robovid status``).
    """
    if not episodes:
        return None
    cameras = len({e.camera for e in episodes})
    recorded = sum(e.recorded_s for e in episodes) / cameras
    busy = busy_wall_s([(e.finished_at - e.busy_s, e.finished_at) for e in episodes])
    return recorded / busy if busy > 0 else None


@dataclass
class WatchStats:
    """The service's counters since start, and its recent episodes."""

    done: int = 0
    failed: int = 0
    input_bytes: int = 0
    """PNG bytes of the episodes encoded (bytes in)."""
    output_bytes: int = 0
    """Video bytes appended to chunk files (bytes out)."""
    last_success: float | None = None
    """Unix time of the last committed episode (from the metadata at start, then as they commit)."""
    recent: deque[FinishedEpisode] = field(default_factory=deque)

    def episode_done(self, camera: str, outcome: Outcome) -> None:
        now = time.time()
        busy_s = sum(outcome.timings.get(stage, 0.0) for stage in ("encode_s", "verify_s", "append_s"))
        self.done += 1
        self.input_bytes += outcome.source_bytes
        self.output_bytes += outcome.video_bytes
        self.last_success = now
        recorded_s = outcome.frames / outcome.fps if outcome.fps else 0.0
        self.recent.append(FinishedEpisode(camera, now, recorded_s, busy_s))
        self._forget_before(now - REALTIME_WINDOW_S)

    def episode_failed(self) -> None:
        self.failed += 1

    def realtime_factor(self) -> float | None:
        self._forget_before(time.time() - REALTIME_WINDOW_S)
        return realtime_factor(list(self.recent))

    def _forget_before(self, limit: float) -> None:
        while self.recent and self.recent[0].finished_at < limit:
            self.recent.popleft()


@dataclass(frozen=True)
class WatchHealth:
    """The service's state at the moment the metrics are written."""

    backlog_episodes: int
    failed_waiting: int
    """Episodes with a failure record: their PNGs kept, waiting for a person."""
    disk_free_bytes: int
    disk_min_free_bytes: int
    paused_for_space: bool


def watch_metrics(root: Path, stats: WatchStats, health: WatchHealth) -> list[Metric]:
    """Every robovid_* metric of the service, labelled with the root."""
    labels = {"root": str(root)}
    return [
        counter("robovid_episodes_done_total", "Episodes committed by this run.", stats.done, labels),
        counter("robovid_episodes_failed_total", "Episode attempts that failed in this run.", stats.failed, labels),
        gauge(
            "robovid_episodes_failed",
            "Failed episodes waiting for a person (PNGs kept; robovid status says why).",
            health.failed_waiting,
            labels,
        ),
        gauge("robovid_backlog_episodes", "Episode folders waiting to be encoded.", health.backlog_episodes, labels),
        gauge(
            "robovid_realtime_factor",
            "Recording seconds per camera processed per busy second over the last 10 minutes (>= 1 keeps up; "
            "absent without recent episodes).",
            stats.realtime_factor(),
            labels,
        ),
        counter("robovid_input_bytes_total", "PNG bytes encoded (bytes in).", stats.input_bytes, labels),
        counter(
            "robovid_output_bytes_total", "Video bytes appended to chunk files (bytes out).", stats.output_bytes, labels
        ),
        gauge("robovid_disk_free_bytes", "Free bytes on the root's file system.", health.disk_free_bytes, labels),
        gauge(
            "robovid_disk_min_free_bytes",
            "ROBOVID_MIN_FREE_MB in bytes: below it no new episode starts.",
            health.disk_min_free_bytes,
            labels,
        ),
        gauge(
            "robovid_paused_for_space",
            "1 while new work is paused for lack of disk space.",
            float(health.paused_for_space),
            labels,
        ),
        gauge(
            "robovid_last_success_timestamp_seconds",
            "Unix time of the last committed episode (absent when none was ever committed).",
            stats.last_success,
            labels,
        ),
    ]


class WatchMetricsFile:
    """``robovid_watch.prom`` in ROBOVID_METRICS_DIR (``directory``; None: no metrics), rewritten every METRICS_EVERY_S."""

    def __init__(self, directory: Path | None, root: Path, min_free_mb: int) -> None:
        self.directory = directory
        self.root = root
        self.min_free_bytes = min_free_mb * 1024 * 1024
        self.stats = WatchStats()
        self._next_write = 0.0
        self._error_logged = False

    def start(self) -> None:
        """At start, after recovery: the last success before this run, from the metadata (MetadataError if unreadable)."""
        if self.directory is not None:
            self.stats.last_success = newest_commit_time(self.root)

    def write(self, backlog: BacklogWatch, disk: DiskGuard, state: RootState, force: bool = False) -> None:
        """Write the file when it is due (or ``force``); an unwritable folder is logged once, never fatal."""
        if self.directory is None or (not force and time.monotonic() < self._next_write):
            return
        self._next_write = time.monotonic() + METRICS_EVERY_S
        health = WatchHealth(
            backlog_episodes=backlog.latest,
            failed_waiting=len(state.failures()),
            disk_free_bytes=shutil.disk_usage(self.root).free,
            disk_min_free_bytes=self.min_free_bytes,
            paused_for_space=disk.paused_for_space,
        )
        try:
            write_textfile(self.directory, WATCH_FILE, watch_metrics(self.root, self.stats, health))
        except OSError as error:
            if not self._error_logged:
                self._error_logged = True
                log.error("metrics_unwritable", path=str(self.directory), detail=str(error))


def newest_commit_time(root: Path) -> float | None:
    """Unix time of the newest committed row (the last success before this run)."""
    times = [t for t in read_segments(root).column("committed_at").to_pylist() if t is not None]
    return max(times).timestamp() if times else None
