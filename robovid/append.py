"""Append an encoded episode to a chunk MP4 without rewriting what is already there.

Layout of a chunk after a few appends::

    ftyp | mdat(ep 0) | free(old moov) | mdat(ep 1) | free(old moov) | mdat(ep 2) | moov

An append writes the episode's samples as a new ``mdat`` and a merged ``moov``
after the live ``moov``, fsyncs, then commits with one 4-byte write that renames
the old ``moov`` to ``free`` and fsyncs again. Until that write, every reader
(FFmpeg, PyAV, torchcodec) sees the old complete file, because the first ``moov``
wins; after it, the new one. A crash in between leaves an uncommitted tail that
the next append truncates. Bytes written per append: the episode's samples plus
one ``moov`` (~9 bytes per frame in the chunk); old sample data is never touched.

Episode boundaries are computed from the integer sample timestamps in the file,
never by summing float durations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from robovid import _mp4
from robovid._faults import fault_point
from robovid.durable import atomic_output, copy_range, fsync_dir, make_dirs_durably
from robovid.errors import MismatchedVideosError, VideoFormatError

_TAIL_TYPES = {b"mdat", b"moov", b"free"}


@dataclass(frozen=True)
class VideoSegment:
    """Where one episode lies inside a chunk video file."""

    path: Path
    """The chunk file."""
    from_timestamp: float
    """Presentation time of the episode's first frame in the chunk, in seconds."""
    to_timestamp: float
    """End of the episode's last frame (``from_timestamp`` + its duration), in seconds."""
    first_frame: int
    """Index of the episode's first frame among all frames of the chunk."""
    num_frames: int
    """Frames of this episode."""
    bytes_written: int = 0
    """Bytes this append wrote to the chunk file (0 when only read back)."""


@dataclass
class Movie:
    """The live ``moov`` of an MP4 file, parsed, plus where things lie in the file."""

    path: Path
    top: list[_mp4.TopBox]
    moov_box: _mp4.TopBox
    moov: _mp4.Box
    table: _mp4.SampleTable
    media_timescale: int
    movie_timescale: int
    edit_media_time: int
    source: BinaryIO | None = None
    """Where to read sample data from when it is not the file at ``path`` (an in-memory encode)."""

    @contextlib.contextmanager
    def data(self) -> Iterator[BinaryIO]:
        """A readable handle on the movie's bytes."""
        if self.source is not None:
            yield self.source
        else:
            with open(self.path, "rb") as f:
                yield f

    @property
    def trak(self) -> _mp4.Box:
        return video_trak(self.moov, str(self.path))

    @property
    def stbl(self) -> _mp4.Box:
        where = str(self.path)
        return self.trak.need(b"mdia", where).need(b"minf", where).need(b"stbl", where)

    @property
    def num_frames(self) -> int:
        return self.table.num_samples

    def chunk_extents(self) -> tuple[np.ndarray, np.ndarray]:
        """Offset and byte length of every non-empty mp4 chunk of samples, in table order."""
        t = self.table
        nonempty = t.chunk_sample_counts > 0
        firsts = (np.cumsum(t.chunk_sample_counts) - t.chunk_sample_counts)[nonempty]
        lengths = np.add.reduceat(t.sizes, firsts) if firsts.shape[0] else np.zeros(0, np.int64)
        return t.chunk_offsets[nonempty], lengths

    def data_extent(self) -> tuple[int, int]:
        """First and one-past-last byte of the sample data the table points at."""
        offsets, lengths = self.chunk_extents()
        if offsets.shape[0] == 0:
            return (0, 0)
        return int(offsets.min()), int((offsets + lengths).max())

    def sample_runs(self) -> list[tuple[int, int]]:
        """The sample data as (offset, length) runs in file order; touching chunks merged, gaps (``free`` boxes) left out."""
        offsets, lengths = self.chunk_extents()
        runs: list[tuple[int, int]] = []
        order = np.argsort(offsets, kind="stable")
        for offset, length in zip(offsets[order].tolist(), lengths[order].tolist(), strict=True):
            if runs and offset <= runs[-1][0] + runs[-1][1]:
                start, run_length = runs[-1]
                runs[-1] = (start, max(run_length, offset + length - start))
            else:
                runs.append((offset, length))
        return runs

    def frame_start_ticks(self, first: int = 0, count: int | None = None) -> np.ndarray:
        """Presentation time in media ticks of frames ``first .. first+count-1`` (decode order)."""
        durations = self.table.durations
        stop = durations.shape[0] if count is None else first + count
        dts = int(durations[:first].sum()) + np.concatenate(([0], np.cumsum(durations[first:stop])[:-1]))
        ctts = self.table.composition_offsets
        pts = dts + (ctts[first:stop] if ctts is not None else 0)
        return pts - self.edit_media_time

    def segment(self, first_frame: int, num_frames: int, bytes_written: int = 0) -> VideoSegment:
        """The segment of frames ``[first_frame, first_frame + num_frames)`` in decode order."""
        if first_frame < 0 or num_frames < 1 or first_frame + num_frames > self.num_frames:
            raise VideoFormatError(
                f"{self.path}: frames {first_frame}..{first_frame + num_frames - 1} are not in this file "
                f"({self.num_frames} frames)."
            )
        pts = self.frame_start_ticks(first_frame, num_frames)
        start = int(pts.min())
        end = start + int(self.table.durations[first_frame : first_frame + num_frames].sum())
        scale = self.media_timescale
        return VideoSegment(self.path, start / scale, end / scale, first_frame, num_frames, bytes_written)


def video_trak(moov: _mp4.Box, where: str) -> _mp4.Box:
    """The single video track of a movie; VideoFormatError for anything else."""
    traks = [c for c in moov.children if c.type == b"trak"]
    if len(traks) != 1:
        raise VideoFormatError(
            f"{where}: robovid appends to files with exactly one (video) track; this one has {len(traks)}."
        )
    hdlr = traks[0].need(b"mdia", where).need(b"hdlr", where).payload
    if hdlr[8:12] != b"vide":
        raise VideoFormatError(f"{where}: the only track is not a video track.")
    return traks[0]


def read_movie(path: Path, f: BinaryIO | None = None) -> Movie:
    """Parse the live (first) ``moov`` of an MP4 file."""
    where = str(path)
    own = f is None
    handle = open(path, "rb") if f is None else f  # noqa: SIM115 - closed below when we opened it
    try:
        size = handle.seek(0, os.SEEK_END)
        top = _mp4.scan_top_level(handle, size, where)
        moov_box = next((b for b in top if b.type == b"moov"), None)
        if moov_box is None:
            raise VideoFormatError(f"{where}: no 'moov' box; the file is not a finished MP4 (still being written?).")
        handle.seek(moov_box.offset + moov_box.header_size)
        body = handle.read(moov_box.size - moov_box.header_size)
    finally:
        if own:
            handle.close()
    try:
        return _parse_movie(path, top, moov_box, body, where)
    except (ValueError, struct.error, IndexError) as error:
        if isinstance(error, VideoFormatError):
            raise
        raise VideoFormatError(f"{where}: corrupt movie box ({error}).") from error


def _parse_movie(path: Path, top: list[_mp4.TopBox], moov_box: _mp4.TopBox, body: bytes, where: str) -> Movie:
    moov = _mp4.Box(b"moov", children=_mp4.parse_boxes(body, where))
    trak = video_trak(moov, where)
    mdia = trak.need(b"mdia", where)
    stbl = mdia.need(b"minf", where).need(b"stbl", where)
    return Movie(
        path=path,
        top=top,
        moov_box=moov_box,
        moov=moov,
        table=_mp4.read_sample_table(stbl, where),
        media_timescale=_mp4.read_timescale(mdia.need(b"mdhd", where)),
        movie_timescale=_mp4.read_timescale(moov.need(b"mvhd", where)),
        edit_media_time=_mp4.read_edit_media_time(trak),
    )


def count_frames(path: Path | str) -> int:
    """Frames in an MP4 file, read from its sample table (no decoding)."""
    return read_movie(Path(path)).num_frames


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
        expected = [(live, b"moov")] + [(b, b"free") for b in movie.top[-3:-2] if b.type == b"free"]
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

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_live_movies = _LiveMovies()


def read_segment(chunk_path: Path | str, first_frame: int, num_frames: int) -> VideoSegment:
    """The segment of an already appended episode, from the chunk's own timestamps."""
    return read_movie(Path(chunk_path)).segment(first_frame, num_frames)


def append_video(chunk_path: Path | str, episode_video_path: Path | str | BinaryIO) -> VideoSegment:
    """Append one encoded episode to a chunk MP4 (created if absent) and say where it landed.

    Stream copy: the episode's compressed samples are copied byte for byte. The chunk
    and the episode must share codec configuration, size, pixel format and frame rate
    (MismatchedVideosError otherwise, before anything is written). Crash-safe: after a
    crash at any point, the chunk reads as either before or after this append. Two
    processes appending to one chunk are serialized by an exclusive ``flock``.
    ``episode_video_path`` may also be a readable, seekable binary file object (an
    episode encoded in memory), so the episode is not written to disk twice.
    """
    chunk_path = Path(chunk_path)
    episode = _open_episode(episode_video_path)
    if episode.num_frames == 0:
        raise VideoFormatError(f"{episode.path}: the episode video holds no frames.")
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
    movie = read_movie(Path(str(getattr(episode, "name", "<episode in memory>"))), episode)
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


def _sample_entry_signature(movie: Movie) -> bytes:
    """The codec configuration of the sample description, without the bitrate box."""
    stsd = movie.stbl.need(b"stsd", str(movie.path)).payload
    entry = stsd[8:]
    entry_type = entry[4:8]
    fixed = entry[8 : 8 + 78]  # visual sample entry fields: size, depth, compressor name
    children = _mp4.parse_boxes(entry[8 + 78 :], str(movie.path))
    return entry_type + fixed + b"".join(c.serialize() for c in children if c.type != b"btrt")


def check_compatible(chunk: Movie, episode: Movie) -> None:
    differences = []
    if _sample_entry_signature(chunk) != _sample_entry_signature(episode):
        differences.append("codec configuration, frame size or pixel format")
    if chunk.media_timescale != episode.media_timescale:
        differences.append(f"timescale ({chunk.media_timescale} vs {episode.media_timescale})")
    if _frame_duration(chunk) != _frame_duration(episode):
        differences.append(f"frame duration ({_frame_duration(chunk)} vs {_frame_duration(episode)} ticks)")
    if chunk.edit_media_time != episode.edit_media_time:
        differences.append("start delay (edit list)")
    if differences:
        raise MismatchedVideosError(
            f"Cannot append {episode.path} to {chunk.path}: they differ in {', '.join(differences)}. "
            "Encode the episode with the chunk's settings, or start a new chunk file."
        )


def _frame_duration(movie: Movie) -> int:
    values, counts = np.unique(movie.table.durations, return_counts=True)
    return int(values[np.argmax(counts)]) if values.shape[0] else 0


def _relocated(movie: Movie, copied: list[tuple[int, int]]) -> _mp4.SampleTable:
    """The movie's table with its chunk offsets moved to where :func:`_write_samples` copied its runs.

    ``copied`` is (source offset, target offset) per run of ``movie.sample_runs()``.
    """
    t = movie.table
    offsets = t.chunk_offsets.copy()
    nonempty = t.chunk_sample_counts > 0
    if copied:
        sources = np.array([source for source, _ in copied], dtype=np.int64)
        targets = np.array([target for _, target in copied], dtype=np.int64)
        run = np.searchsorted(sources, offsets[nonempty], side="right") - 1
        offsets[nonempty] = targets[run] + (offsets[nonempty] - sources[run])
    return _mp4.SampleTable(
        t.durations,
        t.composition_offsets,
        t.sync_samples,
        t.sizes,
        offsets,
        t.chunk_sample_counts,
        t.sample_description_index,
    )


def _concat_tables(a: _mp4.SampleTable, b: _mp4.SampleTable) -> _mp4.SampleTable:
    """The samples of ``a`` followed by those of ``b``."""
    composition = None
    if a.composition_offsets is not None or b.composition_offsets is not None:
        composition = np.concatenate([_or_zeros(a.composition_offsets, a), _or_zeros(b.composition_offsets, b)])
    sync = None
    if a.sync_samples is not None or b.sync_samples is not None:
        sync = np.concatenate([_or_all(a.sync_samples, a), _or_all(b.sync_samples, b) + a.num_samples])
    return _mp4.SampleTable(
        durations=np.concatenate([a.durations, b.durations]),
        composition_offsets=composition,
        sync_samples=sync,
        sizes=np.concatenate([a.sizes, b.sizes]),
        chunk_offsets=np.concatenate([a.chunk_offsets, b.chunk_offsets]),
        chunk_sample_counts=np.concatenate([a.chunk_sample_counts, b.chunk_sample_counts]),
        sample_description_index=a.sample_description_index,
    )


def _or_zeros(values: np.ndarray | None, table: _mp4.SampleTable) -> np.ndarray:
    return values if values is not None else np.zeros(table.num_samples, np.int64)


def _or_all(values: np.ndarray | None, table: _mp4.SampleTable) -> np.ndarray:
    return values if values is not None else np.arange(1, table.num_samples + 1, dtype=np.int64)


def _moov_bytes(template: Movie, table: _mp4.SampleTable) -> bytes:
    """``template``'s moov rewritten to carry ``table`` and durations that match it.

    Edits ``template.moov`` in place (callers are done with it), so a large chunk's
    movie box is not copied once more on every append.
    """
    where = str(template.path)
    moov = template.moov
    trak = video_trak(moov, where)
    mdia = trak.need(b"mdia", where)
    _mp4.write_sample_table(mdia.need(b"minf", where).need(b"stbl", where), table)
    media_duration = int(table.durations.sum())
    movie_duration = round(media_duration * template.movie_timescale / template.media_timescale)
    _mp4.set_duration(mdia.need(b"mdhd", where), media_duration, 16, 24)
    _mp4.set_duration(moov.need(b"mvhd", where), movie_duration, 16, 24)
    _mp4.set_duration(trak.need(b"tkhd", where), movie_duration, 20, 28)
    _mp4.set_edit_duration(trak, movie_duration)
    return moov.serialize()


def _mdat_header(payload_size: int) -> bytes:
    if payload_size + 8 <= 0xFFFFFFFF:
        return struct.pack(">I4s", payload_size + 8, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", payload_size + 16)


def _write_samples(dst: BinaryIO, movie: Movie, position: int) -> list[tuple[int, int]]:
    """Write the movie's sample data as one mdat at ``position`` (dead space between runs left out).

    Returns (source offset, target offset) per run, for :func:`_relocated`.
    """
    runs = movie.sample_runs()
    dst.seek(position)
    dst.write(_mdat_header(sum(length for _, length in runs)))
    copied = []
    with movie.data() as src:
        for offset, length in runs:
            copied.append((offset, dst.tell()))
            copy_range(src, dst, offset, length)
    return copied


def _append_after(f: BinaryIO, chunk: Movie, episode: Movie, position: int) -> tuple[VideoSegment, Movie]:
    """Append at ``position`` (the end of the live movie); the segment and the chunk's new live movie."""
    copied = _write_samples(f, episode, position)
    mdat_end = f.tell()
    f.flush()
    fault_point("append:after-mdat")
    merged = _concat_tables(chunk.table, _relocated(episode, copied))
    moov = _moov_bytes(chunk, merged)  # chunk.moov now holds the new movie box
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
        _mp4.TopBox(b"moov", mdat_end, len(moov), 16 if moov[:4] == b"\x00\x00\x00\x01" else 8),
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


def write_movie(out: BinaryIO, movies: list[Movie]) -> None:
    """Write ``movies`` back to back as one MP4: ftyp, one mdat each, one merged moov.

    Only the sample data goes over: dead space between samples (old movie boxes an append
    left as ``free``) does not.

    The caller has checked that they are compatible (:func:`check_compatible`).
    """
    ftyp = next((b for b in movies[0].top if b.type == b"ftyp"), None)
    if ftyp is not None:
        with movies[0].data() as src:
            copy_range(src, out, ftyp.offset, ftyp.size)
    tables = [_relocated(movie, _write_samples(out, movie, out.tell())) for movie in movies]
    table = tables[0]
    for more in tables[1:]:
        table = _concat_tables(table, more)
    out.write(_moov_bytes(movies[0], table))
