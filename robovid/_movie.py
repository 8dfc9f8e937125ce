"""The MP4 movie model: the live ``moov`` of a one-video-track file, parsed, merged and written back.

:mod:`robovid.append` (in place, crash-safe), :mod:`robovid.concat` and :mod:`robovid.compact`
(whole files) are built on it. A :class:`Movie` is the file's top-level boxes, its live (first)
``moov`` and that movie's sample table as flat arrays (:mod:`robovid._mp4`); tables of compatible
movies are merged by concatenation with their chunk offsets moved to where the samples were
copied, and a movie box is rewritten to carry a merged table and the durations that match it.

Episode boundaries (:meth:`Movie.segment`) are computed from the integer sample timestamps in
the file, never by summing float durations.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from robovid import _mp4, _records
from robovid.durable import copy_range
from robovid.errors import MismatchedVideosError, UnevenFrameTimingError, VideoFormatError


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
    records: list[dict[str, Any]] | None = None
    """The run records (:mod:`robovid._records`) that go with these samples when they are written out;
    None: those in the file, before its live ``moov``."""

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


def _regular_file_opener(path: str, flags: int) -> int:
    """Open without blocking: a FIFO where a chunk file belongs would block ``open`` forever."""
    return os.open(path, flags | os.O_NONBLOCK)


def read_movie(path: Path, f: BinaryIO | None = None) -> Movie:
    """Parse the live (first) ``moov`` of an MP4 file."""
    where = str(path)
    own = f is None
    handle = open(path, "rb", opener=_regular_file_opener) if f is None else f  # noqa: SIM115 - closed below
    try:
        if own and not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # fileno() would spill a spooled file
            raise VideoFormatError(f"{where}: not a regular file (a FIFO or a device?); robovid never reads one.")
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


def slice_movie(movie: Movie, first: int, count: int) -> Movie:
    """``movie`` restricted to samples ``[first, first + count)`` (decode order), for a stream copy of them.

    The sample data stays where it is in the file; the table points at it, one mp4 chunk per run of
    touching samples. The first sample must be a sync sample (a keyframe), so the slice decodes alone.
    """
    table = movie.table
    if first < 0 or count < 1 or first + count > table.num_samples:
        raise VideoFormatError(f"{movie.path}: frames {first}..{first + count - 1} are not in this file.")
    if table.sync_samples is not None and first + 1 not in set(table.sync_samples.tolist()):
        raise VideoFormatError(f"{movie.path}: frame {first} is not a keyframe; a slice must start at one.")
    counts = table.chunk_sample_counts
    chunk_of = np.repeat(np.arange(counts.shape[0]), counts)
    before = np.cumsum(table.sizes) - table.sizes
    chunk_start = (np.cumsum(counts) - counts)[chunk_of]
    offsets = (table.chunk_offsets[chunk_of] + before - before[chunk_start])[first : first + count]
    sizes = table.sizes[first : first + count]
    starts = np.flatnonzero(np.concatenate(([True], offsets[1:] != offsets[:-1] + sizes[:-1])))
    sync = table.sync_samples
    if sync is not None:
        sync = sync[(sync > first) & (sync <= first + count)] - first
    composition = table.composition_offsets
    sliced = _mp4.SampleTable(
        durations=table.durations[first : first + count],
        composition_offsets=None if composition is None else composition[first : first + count],
        sync_samples=sync,
        sizes=sizes,
        chunk_offsets=offsets[starts].astype(np.int64),
        chunk_sample_counts=np.diff(np.concatenate((starts, [count]))).astype(np.int64),
        sample_description_index=table.sample_description_index,
    )
    return Movie(
        movie.path,
        movie.top,
        movie.moov_box,
        movie.moov,
        sliced,
        movie.media_timescale,
        movie.movie_timescale,
        movie.edit_media_time,
        movie.source,
        records=[],  # the caller says whose samples these are (robovid merge renumbers episodes)
    )


def count_frames(path: Path | str) -> int:
    """Frames in an MP4 file, read from its sample table (no decoding)."""
    return read_movie(Path(path)).num_frames


def _sample_entry_signature(movie: Movie) -> bytes:
    """The codec configuration of the sample description, without the bitrate box."""
    stsd = movie.stbl.need(b"stsd", str(movie.path)).payload
    entry = stsd[8:]
    entry_type = entry[4:8]
    fixed = entry[8 : 8 + 78]  # visual sample entry fields: size, depth, compressor name
    children = _mp4.parse_boxes(entry[8 + 78 :], str(movie.path))
    return entry_type + fixed + b"".join(c.serialize() for c in children if c.type != b"btrt")


def check_constant_rate(movie: Movie) -> None:
    """UnevenFrameTimingError unless every frame of ``movie`` lasts as long as the others (checked before it is
    appended or joined: readers look frame i up at i / fps, and its frames and those after it would not be there)."""
    durations = np.unique(movie.table.durations)
    if durations.shape[0] > 1:
        ticks = ", ".join(str(int(d)) for d in durations[:6])
        raise UnevenFrameTimingError(
            f"{movie.path}: its frames are not all equally long ({durations.shape[0]} different durations: {ticks} "
            f"ticks of 1/{movie.media_timescale} s), so it cannot be appended or joined: readers look a frame up at "
            "index / fps, and its frames (and the chunk's after it) would not be there. Re-encode it at a constant "
            "frame rate first, for example with robovid.reencode_video(path, new_path), and append that file."
        )


def check_compatible(chunk: Movie, episode: Movie) -> None:
    """MismatchedVideosError unless ``episode`` can follow ``chunk`` by stream copy (same codec setup and timing);
    UnevenFrameTimingError if the episode's own frames are not all equally long."""
    check_constant_rate(episode)
    differences = []
    if _sample_entry_signature(chunk) != _sample_entry_signature(episode):
        differences.append("codec configuration, frame size or pixel format")
    if chunk.media_timescale != episode.media_timescale:
        differences.append(f"timescale ({chunk.media_timescale} vs {episode.media_timescale})")
    if _frame_duration(chunk) != _frame_duration(episode):
        differences.append(f"frame duration ({_frame_duration(chunk)} vs {_frame_duration(episode)} ticks)")
    if chunk.edit_media_time != episode.edit_media_time:
        differences.append("start delay (edit list)")
    differences += _recorded_differences(chunk, episode)
    if differences:
        raise MismatchedVideosError(
            f"Cannot append {episode.path} to {chunk.path}: they differ in {', '.join(differences)}. "
            "Encode the episode with the chunk's settings, or start a new chunk file."
        )


RECORDED_FIELDS = ("vcodec", "pix_fmt", "g", "crf", "preset", "fast_decode", "extra_options", "depth")
"""The recorded encoder settings a joined file must share: one file records one set (``get_video_info``)."""


def _recorded_differences(chunk: Movie, episode: Movie) -> list[str]:
    """The recorded settings in which two robovid-written files differ (none when either has no record)."""
    ours, theirs = recorded_settings(chunk), recorded_settings(episode)
    if ours is None or theirs is None:
        return []
    return [
        f"recorded {name} ({ours.get(name)!r} vs {theirs.get(name)!r})"
        for name in RECORDED_FIELDS
        if ours.get(name) != theirs.get(name)
    ]


def recorded_settings(movie: Movie) -> dict[str, object] | None:
    """The encoder settings robovid recorded in the movie's comment tag (``udta/meta/ilst/©cmt``), or None."""
    from robovid.settings import EncoderSettings  # it loads the encoders; the movie code does not need them

    where = str(movie.path)
    udta = movie.moov.child(b"udta")
    try:
        for meta in _mp4.parse_boxes(udta.payload, where) if udta is not None else ():
            for ilst in _mp4.parse_boxes(meta.payload[4:], where) if meta.type == b"meta" else ():
                for item in _mp4.parse_boxes(ilst.payload, where) if ilst.type == b"ilst" else ():
                    for data in _mp4.parse_boxes(item.payload, where) if item.type == b"\xa9cmt" else ():
                        if data.type == b"data":  # 4 bytes type, 4 bytes locale, then the text
                            return EncoderSettings.from_tag(data.payload[8:].decode("utf-8", "replace"))
    except VideoFormatError:
        return None  # a tag robovid cannot read is no record
    return None


def _frame_duration(movie: Movie) -> int:
    values, counts = np.unique(movie.table.durations, return_counts=True)
    return int(values[np.argmax(counts)]) if values.shape[0] else 0


def relocated(movie: Movie, copied: list[tuple[int, int]]) -> _mp4.SampleTable:
    """The movie's table with its chunk offsets moved to where :func:`write_samples` copied its runs.

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


def concat_tables(a: _mp4.SampleTable, b: _mp4.SampleTable) -> _mp4.SampleTable:
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


def moov_bytes(template: Movie, table: _mp4.SampleTable) -> bytes:
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
    # The movie's timescale becomes the track's, so mvhd, tkhd and elst state the duration exactly:
    # at FFmpeg's 1000 (ms) a 40-frame 30 fps file read as 1.3330078 s, and the next episode, placed
    # at that duration (LeRobot's writer, aggregate_datasets), started 0.33 ms before its first frame.
    mvhd = moov.need(b"mvhd", where)
    _mp4.set_timescale(mvhd, template.media_timescale)
    _mp4.set_duration(mdia.need(b"mdhd", where), media_duration, 16, 24)
    _mp4.set_duration(mvhd, media_duration, 16, 24)
    _mp4.set_duration(trak.need(b"tkhd", where), media_duration, 20, 28)
    _mp4.set_edit_duration(trak, media_duration)
    return moov.serialize()


def _mdat_header(payload_size: int) -> bytes:
    if payload_size + 8 <= 0xFFFFFFFF:
        return struct.pack(">I4s", payload_size + 8, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", payload_size + 16)


def write_samples(dst: BinaryIO, movie: Movie, position: int) -> list[tuple[int, int]]:
    """Write the movie's sample data as one mdat at ``position`` (dead space between runs left out).

    Returns (source offset, target offset) per run, for :func:`relocated`.
    """
    runs = movie.sample_runs()
    dst.seek(position)
    dst.write(_mdat_header(sum(length for _, length in runs)))
    copied = []
    with movie.data() as src:
        for offset, length in runs:
            copied.append((offset, dst.tell()))
            copy_range(src, dst, offset, length, where=str(movie.path))
    return copied


def write_movie(out: BinaryIO, movies: list[Movie]) -> None:
    """Write ``movies`` back to back as one MP4: ftyp, one mdat each, one merged moov.

    Only the sample data goes over: dead space between samples (old movie boxes an append
    left as ``free``) does not. Each movie's run records (:mod:`robovid._records`) follow its
    samples, renumbered to their place in the output.

    The caller has checked that they are compatible (:func:`check_compatible`).
    """
    ftyp = next((b for b in movies[0].top if b.type == b"ftyp"), None)
    if ftyp is not None:
        with movies[0].data() as src:
            copy_range(src, out, ftyp.offset, ftyp.size, where=str(movies[0].path))
    tables = []
    frames = 0
    for movie in movies:
        tables.append(relocated(movie, write_samples(out, movie, out.tell())))
        out.write(_records.record_box(_records.shifted(_records.read_records(movie), frames)))
        frames += movie.num_frames
    table = tables[0]
    for more in tables[1:]:
        table = concat_tables(table, more)
    out.write(moov_bytes(movies[0], table))
