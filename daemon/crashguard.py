"""The encoder-crash guard: a native crash on one episode's content does not stop the service for every other one.

A crash inside native code (a segfault in libx265, an abort in FFmpeg) kills the whole process: no Python
exception, no failure record. systemd restarts robovid-watch, and when the crash is deterministic for an
episode's content (a "poison episode") it would crash again at every start, and no other episode would ever
be processed again. So:

1. While the service runs, :mod:`faulthandler` writes to :func:`~robovid.layout.crash_file_path`: a native
   crash (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) leaves the tracebacks of every thread there; kill -9, a
   power cut or a stop leave it empty.
2. Before a worker starts an episode, a durable in-flight marker names it and its thread; the marker goes
   when the attempt ends in any handled way (done, failed, deferred, stopped).
3. At the next start a non-empty crash file is kept (``crashes/crash-<time>.log``) and each episode that was
   in flight gets a crash record, keyed with its folder signature (a changed folder starts afresh). An episode
   *surely* caused the crash when the crashing thread was its worker, or it was the only one in flight; after
   :data:`PARK_AFTER_CRASHES` such crashes it fails with :class:`~robovid_watch.errors.EncoderCrashedError`
   (parked until its folder changes, PNGs kept). Every episode with a crash record is a *suspect*: the
   scheduler runs it alone, so an innocent neighbour is never blamed.

Markers left without a crash file (kill -9, a power cut) change nothing: those episodes are retried as always.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import structlog

from robovid.durable import fsync_dir, make_dirs_durably, unlink_durably, write_bytes_durably
from robovid.layout import crash_file_path, crashes_dir, inflight_dir

from .discover import EpisodeRef, folder_signature
from .errors import EncoderCrashedError
from .state import RootState, entries, entry_name, json_bytes

log = structlog.get_logger("robovid_watch")

PARK_AFTER_CRASHES = 2
"""Native crashes an episode surely caused before it is failed (one may be a fluke of the machine)."""
KEEP_CRASH_LOGS = 10
"""Crash logs kept in :func:`~robovid.layout.crashes_dir`; older ones are removed."""
_CURRENT_THREAD = re.compile(r"^Current thread (0x[0-9a-fA-F]+)", re.MULTILINE)


@dataclass
class InFlight:
    """An episode a worker is working on (its marker exists only while the attempt runs)."""

    camera: str
    episode: int
    path: str
    thread: int
    """The worker's :func:`threading.get_ident`, as faulthandler names the thread that crashed."""
    started_at: float


@dataclass
class CrashRecord:
    """An episode that was in flight when the service crashed natively."""

    camera: str
    episode: int
    path: str
    signature: str
    """:func:`~robovid_watch.discover.folder_signature` of the folder it crashed on: a changed folder starts afresh."""
    crashes: int = 0
    """Native crashes while it was in flight."""
    sure_crashes: int = 0
    """Of those, the ones it surely caused: its own worker crashed, or nothing else was in flight."""
    crash_logs: list[str] = field(default_factory=list)
    """The kept crash logs of its crashes (faulthandler's tracebacks)."""
    last_crash_at: float = 0.0


class CrashGuard:
    """Crash file, in-flight markers and crash records of one root (see the module's docstring)."""

    def __init__(self, state: RootState, vcodec: str) -> None:
        self.state = state
        self.vcodec = vcodec
        self.crash_file = crash_file_path(state.root)
        self.crashes_dir = crashes_dir(state.root)
        self.inflight_dir = inflight_dir(state.root)
        self._records: dict[tuple[str, int], CrashRecord] = {}
        self._file: TextIO | None = None
        self._was_enabled = False
        self._lock = threading.Lock()

    # start and stop ----------------------------------------------------------------------
    def start(self) -> list[tuple[EpisodeRef, EncoderCrashedError]]:
        """Judge what the previous run left, then arm faulthandler; the episodes to fail now, with their errors."""
        for directory in (self.crashes_dir, self.inflight_dir):
            make_dirs_durably(directory)
        markers = [
            (path, self.state.load_record(path, lambda data: InFlight(**data))) for path in entries(self.inflight_dir)
        ]
        in_flight = [marker for _, marker in markers if marker is not None]
        kept = self._keep_crash_file()
        to_fail = self._blame(in_flight, kept) if kept is not None else []
        unlink_durably([path for path, _ in markers])
        self._records = {(r.camera, r.episode): r for r in self._current_records()}
        self._was_enabled = faulthandler.is_enabled()  # PYTHONFAULTHANDLER, or a test runner's
        self._file = open(self.crash_file, "w")  # noqa: SIM115  # held open for faulthandler until close()
        faulthandler.enable(self._file, all_threads=True)
        return to_fail

    def close(self) -> None:
        """At a clean stop: faulthandler back as it was (to stderr, or off); the crash file stays empty."""
        if self._file is not None:
            faulthandler.disable()
            if self._was_enabled:
                faulthandler.enable(sys.stderr, all_threads=True)
            self._file.close()
            self._file = None

    def crash_logs(self) -> list[str]:
        """The kept crash logs, oldest first."""
        return kept_crash_logs(self.state.root)

    # while running ---------------------------------------------------------------------
    @contextlib.contextmanager
    def in_flight(self, ref: EpisodeRef) -> Iterator[None]:
        """Mark ``ref`` in flight (durably) for the block; called on the worker thread that processes it."""
        path = self.inflight_dir / entry_name(ref.camera, ref.episode)
        marker = InFlight(ref.camera, ref.episode, str(ref.path), threading.get_ident(), time.time())
        write_bytes_durably(path, json_bytes(asdict(marker)))
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # a marker left behind matters only if a native crash follows
                unlink_durably([path])

    def is_suspect(self, key: tuple[str, int]) -> bool:
        """The episode was in flight during a native crash: it runs alone."""
        with self._lock:
            return key in self._records

    def forget(self, key: tuple[str, int]) -> None:
        """The episode is done: its crash record goes."""
        with self._lock:
            record = self._records.pop(key, None)
        if record is not None:
            with contextlib.suppress(OSError):  # the state folder deleted under it: the next start drops the record
                unlink_durably([self.crashes_dir / entry_name(*key)])

    # judging a crash -------------------------------------------------------------------
    def _keep_crash_file(self) -> Path | None:
        """A non-empty crash file renamed aside as ``crash-<time>.log`` (None when nothing crashed)."""
        try:
            st = os.stat(self.crash_file)
        except FileNotFoundError:
            return None
        if st.st_size == 0:
            return None
        stamp = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        kept = self.crashes_dir / f"crash-{stamp}.log"
        os.replace(self.crash_file, kept)
        fsync_dir(self.crash_file.parent)
        fsync_dir(self.crashes_dir)
        unlink_durably([Path(p) for p in self.crash_logs()[:-KEEP_CRASH_LOGS]])
        return kept

    def _blame(self, in_flight: list[InFlight], kept: Path) -> list[tuple[EpisodeRef, EncoderCrashedError]]:
        """Count the crash against the episodes that may have caused it; those surely at fault twice are returned."""
        crashed = _crashed_thread(kept)
        culprits = [m for m in in_flight if m.thread == crashed] or in_flight
        sure = len(culprits) == 1
        to_fail = []
        for marker in culprits:
            record = self._record_for(marker)
            record.crashes += 1
            record.sure_crashes += int(sure)
            record.crash_logs = [*record.crash_logs, str(kept)][-KEEP_CRASH_LOGS:]
            record.last_crash_at = time.time()
            write_bytes_durably(
                self.crashes_dir / entry_name(record.camera, record.episode), json_bytes(asdict(record))
            )
            if record.sure_crashes >= PARK_AFTER_CRASHES:
                to_fail.append((EpisodeRef(marker.episode, marker.camera, Path(marker.path)), self._error(record)))
        log.error(
            "native_crash_found",
            crash_log=str(kept),
            in_flight=[{"camera": m.camera, "episode": m.episode} for m in in_flight],
            blamed=[{"camera": m.camera, "episode": m.episode, "sure": sure} for m in culprits],
            action="robovid-watch crashed in native code (see the crash log); episodes in flight then run alone, "
            f"and one that crashes it {PARK_AFTER_CRASHES} times alone is failed with its PNGs kept. Report the crash "
            "log; if it repeats, try another ROBOVID_VCODEC",
        )
        return to_fail

    def _record_for(self, marker: InFlight) -> CrashRecord:
        """The episode's crash record, fresh when there is none or its folder changed since."""
        path = self.crashes_dir / entry_name(marker.camera, marker.episode)
        record = self.state.load_record(path, _record_from_json)
        signature = folder_signature(Path(marker.path))
        if record is None or record.signature != signature:
            record = CrashRecord(marker.camera, marker.episode, marker.path, signature)
        return record

    def _current_records(self) -> Iterator[CrashRecord]:
        """The crash records still about their folder as it is; the others are removed."""
        for path in entries(self.crashes_dir):
            record = self.state.load_record(path, _record_from_json)
            if record is not None and record.signature == folder_signature(Path(record.path)):
                yield record
            elif record is not None:
                unlink_durably([path])

    def _error(self, record: CrashRecord) -> EncoderCrashedError:
        return EncoderCrashedError(
            f"{record.path}: robovid-watch crashed natively (a segmentation fault or abort in native code, most "
            f"likely the {self.vcodec} encoder library) {record.sure_crashes} times while it processed this episode "
            "alone, so the episode is set aside and the service goes on with the others. Its PNGs were kept. The "
            f"crash tracebacks are in {', '.join(record.crash_logs)}: report them. Try another codec (set "
            "ROBOVID_VCODEC, e.g. h264 or libsvtav1, and restart robovid-watch); then retry the episode by touching a "
            "file in its folder (any change to the folder retries it)."
        )


def crash_records(state: RootState) -> list[CrashRecord]:
    """Every crash record of the root (for ``robovid status``)."""
    loaded = (state.load_record(path, _record_from_json) for path in entries(crashes_dir(state.root)))
    return [record for record in loaded if record is not None]


def kept_crash_logs(root: Path) -> list[str]:
    """The kept crash logs of a root, oldest first."""
    with contextlib.suppress(FileNotFoundError):
        return sorted(
            entry.path
            for entry in os.scandir(crashes_dir(root))
            if entry.name.startswith("crash-") and entry.name.endswith(".log")
        )
    return []


def _record_from_json(data: dict[str, object]) -> CrashRecord:
    return CrashRecord(**data)  # type: ignore[arg-type]  # a wrong type is caught as damage by RootState.load_record


def _crashed_thread(crash_log: Path) -> int | None:
    """The thread faulthandler says crashed ("Current thread 0x..."), None when the log does not say."""
    try:
        match = _CURRENT_THREAD.search(crash_log.read_text(errors="replace"))
    except OSError:
        return None
    return int(match.group(1), 16) if match else None
