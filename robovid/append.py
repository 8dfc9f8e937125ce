"""Append an encoded episode to a chunk MP4 without rewriting what is already there.

Layout of a chunk after a few appends::

    ftyp | mdat(ep 0) | uuid | free(old moov) | mdat(ep 1) | uuid | free(old moov) | mdat(ep 2) | uuid | moov

An append writes the episode's samples as a new ``mdat``, its identity record (a ``uuid`` box,
:mod:`robovid._records`, when the caller says whose samples they are) and a merged ``moov``
after the live ``moov``, fsyncs, then commits with one 4-byte write that renames
the old ``moov`` to ``free`` and fsyncs again. Until that write, every reader
(FFmpeg, PyAV, torchcodec) sees the old complete file, because the first ``moov``
wins; after it, the new one. A crash in between leaves an uncommitted tail that
the next append truncates. Bytes written per append: the episode's samples plus
one ``moov`` (~9 bytes per frame in the chunk); old sample data is never touched.

This module is the protocol (append, undo, recover); the movie it reads and merges
is :mod:`robovid._movie`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from robovid import _mp4, _records
from robovid._faults import fault_point
from robovid._movie import (
    Movie,
    VideoSegment,
    check_compatible,
    check_constant_rate,
    concat_tables,
    count_frames,
    moov_bytes,
    read_movie,
    relocated,
    write_movie,
    write_samples,
)
from robovid.durable import atomic_output, fsync_dir, make_dirs_durably
from robovid.errors import VideoFormatError

__all__ = ["VideoSegment", "append_video", "count_frames", "read_segment", "recover_chunk", "undo_append"]

_TAIL_TYPES = {b"mdat", b"moov", b"free", b"uuid"}


class _LiveMovies:
    """The parsed live movie of the chunks this process appended to last, bounded (LRU).

    A chunk's live ``moov`` lies behind two boxes per appended episode; finding and
    parsing it again on every append would make the n-th append cost more than the first.
    An entry is used only while the file is as the append left it: same device, inode,
    size, mtime and ctime, and the two box headers a crash, a recovery or an undo would
    change (the live ``moov`` ending the file, and the old one before it still ``free``).
    Anything else means the file is read again. Only appends use it; reads never do.
    """

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, int], tuple[tuple[int, int, int], Movie]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key_and_stamp(st: os.stat_result) -> tuple[tuple[int, int], tuple[int, int, int]]:
        return (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def take(self, f: BinaryIO) -> Movie | None:
        """The movie of open file ``f`` if unchanged since it was put; removed, as the caller will edit it."""
        st = os.fstat(f.fileno())
        key, stamp = self._key_and_stamp(st)
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is None or entry[0] != stamp:
            return None
        movie = entry[1]
        fd = f.fileno()
        live = movie.moov_box
        expected = [(live, b"moov"), *[(b, b"free") for b in movie.top[:-1] if b.type == b"free"][-1:]]
        for box, box_type in expected:
            if os.pread(fd, 8, box.offset)[4:] != box_type:
                return None
        return movie if live.end == st.st_size else None

    def put(self, f: BinaryIO, movie: Movie) -> None:
        key, stamp = self._key_and_stamp(os.fstat(f.fileno()))
        with self._lock:
            self._entries[key] = (stamp, movie)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


_live_movies = _LiveMovies()


def read_segment(chunk_path: Path | str, first_frame: int, num_frames: int) -> VideoSegment:
    """The segment of an already appended episode, from the chunk's own timestamps."""
    return read_movie(Path(chunk_path)).segment(first_frame, num_frames)


def append_video(
    chunk_path: Path | str,
    episode_video_path: Path | str | BinaryIO,
    identity: Mapping[str, Any] | None = None,
) -> VideoSegment:
    """Append one encoded episode to a chunk MP4 (created if absent) and say where it landed.

    Stream copy: the episode's compressed samples are copied byte for byte. The chunk
    and the episode must share codec configuration, size, pixel format and frame rate
    (MismatchedVideosError otherwise, before anything is written), and the episode's frames must all be equally
    long (UnevenFrameTimingError: re-encode it at a constant rate, :func:`robovid.reencode_video`). Crash-safe: after a
    crash at any point, the chunk reads as either before or after this append. Two
    processes appending to one chunk are serialized by an exclusive ``flock``.
    ``episode_video_path`` may also be a readable, seekable binary file object (an
    episode encoded in memory), so the episode is not written to disk twice. ``identity`` (JSON
    values; robovid-watch passes the episode's segment row) is written into the chunk with the
    samples, in the same commit, as the record of whose frames they are (:mod:`robovid._records`):
    ``robovid verify --repair`` rebuilds a lost row from it.
    """
    episode = _open_episode(episode_video_path)
    records = None if identity is None else [_records.run_entry(episode, 0, episode.num_frames, identity)]
    return append_movie(Path(chunk_path), episode, records)


def append_movie(chunk_path: Path, episode: Movie, records: list[dict[str, Any]] | None = None) -> VideoSegment:
    """:func:`append_video` of an already parsed movie (for example a slice of a chunk file, to merge roots).

    ``records``: the run records of its samples, numbered from its first sample
    (:func:`robovid._records.run_entry`); None keeps those the movie carries.
    """
    if episode.num_frames == 0:
        raise VideoFormatError(f"{episode.path}: the episode video holds no frames.")
    check_constant_rate(episode)  # also for a new chunk file, which check_compatible never sees
    if records is not None:
        episode = dataclasses.replace(episode, records=records)
    make_dirs_durably(chunk_path.parent)
    while True:
        if not chunk_path.exists():
            with _directory_lock(chunk_path.parent):  # two creators: the second appends to the first's file
                if not chunk_path.exists():
                    return _create_chunk(chunk_path, episode)
        with open(chunk_path, "r+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            if _replaced(f, chunk_path):
                continue  # compacted (renamed over) while this call waited for the lock: use the new file
            chunk = _live_movies.take(f) or read_movie(chunk_path, f)
            tail_start = _drop_uncommitted_tail(f, chunk)
            check_compatible(chunk, episode)
            segment, after = _append_after(f, chunk, episode, tail_start)
            _live_movies.put(f, after)
            return segment


def _replaced(f: BinaryIO, path: Path) -> bool:
    """True if ``path`` no longer names the file open as ``f``."""
    held = os.fstat(f.fileno())
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return True
    return (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino)


def _open_episode(episode: Path | str | BinaryIO) -> Movie:
    if isinstance(episode, (str, os.PathLike)):
        path = Path(episode)
        if not path.is_file():
            raise FileNotFoundError(f"Episode video not found: {path}")
        return read_movie(path)
    name = getattr(episode, "name", None)  # None for a SpooledTemporaryFile still in memory
    where = Path(os.fsdecode(name)) if isinstance(name, (str, bytes, os.PathLike)) else Path("<episode in memory>")
    movie = read_movie(where, episode)
    movie.source = episode
    return movie


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def undo_append(segment: VideoSegment) -> None:
    """Take back the append that produced ``segment`` (it must be the chunk's last).

    For a chunk created by that append, the file is removed. Otherwise the previous
    movie box, kept as ``free`` right before the appended samples, becomes the live
    movie again (one 4-byte write, fsynced) and the appended tail is truncated.
    """
    path = segment.path
    if segment.first_frame == 0:
        if count_frames(path) != segment.num_frames:
            raise VideoFormatError(f"{path}: the segment to undo is not the chunk's only append.")
        path.unlink()
        fsync_dir(path.parent)
        return
    with open(path, "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        movie = read_movie(path, f)
        if movie.num_frames != segment.first_frame + segment.num_frames:
            raise VideoFormatError(f"{path}: the segment to undo is not the chunk's last append.")
        boxes = movie.top
        index = boxes.index(movie.moov_box)
        if index >= 1 and boxes[index - 1].type == b"uuid":
            index -= 1  # the append's record
        if index < 2 or boxes[index - 1].type != b"mdat" or boxes[index - 2].type != b"free":
            raise VideoFormatError(f"{path}: the previous movie box is not where an append leaves it.")
        previous = boxes[index - 2]
        f.seek(previous.offset + 4)
        f.write(b"moov")
        f.flush()
        os.fsync(f.fileno())
        if read_movie(path, f).num_frames != segment.first_frame:
            raise VideoFormatError(f"{path}: the previous movie box does not hold {segment.first_frame} frames.")
        f.truncate(previous.end)
        f.flush()
        os.fsync(f.fileno())


def recover_chunk(chunk_path: Path | str) -> bool:
    """Drop an uncommitted append left by a crash; True if anything was dropped."""
    path = Path(chunk_path)
    with open(path, "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        chunk = read_movie(path, f)
        size_before = os.fstat(f.fileno()).st_size
        return _drop_uncommitted_tail(f, chunk) < size_before


def _drop_uncommitted_tail(f: BinaryIO, chunk: Movie) -> int:
    """Truncate what follows the live movie (an interrupted append); return the new end."""
    data_end = chunk.data_extent()[1]
    referenced_end = max(chunk.moov_box.end, data_end)
    # Everything the live moov needs ends at a box boundary at or after referenced_end.
    tail_start = next((b.end for b in chunk.top if b.offset < referenced_end <= b.end), referenced_end)
    size = os.fstat(f.fileno()).st_size
    if size > tail_start:
        foreign = [b.type for b in chunk.top if b.offset >= tail_start and b.type not in _TAIL_TYPES]
        if foreign:
            raise VideoFormatError(
                f"{chunk.path}: unexpected boxes {foreign} after the movie; robovid will not truncate them. "
                "Move this file aside so a new chunk file is started."
            )
        f.truncate(tail_start)
        f.flush()
        os.fsync(f.fileno())
    return tail_start


def _append_after(f: BinaryIO, chunk: Movie, episode: Movie, position: int) -> tuple[VideoSegment, Movie]:
    """Append at ``position`` (the end of the live movie); the segment and the chunk's new live movie."""
    copied = write_samples(f, episode, position)
    mdat_end = f.tell()
    record = _records.record_box(_records.shifted(_records.read_records(episode), chunk.num_frames))
    f.write(record)
    f.flush()
    fault_point("append:after-mdat")
    merged = concat_tables(chunk.table, relocated(episode, copied))
    moov = moov_bytes(chunk, merged)  # chunk.moov now holds the new movie box
    f.write(moov)
    f.flush()
    os.fsync(f.fileno())
    fault_point("append:before-flip")
    end = f.tell()
    # The commit point: the old moov becomes padding, the new one is the first moov.
    f.seek(chunk.moov_box.offset + 4)
    f.write(b"free")
    f.flush()
    os.fsync(f.fileno())
    old = chunk.moov_box
    top = [dataclasses.replace(b, type=b"free") if b == old else b for b in chunk.top if b.end <= position]
    top += [
        _mp4.TopBox(b"mdat", position, mdat_end - position, copied[0][1] - position),
        *([_mp4.TopBox(b"uuid", mdat_end, len(record), 8)] if record else []),
        _mp4.TopBox(b"moov", mdat_end + len(record), len(moov), 16 if moov[:4] == b"\x00\x00\x00\x01" else 8),
    ]
    after = dataclasses.replace(chunk, table=merged, top=top, moov_box=top[-1])
    return after.segment(chunk.num_frames, episode.num_frames, bytes_written=end - position + 4), after


def _create_chunk(chunk_path: Path, episode: Movie) -> VideoSegment:
    """Write a new chunk holding only this episode, published atomically."""
    with atomic_output(chunk_path) as temp, open(temp, "w+b") as out:
        write_movie(out, [episode])
        written = out.tell()
        fault_point("append:creating")
    return read_movie(chunk_path).segment(0, episode.num_frames, bytes_written=written)
