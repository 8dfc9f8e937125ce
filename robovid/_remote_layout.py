"""A remote chunk file as a reader walks it, without fetching the boxes between its samples.

A file robovid appended to in place is ``ftyp | free | mdat | free (old moov) | mdat | ... | moov``.
To reach the live ``moov`` at the end, FFmpeg (and :func:`robovid._mp4.scan_top_level`) read
one box header per append, each in a different place of the file: over range requests, that is
one request per append and, in whole blocks, most of the file. Everything a reader needs is in
three places: the ``ftyp`` at the start, the live ``moov`` at the end, and the sample runs the
``moov`` points at. :func:`overlay` presents the file with the same size and the same bytes
everywhere but one place: the header right after the ``ftyp`` reads as one ``mdat`` that spans
everything up to the live ``moov`` (samples and dead boxes alike), as in a compacted file. A
reader then goes from ``ftyp`` to ``moov`` in one seek, and fetches only the movie box and the
samples it decodes; sample offsets are absolute, so every sample reads as the file has it.

The live ``moov`` is recognised only as the box that ends exactly at the end of the file (with
robovid's commit, the last box; a file with an uncommitted tail, a faststart file, or anything
that does not fit is read as it is, without the overlay).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from robovid import _mp4
from robovid._movie import _parse_movie

TAIL_WINDOWS = (64 * 1024, 1 << 20, 8 << 20)
"""Bytes of the file's end searched for the live moov's header, widened until found."""
_HEAD_BYTES = 64


class OverlayFile(io.RawIOBase):
    """Read-only, seekable view: real bytes from ``handle`` in ``real`` spans, ``synthetic`` bytes elsewhere."""

    def __init__(self, handle: IO[bytes], size: int, synthetic: list[Synthetic]) -> None:
        super().__init__()
        self._handle = handle
        self._size = size
        self._synthetic = synthetic  # sorted by offset; every byte not covered is read from the handle
        self._position = 0
        self.name = getattr(handle, "path", getattr(handle, "name", "remote file"))

    @property
    def cache(self) -> Any:
        """The underlying handle's block cache (its counters say what was fetched)."""
        return getattr(self._handle, "cache", None)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        """One piece: never across a boundary between synthetic and real bytes (a short read, as raw reads may be).

        A reader that buffers ahead (FFmpeg reads 32 KiB at each box header) so gets the
        synthetic header alone, then seeks past the box, instead of fetching what follows it.
        """
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(0, self._size - self._position))
        if wanted == 0:
            return 0
        piece = self._synthetic_at(self._position, wanted)
        if piece is None:
            limit = self._next_synthetic(self._position) - self._position
            self._handle.seek(self._position)
            piece = self._handle.read(min(wanted, limit))
        view[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def close(self) -> None:
        self._handle.close()
        super().close()

    def _synthetic_at(self, position: int, length: int) -> bytes | None:
        for box in self._synthetic:
            if box.offset <= position < box.offset + box.length:
                return box.read(position - box.offset, length)
        return None

    def _next_synthetic(self, position: int) -> int:
        return min((box.offset for box in self._synthetic if box.offset > position), default=self._size)


@dataclass(frozen=True)
class Synthetic:
    """Bytes made up at ``offset`` (a box header the file does not have there)."""

    offset: int
    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)

    def read(self, start: int, count: int) -> bytes:
        return self.data[start : start + count]


def overlay(handle: IO[bytes], size: int, where: str) -> IO[bytes]:
    """``handle`` wrapped in an :class:`OverlayFile` when the file has robovid's layout, else ``handle`` itself."""
    try:
        synthetic = _synthetic_boxes(handle, size, where)
    except (ValueError, struct.error, IndexError, OSError):
        synthetic = None
    if synthetic is None:
        handle.seek(0)
        return handle
    return OverlayFile(handle, size, synthetic)  # type: ignore[return-value]


def _synthetic_boxes(handle: IO[bytes], size: int, where: str) -> list[Synthetic] | None:
    handle.seek(0)
    head = handle.read(min(size, _HEAD_BYTES))
    ftyp_size, ftyp_type = struct.unpack(">I4s", head[:8])
    moov_start = _find_moov(handle, size)
    if ftyp_type != b"ftyp" or ftyp_size < 8 or moov_start is None:
        return None
    handle.seek(moov_start)
    body = handle.read(size - moov_start)
    header = 16 if struct.unpack(">I", body[:4])[0] == 1 else 8
    moov_box = _mp4.TopBox(b"moov", moov_start, size - moov_start, header)
    movie = _parse_movie(Path(where), [], moov_box, body[header:], where)
    return _fill_gaps(movie.sample_runs(), ftyp_size, moov_start)


def _find_moov(handle: IO[bytes], size: int) -> int | None:
    """Offset of the box that ends exactly at the end of the file, if it is a ``moov``."""
    for window in TAIL_WINDOWS:
        start = max(0, size - window)
        handle.seek(start)
        tail = handle.read(size - start)
        at = tail.rfind(b"moov")
        while at >= 4:
            offset = start + at - 4
            declared = struct.unpack(">I", tail[at - 4 : at])[0]
            if declared == size - offset or (declared == 1 and _large_size(tail, at) == size - offset):
                return offset
            at = tail.rfind(b"moov", 0, at)
        if start == 0:
            return None
    return None


def _large_size(tail: bytes, at: int) -> int:
    return int(struct.unpack(">Q", tail[at + 4 : at + 12])[0]) if at + 12 <= len(tail) else -1


def _fill_gaps(runs: list[tuple[int, int]], data_start: int, moov_start: int) -> list[Synthetic] | None:
    """One synthetic ``mdat`` header right after the ``ftyp``, spanning everything up to the live ``moov``.

    The sample runs and the dead boxes between them all lie inside it; a reader skips it in one
    seek, as it skips the single ``mdat`` of a compacted file.
    """
    if not runs or runs[0][0] < data_start or runs[-1][0] + runs[-1][1] > moov_start:
        return None
    mdat = _mdat_header(moov_start - data_start)
    if runs[0][0] < data_start + len(mdat):
        return None
    return [Synthetic(data_start, mdat)]


def _mdat_header(box_size: int) -> bytes:
    if box_size < 1 << 32:
        return struct.pack(">I4s", box_size, b"mdat")
    return struct.pack(">I4sQ", 1, b"mdat", box_size)
