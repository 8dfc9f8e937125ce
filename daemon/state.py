"""The service's own state under :func:`robovid.layout.state_dir`: the root lock, the journal, failures, temp encodes.

Journal: one small JSON intent per episode being appended, written durably *before*
the chunk is touched and removed only after the PNGs are gone. With the segments
table it tells a restarted service, for every episode, which side of each step a
crash fell on (see :func:`robovid_watch.stages.recover_intents`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robovid.durable import (
    is_stale_temp_path,
    is_temp_path,
    make_dirs_durably,
    unlink_durably,
    write_bytes_durably,
)
from robovid.layout import (
    chunk_dirs,
    failed_dir,
    journal_dir,
    legacy_lock_path,
    lerobot_dirs,
    lock_path,
    retakes_dir,
    sealed_dir,
    segments_dir,
    state_dir,
    tmp_dir,
)
from robovid.metadata import SegmentRow

from .errors import RootLockedError


def camera_id(camera: str) -> str:
    """A file-name-safe, stable id for a camera key (keys may hold spaces, quotes, newlines)."""
    return hashlib.sha1(camera.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _entry_name(camera: str, episode: int) -> str:
    return f"{camera_id(camera)}--{episode:06d}.json"


@dataclass
class Intent:
    """An append about to happen: enough to finish or undo it after a crash."""

    camera: str
    episode: int
    chunk_index: int
    file_index: int
    frames_before: int
    """Frames in the chunk file before this append (0 when it did not exist)."""
    num_frames: int
    row: SegmentRow
    """The metadata row, less its location in the chunk."""
    source_mtime_ns: int = 0
    """Newest mtime of the encoded PNGs: a file newer than this was not encoded and is never deleted."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"row": self.row.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Intent:
        """The intent :meth:`to_json` wrote; its row comes back typed (:meth:`SegmentRow.from_json`)."""
        return cls(**(data | {"row": SegmentRow.from_json(data["row"])}))


@dataclass
class RetakeRequest:
    """A user's request (``robovid retake``) to replace an episode's committed take with the take now in its folder."""

    camera: str
    episode: int
    replaces_take: int
    """The committed take this one replaces; if another was committed meanwhile, the request no longer holds."""
    requested_at: float


@dataclass
class Failure:
    """An episode that could not be processed, and the folder state it failed on."""

    camera: str
    episode: int
    path: str
    reason: str
    error_type: str
    signature: str
    failed_at: float


class RootState:
    """Paths and records of the service's state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = state_dir(root)
        self.journal_dir = journal_dir(root)
        self.failed_dir = failed_dir(root)
        self.tmp_dir = tmp_dir(root)
        self.retake_dir = retakes_dir(root)
        self._lock_fd: int | None = None
        self._legacy_lock_fd: int | None = None

    def prepare(self) -> None:
        for directory in (self.dir, self.journal_dir, self.failed_dir, self.tmp_dir, self.retake_dir):
            make_dirs_durably(directory)

    def acquire_lock(self) -> None:
        """Take the root lock or raise RootLockedError naming the holder.

        A root still in the old layout (``.robovid/lock``) is locked there too, so a robovid from
        before the move cannot work on it while this one moves its state.
        """
        self._lock_fd = self._flock(lock_path(self.root))
        legacy = legacy_lock_path(self.root)
        if legacy.exists():
            try:
                self._legacy_lock_fd = self._flock(legacy)
            except BaseException:
                self.release_lock()
                raise

    def _flock(self, path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise RootLockedError(
                    f"Another robovid process (pid {holder}) is processing {self.root}. "
                    "Stop it first (systemctl stop robovid-watch), or use another root."
                ) from error
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def release_lock(self) -> None:
        for fd in (self._lock_fd, self._legacy_lock_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._legacy_lock_fd = None

    def clear_temp_files(self) -> int:
        """Remove encodes and temp files left by a previous run; return how many.

        Besides robovid's own state folders, the temp files a killed run leaves next to what
        it was publishing: a chunk it was creating, a metadata part it was committing, a LeRobot
        metadata file it was replacing. Only those whose writing process is gone are removed.
        """
        removed = [Path(e.path) for e in os.scandir(self.tmp_dir)]
        for directory in (self.journal_dir, self.failed_dir, self.retake_dir):
            removed += [Path(e.path) for e in os.scandir(directory) if is_temp_path(Path(e.path))]
        with contextlib.suppress(FileNotFoundError):  # seal records the service was writing (it alone writes them)
            removed += [Path(e.path) for e in os.scandir(sealed_dir(self.root)) if is_temp_path(Path(e.path))]
        for directory in [segments_dir(self.root), *chunk_dirs(self.root), *lerobot_dirs(self.root)]:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError, PermissionError):
                removed += [Path(e.path) for e in os.scandir(directory) if is_stale_temp_path(Path(e.path))]
        unlink_durably(removed)
        return len(removed)

    # journal ---------------------------------------------------------------------------
    def write_intent(self, intent: Intent) -> None:
        write_bytes_durably(self.journal_dir / _entry_name(intent.camera, intent.episode), _json(intent.to_json()))

    def intents(self) -> list[Intent]:
        return [Intent.from_json(data) for data in _read_all(self.journal_dir)]

    def intent(self, camera: str, episode: int) -> Intent | None:
        data = _read_json(self.journal_dir / _entry_name(camera, episode))
        return Intent.from_json(data) if data else None

    def clear_intent(self, camera: str, episode: int) -> None:
        unlink_durably([self.journal_dir / _entry_name(camera, episode)])

    # failures --------------------------------------------------------------------------
    def record_failure(self, failure: Failure) -> None:
        write_bytes_durably(self.failed_dir / _entry_name(failure.camera, failure.episode), _json(asdict(failure)))

    def failure(self, camera: str, episode: int) -> Failure | None:
        data = _read_json(self.failed_dir / _entry_name(camera, episode))
        return Failure(**data) if data else None

    def failures(self) -> list[Failure]:
        return [Failure(**data) for data in _read_all(self.failed_dir)]

    def clear_failure(self, camera: str, episode: int) -> None:
        path = self.failed_dir / _entry_name(camera, episode)
        if path.exists():
            unlink_durably([path])

    # re-takes ---------------------------------------------------------------------------
    def request_retake(self, request: RetakeRequest) -> None:
        """Durable when this returns; written without the root lock (the service reads it on its next pass)."""
        make_dirs_durably(self.retake_dir)
        write_bytes_durably(self.retake_dir / _entry_name(request.camera, request.episode), _json(asdict(request)))

    def retake_request(self, camera: str, episode: int) -> RetakeRequest | None:
        data = _read_json(self.retake_dir / _entry_name(camera, episode))
        return RetakeRequest(**data) if data else None

    def clear_retake(self, camera: str, episode: int) -> None:
        path = self.retake_dir / _entry_name(camera, episode)
        if path.exists():
            unlink_durably([path])


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=True).encode()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def _read_all(directory: Path) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name.endswith(".json") and not is_temp_path(Path(entry.path)):
                data = _read_json(Path(entry.path))
                if data is not None:
                    out.append(data)
    return out
