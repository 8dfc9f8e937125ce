"""The service's own state under :func:`robovid.layout.state_dir`: the root lock, the journal, failures, temp encodes.

Journal: one small JSON intent per episode being appended, written durably *before*
the chunk is touched and removed only after the PNGs are gone. With the segments
table it tells a restarted service, for every episode, which side of each step a
crash fell on (see :func:`robovid_watch.recovery.recover_intents`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from robovid.durable import (
    fsync_dir,
    is_stale_temp_path,
    is_temp_path,
    make_dirs_durably,
    unlink_durably,
    write_bytes_durably,
)
from robovid.layout import (
    chunk_dirs,
    crashes_dir,
    deferred_dir,
    failed_dir,
    inflight_dir,
    journal_dir,
    legacy_lock_path,
    lerobot_dirs,
    lock_path,
    quarantine_dir,
    retakes_dir,
    sealed_dir,
    segments_dir,
    state_dir,
    tmp_dir,
)
from robovid.metadata import SegmentRow

from .errors import RootLockedError, RootReplacedError

log = structlog.get_logger("robovid_watch")
T = TypeVar("T")


def camera_id(camera: str) -> str:
    """A file-name-safe, stable id for a camera key (keys may hold spaces, quotes, newlines)."""
    return hashlib.sha1(camera.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def entry_name(camera: str, episode: int) -> str:
    """The file name of a (camera, episode) record in any of the state folders."""
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
    """Newest mtime of the encoded PNGs (intents written before ``encoded`` existed are cleaned by it)."""
    encoded: dict[str, str] = field(default_factory=dict)
    """Name -> identity (:func:`robovid_watch.cleaning.frame_identity`) of every encoded frame: cleaning
    deletes a file only while it still has that identity."""

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


@dataclass
class Deferral:
    """An episode set aside for a fault not its own (its ``--ray`` task was lost); the next rescan or run retries it."""

    camera: str
    episode: int
    path: str
    reason: str
    error_type: str
    deferred_at: float


class RootState:
    """Paths and records of the service's state directory."""

    def __init__(self, root: Path, read_only: bool = False) -> None:
        self.root = root
        self.read_only = read_only
        """Only look (``robovid status``): damaged records are skipped, not quarantined."""
        self.dir = state_dir(root)
        self.journal_dir = journal_dir(root)
        self.failed_dir = failed_dir(root)
        self.deferred_dir = deferred_dir(root)
        self.tmp_dir = tmp_dir(root)
        self.retake_dir = retakes_dir(root)
        self._lock_fd: int | None = None
        self._legacy_lock_fd: int | None = None
        self._root_identity: tuple[int, int] | None = None

    def prepare(self) -> None:
        """Create the state folders (again, if someone deleted them while the service ran)."""
        for directory in (
            self.dir,
            self.journal_dir,
            self.failed_dir,
            self.deferred_dir,
            self.tmp_dir,
            self.retake_dir,
        ):
            make_dirs_durably(directory)

    def acquire_lock(self) -> None:
        """Take the root lock or raise RootLockedError naming the holder.

        The lock is an ``flock`` on the root directory itself, through a descriptor held until
        :meth:`release_lock`: deleting the lock file or all of robovid's state folder cannot release
        it, and a second process (the service, ``robovid process``, ``robovid compact``) is refused.
        The lock file only tells people which process holds the root. A root still in the old
        layout (``.robovid/lock``) is locked there too, so a robovid from before the state move
        (which locked only that file) cannot work on it while this one moves its state.
        """
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise RootLockedError(
                    f"Another robovid process (pid {self._holder()}) is processing {self.root}. "
                    "Stop it first (systemctl stop robovid-watch), or use another root."
                ) from error
            raise
        self._lock_fd = fd
        self._root_identity = _identity(os.fstat(fd))
        try:
            self.prepare()
            legacy = legacy_lock_path(self.root)
            if legacy.exists():
                self._legacy_lock_fd = self._flock_legacy(legacy)
        except BaseException:
            self.release_lock()
            raise
        self._write_holder()

    def _flock_legacy(self, path: Path) -> int:
        """The old layout's lock file, which robovid before the state move locked."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
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

    def _write_holder(self) -> None:
        """Tell people (and a refused second process) who holds the root; best effort, a full disk allowed."""
        with contextlib.suppress(OSError):
            fd = os.open(lock_path(self.root), os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
            finally:
                os.close(fd)

    def _holder(self) -> str:
        try:
            with open(lock_path(self.root), "rb", opener=_nonblocking) as f:
                return f.read(64).decode(errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def check_root(self) -> None:
        """RootReplacedError when the root path no longer names the directory this process locked.

        Called before anything is written: a root moved away and replaced by a new folder at the
        same path is not the root the lock protects.
        """
        if self._lock_fd is None:
            return
        try:
            now: tuple[int, int] | None = _identity(os.stat(self.root))
        except OSError:
            now = None
        if now != self._root_identity:
            raise RootReplacedError(
                f"{self.root} is no longer the folder robovid locked at start (it was moved, deleted or replaced). "
                "robovid stops rather than write into another folder; start it again on the root you mean."
            )

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
        for directory in (self.journal_dir, self.failed_dir, self.deferred_dir, self.retake_dir):
            removed += [Path(e.path) for e in os.scandir(directory) if is_temp_path(Path(e.path))]
        for directory in (inflight_dir(self.root), crashes_dir(self.root)):  # robovid_watch.crashguard's records
            with contextlib.suppress(FileNotFoundError):
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
        self.check_root()  # the last moment before a chunk file is touched
        write_bytes_durably(self.journal_dir / entry_name(intent.camera, intent.episode), json_bytes(intent.to_json()))

    def intents(self) -> list[Intent | DamagedIntent]:
        """Every journaled intent; a damaged one is quarantined and comes back as a :class:`DamagedIntent`."""
        out: list[Intent | DamagedIntent] = []
        for path in entries(self.journal_dir):
            intent = self.load_record(path, Intent.from_json)
            out.append(intent if intent is not None else _damaged(path))
        return out

    def intent(self, camera: str, episode: int) -> Intent | None:
        return self.load_record(self.journal_dir / entry_name(camera, episode), Intent.from_json)

    def clear_intent(self, camera: str, episode: int) -> None:
        unlink_durably([self.journal_dir / entry_name(camera, episode)])

    # failures --------------------------------------------------------------------------
    def record_failure(self, failure: Failure) -> None:
        write_bytes_durably(self.failed_dir / entry_name(failure.camera, failure.episode), json_bytes(asdict(failure)))

    def failure(self, camera: str, episode: int) -> Failure | None:
        return self.load_record(self.failed_dir / entry_name(camera, episode), lambda data: Failure(**data))

    def failures(self) -> list[Failure]:
        loaded = (self.load_record(path, lambda data: Failure(**data)) for path in entries(self.failed_dir))
        return [failure for failure in loaded if failure is not None]

    # deferrals: not the episode's fault, not parked by its folder -----------------------------
    def record_deferral(self, deferral: Deferral) -> None:
        write_bytes_durably(
            self.deferred_dir / entry_name(deferral.camera, deferral.episode), json_bytes(asdict(deferral))
        )

    def deferrals(self) -> list[Deferral]:
        loaded = (self.load_record(path, lambda data: Deferral(**data)) for path in entries(self.deferred_dir))
        return [deferral for deferral in loaded if deferral is not None]

    def clear_deferral(self, camera: str, episode: int) -> None:
        path = self.deferred_dir / entry_name(camera, episode)
        if path.exists():
            unlink_durably([path])

    # records read back are untrusted input ----------------------------------------------
    def load_record(self, path: Path, build: Callable[[dict[str, Any]], T]) -> T | None:
        """The record at ``path`` (None when there is none); a damaged one is quarantined, then None.

        Damaged means anything this version cannot use as it is: not a regular file, not UTF-8
        JSON, not an object, a field missing, unknown (written by another version) or of the wrong type.
        """
        try:
            return build(_read_json(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            if not self.read_only:
                self.quarantine(path, error)
            return None

    def quarantine(self, path: Path, error: BaseException) -> None:
        """Move a damaged record to the state's ``quarantine/`` folder (kept for a person to look at) and say so."""
        target = quarantine_dir(self.root) / f"{path.parent.name}--{path.name}--{time.time_ns()}"
        try:
            make_dirs_durably(target.parent)
            os.replace(path, target)
            fsync_dir(path.parent)
            fsync_dir(target.parent)
        except FileNotFoundError:
            return  # another look at it already moved it
        log.warning(
            "state_record_quarantined",
            path=str(path),
            moved_to=str(target),
            detail=f"{type(error).__name__}: {error}",
            action="nothing to do: robovid set the record aside and goes on (an episode it was about is redone "
            "from its PNGs or retried); look at the file if this repeats",
        )

    def clear_failure(self, camera: str, episode: int) -> None:
        path = self.failed_dir / entry_name(camera, episode)
        if path.exists():
            unlink_durably([path])

    # re-takes ---------------------------------------------------------------------------
    def request_retake(self, request: RetakeRequest) -> None:
        """Durable when this returns; written without the root lock (the service reads it on its next pass)."""
        make_dirs_durably(self.retake_dir)
        write_bytes_durably(self.retake_dir / entry_name(request.camera, request.episode), json_bytes(asdict(request)))

    def retake_request(self, camera: str, episode: int) -> RetakeRequest | None:
        return self.load_record(self.retake_dir / entry_name(camera, episode), lambda data: RetakeRequest(**data))

    def clear_retake(self, camera: str, episode: int) -> None:
        path = self.retake_dir / entry_name(camera, episode)
        if path.exists():
            unlink_durably([path])


@contextlib.contextmanager
def root_locked(root: Path) -> Iterator[RootState]:
    """Hold ``root``'s lock for a writing command (``robovid compact``); RootLockedError if it is taken."""
    state = RootState(root)
    state.acquire_lock()
    try:
        yield state
    finally:
        state.release_lock()


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _nonblocking(path: str, flags: int) -> int:
    """Open without blocking on a FIFO someone put where a file belongs."""
    return os.open(path, flags | os.O_NONBLOCK)


def json_bytes(data: dict[str, Any]) -> bytes:
    """A record's bytes as every state folder stores them (sorted keys, ASCII)."""
    return json.dumps(data, sort_keys=True, ensure_ascii=True).encode()


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a regular file; never blocks on a FIFO (ValueError for anything unusable)."""
    with open(path, "rb", opener=_nonblocking) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = json.loads(f.read())
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds {type(data).__name__}, not a JSON object")
    return data


def entries(directory: Path) -> list[Path]:
    """The records of a state folder, sorted (temp files of an interrupted write are not records)."""
    with contextlib.suppress(FileNotFoundError):
        return [
            Path(entry.path)
            for entry in sorted(os.scandir(directory), key=lambda e: e.name)
            if entry.name.endswith(".json") and not is_temp_path(Path(entry.path))
        ]
    return []


@dataclass(frozen=True)
class DamagedIntent:
    """A journal intent that could not be read (quarantined): only its file name is left to go by."""

    camera_id: str
    """:func:`camera_id` of its camera ("" when the name is not robovid's)."""
    episode: int | None


def _damaged(path: Path) -> DamagedIntent:
    camera, _, episode = path.stem.partition("--")
    return DamagedIntent(camera if episode else "", int(episode) if episode.isdigit() else None)
