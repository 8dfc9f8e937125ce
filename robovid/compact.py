"""Give back the space appends leave behind in a chunk file that is no longer appended to.

Every in-place append (:mod:`robovid.append`) keeps the previous ``moov`` as a ``free``
box: ~6 bytes per frame then in the file, so the dead space grows with the square of the
episodes in the file. :func:`compact_chunk` rewrites a file as ``ftyp | mdat | moov``,
copying the sample data byte for byte, checking the copy against the original, and
publishing it with an atomic, fsynced rename. Frame order and timestamps are unchanged, so
every metadata row that points into the file stays right. Readers that have the old file
open keep reading the old file; :class:`robovid.VideoDecoderCache` notices the new one.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from robovid import _mp4
from robovid._faults import fault_point
from robovid.append import Movie, _mdat_header, _moov_bytes, read_movie
from robovid.durable import atomic_output, copy_range
from robovid.errors import VideoFormatError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class ChunkSpace:
    """How a chunk file's bytes are used."""

    file_bytes: int
    dead_bytes: int
    """Bytes in ``free`` boxes (old movie boxes left by appends)."""

    @property
    def dead_share(self) -> float:
        return self.dead_bytes / self.file_bytes if self.file_bytes else 0.0


def chunk_space(path: Path | str) -> ChunkSpace:
    """File size and dead (``free``) bytes of an MP4 file, from its box headers."""
    movie = read_movie(Path(path))
    return ChunkSpace(os.path.getsize(path), sum(b.size for b in movie.top if b.type == b"free"))


def compact_chunk(path: Path | str) -> ChunkSpace:
    """Rewrite ``path`` without dead space; return its space before (the file after has none).

    Holds the file's append lock throughout, so no append can land in the old file while it
    is copied. Raises :class:`VideoFormatError` if the copy does not match the original
    (the original is then left as it was).
    """
    path = Path(path)
    with open(path, "rb") as original:
        fcntl.flock(original.fileno(), fcntl.LOCK_EX)
        movie = read_movie(path, original)
        before = ChunkSpace(os.fstat(original.fileno()).st_size, sum(b.size for b in movie.top if b.type == b"free"))
        with atomic_output(path) as temp, open(temp, "w+b") as out:
            runs, table = _copy_samples(original, out, movie)
            out.write(_moov_bytes(movie, table))
            out.flush()
            _check_copy(original, out, runs)
            _check_table(read_movie(Path(temp), out), table)
            fault_point("compact:before-rename")
    return before


def _chunk_extents(movie: Movie) -> tuple[np.ndarray, np.ndarray]:
    """Offset and byte length of every non-empty mp4 chunk of samples, in table order."""
    t = movie.table
    counts = t.chunk_sample_counts
    nonempty = counts > 0
    firsts = (np.cumsum(counts) - counts)[nonempty]
    return t.chunk_offsets[nonempty], np.add.reduceat(t.sizes, firsts)


def _sample_runs(offsets: np.ndarray, lengths: np.ndarray) -> list[tuple[int, int]]:
    """The sample data as (offset, length) runs in file order, touching or overlapping chunks merged."""
    runs: list[tuple[int, int]] = []
    order = np.argsort(offsets, kind="stable")
    for offset, length in zip(offsets[order].tolist(), lengths[order].tolist(), strict=True):
        if runs and offset <= runs[-1][0] + runs[-1][1]:
            start, run_length = runs[-1]
            runs[-1] = (start, max(run_length, offset + length - start))
        else:
            runs.append((offset, length))
    return runs


def _copy_samples(src: BinaryIO, out: BinaryIO, movie: Movie) -> tuple[list[tuple[int, int, int]], _mp4.SampleTable]:
    """Write ``ftyp`` and one ``mdat`` holding every sample; the copied runs (from, to, length) and the new table."""
    ftyp = next((b for b in movie.top if b.type == b"ftyp"), None)
    if ftyp is not None:
        copy_range(src, out, ftyp.offset, ftyp.size)
    t = movie.table
    nonempty = t.chunk_sample_counts > 0
    offsets, lengths = _chunk_extents(movie)
    runs = _sample_runs(offsets, lengths)
    out.write(_mdat_header(sum(length for _, length in runs)))
    copied: list[tuple[int, int, int]] = []
    for offset, length in runs:
        copied.append((offset, out.tell(), length))
        copy_range(src, out, offset, length)
    starts = np.array([c[0] for c in copied], dtype=np.int64)
    targets = np.array([c[1] for c in copied], dtype=np.int64)
    new_offsets = t.chunk_offsets.copy()
    if offsets.shape[0]:
        run = np.searchsorted(starts, offsets, side="right") - 1
        new_offsets[nonempty] = targets[run] + (offsets - starts[run])
    table = _mp4.SampleTable(
        t.durations,
        t.composition_offsets,
        t.sync_samples,
        t.sizes,
        new_offsets,
        t.chunk_sample_counts,
        t.sample_description_index,
    )
    return copied, table


def _check_copy(src: BinaryIO, out: BinaryIO, copied: list[tuple[int, int, int]]) -> None:
    """The copied sample bytes read back equal to the original's."""
    for source, target, length in copied:
        done = 0
        while done < length:
            n = min(_BLOCK, length - done)
            src.seek(source + done)
            out.seek(target + done)
            if src.read(n) != out.read(n):
                raise VideoFormatError(
                    f"{getattr(src, 'name', 'chunk')}: the compacted copy differs from the original at byte "
                    f"{source + done}; the original is kept."
                )
            done += n


def _check_table(written: Movie, table: _mp4.SampleTable) -> None:
    """The movie box read back from the copy describes the same samples, at their new places."""
    for name in ("durations", "sizes", "chunk_offsets", "chunk_sample_counts"):
        if not np.array_equal(getattr(written.table, name), getattr(table, name)):
            raise VideoFormatError(f"{written.path}: the compacted movie box reads back wrong ({name}).")
