"""Stages 1-2: discover episode folders and wait until they are complete; the fps they were recorded at.

The full scan is the source of truth; watchdog events are only hints that make the
service look sooner (the kernel drops inotify events on overflow, and watchdog's
dispatcher thread dies on a handler exception, so the handler only enqueues).
New episodes are encoded at the fps of ``meta/info.json`` when the recorder wrote one
(:class:`FpsSource` re-reads it when it changes), else at ``ROBOVID_FPS``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from robovid.encoders import MAX_FPS
from robovid.errors import InfoJsonError
from robovid.layout import images_dir, info_json_path, is_episode_like, parse_episode_dir, read_fps

log = structlog.get_logger("robovid_watch")

_reported_names: set[str] = set()
"""Folders already reported as not named like an episode (one event per folder and process)."""


@dataclass(frozen=True, order=True)
class EpisodeRef:
    """One episode folder of one camera."""

    episode: int
    camera: str
    path: Path


def scan(root: Path) -> Iterator[EpisodeRef]:
    """Every ``images/{camera}/episode-NNNNNN`` folder under ``root`` (symlinks reported as found)."""
    base = images_dir(root)
    try:
        cameras = list(os.scandir(base))
    except FileNotFoundError:
        return
    for camera in cameras:
        if camera.name.startswith(".") or not camera.is_dir():
            continue
        try:
            episodes = list(os.scandir(camera.path))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in episodes:
            index = parse_episode_dir(entry.name)
            if index is not None and entry.is_dir():
                yield EpisodeRef(index, camera.name, Path(entry.path))
            elif is_episode_like(entry.name) and entry.path not in _reported_names:
                _reported_names.add(entry.path)
                log.warning(
                    "episode_folder_ignored",
                    camera=camera.name,
                    folder=entry.path,
                    detail="the name is not an episode folder's: episode N is spelled episode-{N:06d} "
                    "(six digits with leading zeros, or the plain number from 1000000 on)",
                    action="left alone; rename it to the episode's exact name if it holds an episode",
                )


def ref_from_path(root: Path, path: str) -> EpisodeRef | None:
    """The episode a changed path belongs to, if any."""
    try:
        parts = Path(path).relative_to(images_dir(root)).parts
    except ValueError:
        return None
    if len(parts) < 2:
        return None
    index = parse_episode_dir(parts[1])
    if index is None:
        return None
    return EpisodeRef(index, parts[0], images_dir(root) / parts[0] / parts[1])  # the folder's own name


def has_marker(ref: EpisodeRef, marker: str) -> bool:
    """The recorder's completion marker is in the folder.

    An unreadable folder counts as complete, so that processing it reports the permission
    problem (episode_failed) instead of the folder being skipped in silence.
    """
    try:
        os.lstat(ref.path / marker)
        return True
    except FileNotFoundError:
        return False
    except PermissionError:
        return True


FUTURE_TOLERANCE_S = 60.0
"""Files dated further ahead than this are reported (``clock_skew``); settling does not depend on it."""


class SettleClock:
    """Settle mode: an episode is complete once nothing in its folder changed for ``settle_s``,
    as this process observed it on its own monotonic clock.

    The files' mtimes play no part: frames dated in the future (a recorder or file copy with a
    wrong clock, an NTP step after boot) settle like any others and are reported once; frames
    dated in the past do not make a folder complete while it is still changing. What settle mode
    cannot do is tell a recorder's pause longer than ``settle_s`` from the end of an episode:
    frames written after the commit are kept and reported (``episode_continued``).
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self._seen: dict[Path, tuple[str, float]] = {}
        self._skew_reported: set[Path] = set()

    def settled(self, ref: EpisodeRef) -> bool:
        try:
            signature, count, newest_ns = _folder_state(ref.path)
        except FileNotFoundError:
            self.forget(ref.path)
            return False
        except PermissionError:
            return True
        now = time.monotonic()
        seen = self._seen.get(ref.path)
        if seen is None or seen[0] != signature:
            self._seen[ref.path] = (signature, now)
            self._check_clock(ref, newest_ns)
            return False
        return count > 0 and now - seen[1] >= self.settle_s

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)
        self._skew_reported.discard(path)

    def _check_clock(self, ref: EpisodeRef, newest_ns: int) -> None:
        ahead_s = newest_ns / 1e9 - time.time()
        if ahead_s > FUTURE_TOLERANCE_S and ref.path not in self._skew_reported:
            self._skew_reported.add(ref.path)
            log.warning(
                "clock_skew",
                camera=ref.camera,
                episode=ref.episode,
                path=str(ref.path),
                ahead_s=round(ahead_s),
                detail=f"files in {ref.path} are dated {ahead_s:.0f} s in the future",
                action="check the clock of the recorder and of this machine (NTP); robovid settles episodes by "
                "its own clock, so nothing waits for that date",
            )


def _folder_state(path: Path) -> tuple[str, int, int]:
    """(signature, entry count, newest mtime in ns) of a folder, from one scan."""
    digest = hashlib.sha1()
    newest = 0
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            digest.update(f"{entry.name}\0gone\n".encode(errors="surrogateescape"))
            continue
        newest = max(newest, st.st_mtime_ns)
        digest.update(
            f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_mode}\n".encode(
                errors="surrogateescape"
            )
        )
    return digest.hexdigest(), len(entries), newest


def folder_signature(path: Path) -> str:
    """A digest of a folder's entries (names, sizes, mtimes, ctimes, inodes): changes when anything in it changes.

    ctime is in it because no program can set it: a frame rewritten in place with its old size and
    mtime restored still changes the signature.
    """
    try:
        return _folder_state(path)[0]
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable:{error.errno}"


class _Hints(FileSystemEventHandler):
    """Puts every event's path on a queue, nothing else (it runs on watchdog's thread)."""

    def __init__(self, hints: queue.SimpleQueue[str]) -> None:
        self._hints = hints

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._hints.put(os.fsdecode(event.src_path))
        if event.dest_path:  # a folder staged under another name and renamed into place: its new name counts
            self._hints.put(os.fsdecode(event.dest_path))


def start_observer(root: Path, hints: queue.SimpleQueue[str]) -> BaseObserver:
    """Watch ``images/`` recursively; events become hints on ``hints``."""
    observer = Observer()
    # Only what a recorder does: the service's own reads and deletions would flood the kernel's queue.
    wanted = [FileCreatedEvent, DirCreatedEvent, FileMovedEvent, DirMovedEvent, FileClosedEvent]
    observer.schedule(_Hints(hints), str(images_dir(root)), recursive=True, event_filter=wanted)
    observer.daemon = True
    observer.start()
    return observer


class FpsSource:
    """The fps for new episodes: ``meta/info.json``'s (re-read when the file changes), else ``default``."""

    def __init__(self, root: Path, default: int, vcodec: str | None = None) -> None:
        self.root = root
        self.default = default
        self.vcodec = vcodec
        """The service's codec: an fps it cannot encode (:data:`robovid.encoders.MAX_FPS`) is refused like any bad one."""
        self._stamp: tuple[int, int] | str | None = "unread"
        self._fps: int | None = None

    def current(self) -> int | None:
        """The fps, or None while ``meta/info.json`` is invalid (logged once per change of the file)."""
        info = info_json_path(self.root)
        try:
            st = info.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._fps = read_fps(self.root, self.default)
                limit = MAX_FPS.get(self.vcodec or "")
                if limit is not None and self._fps > limit:
                    raise InfoJsonError(
                        f"{info}: 'fps' is {self._fps}, but ROBOVID_VCODEC={self.vcodec} encodes at most {limit} fps. "
                        "Record at a lower rate, or set ROBOVID_VCODEC=h264 or hevc and restart the service."
                    )
            except InfoJsonError as error:
                self._fps = None
                log.error(
                    "info_json_invalid",
                    path=str(info),
                    detail=str(error),
                    action="no new episode is started until meta/info.json is fixed or removed",
                )
        return self._fps
