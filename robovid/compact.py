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

from robovid._faults import fault_point
from robovid._movie import Movie, read_movie, write_movie
from robovid._mp4 import SampleTable
from robovid.durable import atomic_output
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
    return ChunkSpace(os.path.getsize(path), _dead_bytes(read_movie(Path(path))))


def compact_chunk(path: Path | str) -> ChunkSpace:
    """Rewrite ``path`` without dead space; return its space before (the file after has none).

    Holds the file's append lock throughout, so no append can land in the old file while it
    is copied. Raises :class:`VideoFormatError` if the copy does not read back as the
    original (the original is then left as it was).
    """
    path = Path(path)
    with open(path, "rb") as original:
        fcntl.flock(original.fileno(), fcntl.LOCK_EX)
        movie = read_movie(path, original)
        before = ChunkSpace(os.fstat(original.fileno()).st_size, _dead_bytes(movie))
        table = movie.table
        with atomic_output(path) as temp, open(temp, "w+b") as out:
            write_movie(out, [movie])
            out.flush()
            _check_copy(original, table, read_movie(Path(temp), out))
            fault_point("compact:before-rename")
    return before


def _dead_bytes(movie: Movie) -> int:
    return sum(b.size for b in movie.top if b.type == b"free")


def _check_copy(src: BinaryIO, table: SampleTable, copy: Movie) -> None:
    """The copy's own movie box describes the same samples, and each mp4 chunk of them holds the same bytes."""
    for name in ("durations", "sizes", "chunk_sample_counts"):
        if not np.array_equal(getattr(table, name), getattr(copy.table, name)):
            raise VideoFormatError(f"{copy.path}: the compacted movie box does not describe the same samples ({name}).")
    nonempty = table.chunk_sample_counts > 0
    offsets = table.chunk_offsets[nonempty]
    new_offsets, lengths = copy.chunk_extents()
    with open(copy.path, "rb") as dst:
        for source, target, length in zip(offsets.tolist(), new_offsets.tolist(), lengths.tolist(), strict=True):
            for done in range(0, length, _BLOCK):
                n = min(_BLOCK, length - done)
                src.seek(source + done)
                dst.seek(target + done)
                if src.read(n) != dst.read(n):
                    raise VideoFormatError(
                        f"{copy.path}: the compacted copy differs from the original at byte {source + done}; "
                        "the original is kept."
                    )
