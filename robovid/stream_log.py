"""The crash log of one streamed camera episode, and when its frames are safe from a power cut.

Every frame fed to a :class:`robovid.StreamingVideoEncoder` is appended, raw RGB followed by its
index and CRC-32 (:data:`robovid.stream_files.TRAILER`), to ``raw-JJJJJJ.rgb`` (the frames of
segment ``J``) by the feeding thread before it is queued for the encoder. The log is deleted once its segment is published (fsynced) or, for spilled frames, once
they are fsynced PNGs. The durability contract (README "Streaming"):

- **``feed_frame`` returned**: the frame survives the death of the recording process (its bytes
  are in the kernel's page cache, which robovid-watch salvages from).
- **``durable_frames[camera] > i``**: frame ``i`` also survives a power cut. With ``power_safe``
  (the default with ``handoff``), a sync thread ``fdatasync``s the log as soon as frames are
  added (each sync covers every frame written before it started: a group commit) and ``fsync``s
  the folder when a new log file appears; the count is raised only after those calls returned.
  So a power cut loses at most the frames fed during the last sync or two (typically a few
  frames; ``benchmarks/bench_streaming.py`` measures the lag). The recorder's thread never waits
  for the disk: a slow ``fdatasync`` delays only the durable count, never a ``feed_frame``.
- **``finish_episode`` returned**: every frame of the episode is durable (segments, PNGs, the
  ``finished.json`` record).

Without ``power_safe`` the log is never synced and is deleted before the kernel writes it back
(30 s), so it costs no disk writes; a power cut then loses what was not yet in a segment.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from robovid._movie import read_movie
from robovid.durable import fsync_dir, fsync_file
from robovid.errors import FrameSequenceError, StreamingError
from robovid.stream_files import (
    Finished,
    StreamInfo,
    log_record_ok,
    log_trailer,
    png_indices,
    published_segments,
    raw_path,
    segment_path,
    write_png,
)


class CrashLog:
    """``raw-J.rgb`` files of one camera episode: appended by the feeding thread, synced by a thread of its own."""

    def __init__(self, folder: Path, segment_frames: int, power_safe: bool) -> None:
        self.folder, self.segment_frames, self.power_safe = folder, segment_frames, power_safe
        self._fd: int | None = None
        self._number = -1
        self._cond = threading.Condition()
        self._written = 0
        """Frames 0.._written-1 are wholly in the log (page cache)."""
        self._durable = 0
        """Frames 0.._durable-1 are durable: their log bytes and its folder entry fsynced."""
        self._to_close: list[int] = []
        """Descriptors of earlier log files: synced once more by the sync thread, then closed."""
        self._new_entry = False
        self._closing = False
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def durable_frames(self) -> int:
        return self._durable

    def append(self, index: int, rgb: npt.NDArray[np.uint8]) -> None:
        """Write frame ``index`` (frames come 0, 1, 2, ...) into its segment's log; never waits for the disk."""
        self._check()
        number = index // self.segment_frames
        if number != self._number:
            fd = os.open(raw_path(self.folder, number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            with self._cond:
                if self._fd is not None:
                    self._to_close.append(self._fd)
                self._fd, self._number, self._new_entry = fd, number, True
            self._start()
        assert self._fd is not None
        data = memoryview(rgb.data).cast("B")
        start = os.fstat(self._fd).st_size
        try:
            for view in (data, memoryview(log_trailer(index, data))):  # the trailer last: a record is whole once it is
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError as error:
            self._take_back(self._fd, index, start, error)
        with self._cond:
            self._written = index + 1
            self._cond.notify_all()

    def _take_back(self, fd: int, index: int, start: int, error: OSError) -> None:
        """A record cut short (disk full) is cut off, so the next one is written where it belongs; then raise."""
        try:
            os.ftruncate(fd, start)
        except OSError as truncate_error:
            self.error = truncate_error  # records are read at fixed offsets: no later frame may follow this one
        raise StreamingError(
            f"Frame {index} could not be written to the crash log in {self.folder} ({error}); it was not fed. Free "
            "disk space, then feed it again."
        ) from error

    def wait_durable(self, timeout: float | None = None) -> int:
        """Wait until every frame written so far is durable (or ``timeout``); the durable count."""
        with self._cond:
            self._cond.wait_for(lambda: self._durable >= self._written or self.error is not None, timeout)
        self._check()
        return self._durable

    def _check(self) -> None:
        if self.error is not None:
            raise StreamingError(
                f"The crash log in {self.folder} could not be synced to disk ({self.error}): the frames fed are safe "
                "from a crash of this process but not from a power cut. Check the disk."
            ) from self.error

    def close(self, sync: bool = True) -> None:
        """Stop the sync thread (after a last sync of every frame, with ``sync``) and close the files."""
        try:
            if sync and self._thread is not None:
                self.wait_durable()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            for fd in [*self._to_close, *([self._fd] if self._fd is not None else [])]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._to_close, self._fd = [], None

    def _start(self) -> None:
        if self.power_safe and self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="robovid-stream-sync")
            self._thread.start()
        elif not self.power_safe:
            for fd in self._to_close:  # nothing to sync: close what the feeding thread left
                os.close(fd)
            self._to_close = []

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._written > self._durable or self._closing)
                    if self._closing:
                        return
                    target, current, earlier, new_entry = self._written, self._fd, self._to_close, self._new_entry
                    self._to_close, self._new_entry = [], False
                for fd in earlier:
                    os.fdatasync(fd)
                    os.close(fd)
                if current is not None:
                    os.fdatasync(current)
                if new_entry:
                    fsync_dir(self.folder)
                with self._cond:
                    self._durable = target
                    self._cond.notify_all()
        except BaseException as error:  # raised to the recorder by its next feed_frame / finish_episode
            with self._cond:
                self.error = error
                self._cond.notify_all()


# salvage -----------------------------------------------------------------------------------------
def salvage(folder: Path, png_dir: Path) -> Finished | None:
    """Finish the folder of a writer that died (the caller holds its lock); None when it holds no frame.

    Every frame in the crash log whose segment was not published becomes a PNG in ``png_dir``
    (fsynced; a PNG the kill cut short is deleted: its frame is in the log), then ``finished.json`` is
    written, then the log is deleted. Running it again after a crash part way redoes the same.

    The episode ends at the first frame found nowhere: after a power cut a log may end in a partial
    record, or lose frames that were never durable (a later log's frames may have reached the disk
    first). Those frames after the torn end are left out (``Finished.torn_frames`` counts them):
    they were never counted durable, and without the missing one they cannot be played in order.
    FrameSequenceError when a PNG lies after the torn end (a frame fsynced after a lost one: the
    disk did not keep its order); everything is kept then.
    """
    info = StreamInfo.read(folder)
    if info is None:
        return None
    segments = published_segments(folder)
    # the last segment is short when finish_episode published it and died before finished.json: count, never assume
    prefix = sum(read_movie(segment_path(folder, n)).num_frames for n in segments)
    logged = _logged_frames(folder, info, len(segments))
    pngs = set(png_indices(png_dir))
    end = prefix
    while end in logged or end in pngs:
        end += 1
    after = sorted(i for i in pngs if i > end)
    if after:
        raise FrameSequenceError(
            f"{folder}: the streamed episode's frame {end} is in no segment, crash log or PNG in {png_dir}, but "
            f"frames {after[:10]} after it are PNGs; the segments, crash log and PNGs are kept. Check the disk."
        )
    written = []
    for index in range(prefix, end):
        if index not in pngs:
            raw, record = logged[index]
            png_dir.mkdir(parents=True, exist_ok=True)
            written.append(write_png(png_dir, index, _read_record(raw, record, info)))
    for part in png_dir.glob(".frame-*.png.part"):  # a PNG cut short by the kill: its frame is in the log
        part.unlink()
    for path in written:
        fsync_file(path)
    if written:
        fsync_dir(png_dir)
    finished = Finished(end, prefix, salvaged=True, torn_frames=sum(1 for i in logged if i > end))
    finished.write(folder)
    for raw in sorted(folder.glob("raw-*.rgb")):
        raw.unlink()
    fsync_dir(folder)
    return finished


def _logged_frames(folder: Path, info: StreamInfo, published: int) -> dict[int, tuple[Path, int]]:
    """Frame index -> (log file, record) of every whole record in the logs of unpublished segments.

    A partial record at a log's end (a write cut short, a power cut) is not a frame; nor, in a log
    with trailers, is a record whose trailer does not match its bytes: after a power cut a file may
    hold blocks the disk never received (zero-filled on XFS and others, or stale).
    """
    frames: dict[int, tuple[Path, int]] = {}
    for raw in sorted(folder.glob("raw-*.rgb")):  # spilled frames' logs may be gone already (all PNGs)
        number = int(raw.stem[4:])
        if number < published:
            continue
        with open(raw, "rb") as log:
            for record in range(os.fstat(log.fileno()).st_size // info.record_bytes):
                index = number * info.segment_frames + record
                if info.log_format >= 2 and not log_record_ok(index, log.read(info.record_bytes), info.frame_bytes):
                    continue
                frames[index] = (raw, record)
    return frames


def _read_record(raw: Path, record: int, info: StreamInfo) -> npt.NDArray[np.uint8]:
    with open(raw, "rb") as log:
        log.seek(record * info.record_bytes)
        data = log.read(info.frame_bytes)
    return np.frombuffer(data, np.uint8).reshape(info.height, info.width, 3)
