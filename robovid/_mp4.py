"""Just enough ISO-BMFF (MP4) to read and rewrite the sample table of one video track.

robovid appends episodes to chunk files without rewriting old sample data, so it
needs the boxes themselves, not a demuxer. Only what a single-video-track MP4
written by FFmpeg/PyAV holds is modelled: the sample tables (``stts``, ``ctts``,
``stss``, ``stsz``, ``stsc``, ``stco``/``co64``), the four durations (``mvhd``,
``tkhd``, ``mdhd``, ``elst``) and the sample description, kept as raw bytes.
Anything else is carried through untouched.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from robovid.errors import VideoFormatError

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}
_U32_MAX = 0xFFFFFFFF


@dataclass
class Box:
    """One MP4 box: either a leaf with a payload or a container with children."""

    type: bytes
    payload: bytes = b""
    children: list[Box] = field(default_factory=list)

    def child(self, box_type: bytes) -> Box | None:
        """The first direct child of that type, or None."""
        return next((c for c in self.children if c.type == box_type), None)

    def need(self, box_type: bytes, where: str) -> Box:
        """The first direct child of that type; VideoFormatError if absent."""
        found = self.child(box_type)
        if found is None:
            raise VideoFormatError(f"{where}: no '{box_type.decode()}' box in '{self.type.decode()}'.")
        return found

    def serialize(self) -> bytes:
        """The box with its size header, children serialized in order."""
        body = b"".join(c.serialize() for c in self.children) if self.type in CONTAINERS else self.payload
        size = 8 + len(body)
        if size > _U32_MAX:
            return struct.pack(">I4sQ", 1, self.type, size + 8) + body
        return struct.pack(">I4s", size, self.type) + body


@dataclass(frozen=True)
class TopBox:
    """Where one top-level box lies in a file."""

    type: bytes
    offset: int
    size: int
    header_size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


def scan_top_level(f: BinaryIO, file_size: int, where: str) -> list[TopBox]:
    """List the top-level boxes of a file, stopping at a truncated trailing box.

    A chunk holds two boxes per appended episode, each header in a different page: on a
    real file the headers are read with ``pread`` (16 bytes each), not through the
    buffered reader, which would refill its whole buffer after every seek.
    """
    read_at = _positional_reader(f)
    boxes: list[TopBox] = []
    offset = 0
    while offset + 8 <= file_size:
        header = read_at(offset, 16)
        size, box_type = struct.unpack(">I4s", header[:8])
        header_size = 8
        if size == 1:
            if len(header) < 16:
                break
            size = struct.unpack(">Q", header[8:16])[0]
            header_size = 16
        elif size == 0:
            size = file_size - offset
        if size < header_size:
            raise VideoFormatError(f"{where}: box '{box_type!r}' at byte {offset} has an invalid size {size}.")
        if offset + size > file_size:
            break  # a box cut short by a crash: the caller treats it as an uncommitted tail
        boxes.append(TopBox(box_type, offset, size, header_size))
        offset += size
    return boxes


def _positional_reader(f: BinaryIO) -> Callable[[int, int], bytes]:
    if isinstance(f, (io.BufferedReader, io.BufferedRandom, io.FileIO)):
        if f.writable():
            f.flush()
        fd = f.fileno()
        return lambda offset, n: os.pread(fd, n, offset)

    def read_at(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(n)

    return read_at


def parse_boxes(data: bytes | memoryview, where: str) -> list[Box]:
    """Parse a run of boxes from memory, descending into the known containers (no copies but the leaves)."""
    data = memoryview(data)
    out: list[Box] = []
    pos = 0
    while pos + 8 <= len(data):
        size, box_type = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = len(data) - pos
        if size < header or pos + size > len(data):
            raise VideoFormatError(f"{where}: malformed '{box_type!r}' box inside moov.")
        body = data[pos + header : pos + size]
        if box_type in CONTAINERS:
            out.append(Box(box_type, children=parse_boxes(body, where)))
        else:
            out.append(Box(box_type, payload=bytes(body)))
        pos += size
    return out


def _be_u32(payload: bytes, offset: int, count: int) -> np.ndarray:
    return np.frombuffer(payload, dtype=">u4", count=count, offset=offset).astype(np.int64)


@dataclass
class SampleTable:
    """The per-sample facts of one track, as flat arrays (one entry per sample)."""

    durations: np.ndarray  # stts, expanded: ticks of each sample
    composition_offsets: np.ndarray | None  # ctts, expanded; None when absent
    sync_samples: np.ndarray | None  # stss: 1-based sample numbers; None means all are sync
    sizes: np.ndarray  # stsz, expanded
    chunk_offsets: np.ndarray  # stco/co64
    chunk_sample_counts: np.ndarray  # stsc, expanded: samples in each chunk
    sample_description_index: int

    @property
    def num_samples(self) -> int:
        return int(self.sizes.shape[0])


MAX_SAMPLES = 1 << 27
"""More samples than any real chunk holds (50 days at 30 fps): a larger count is corruption."""


def read_sample_table(stbl: Box, where: str) -> SampleTable:
    """Decode the sample tables of one ``stbl`` box into flat arrays; VideoFormatError if inconsistent."""
    try:
        return _read_sample_table(stbl, where)
    except (ValueError, struct.error, IndexError) as error:
        if isinstance(error, VideoFormatError):
            raise
        raise VideoFormatError(f"{where}: corrupt sample table ({error}).") from error


def _read_sample_table(stbl: Box, where: str) -> SampleTable:
    stsz = stbl.need(b"stsz", where).payload
    uniform, count = struct.unpack_from(">II", stsz, 4)
    if count > MAX_SAMPLES:
        raise VideoFormatError(f"{where}: 'stsz' claims {count} samples.")
    sizes = np.full(count, uniform, dtype=np.int64) if uniform else _be_u32(_entries(stsz, 8, 4, where), 12, count)
    durations = _read_run_table(stbl.need(b"stts", where).payload, count, where)
    ctts_box = stbl.child(b"ctts")
    composition = None
    if ctts_box is not None:
        composition = _read_run_table(ctts_box.payload, count, where, signed=ctts_box.payload[0] == 1)
    stss_box = stbl.child(b"stss")
    sync = None
    if stss_box is not None:
        sync = _be_u32(_entries(stss_box.payload, 4, 4, where), 8, _count(stss_box.payload, 4))
    offsets = _read_chunk_offsets(stbl, where)
    per_chunk, description = _read_stsc(stbl.need(b"stsc", where).payload, len(offsets), where)
    if int(per_chunk.sum()) != count:
        raise VideoFormatError(f"{where}: sample tables disagree on the number of samples.")
    return SampleTable(durations, composition, sync, sizes, offsets, per_chunk, description)


def _count(payload: bytes, offset: int) -> int:
    return int(struct.unpack_from(">I", payload, offset)[0])


def _entries(payload: bytes, count_offset: int, entry_size: int, where: str) -> bytes:
    """``payload`` after checking that it holds as many entries as its count field says."""
    count = _count(payload, count_offset)
    if count * entry_size > len(payload) - count_offset - 4:
        raise VideoFormatError(f"{where}: a sample table claims {count} entries but holds fewer.")
    return payload


def _read_run_table(payload: bytes, expected: int, where: str, signed: bool = False) -> np.ndarray:
    count = _count(_entries(payload, 4, 8, where), 4)
    pairs = np.frombuffer(payload, dtype=">i4" if signed else ">u4", count=2 * count, offset=8)
    pairs = pairs.astype(np.int64).reshape(-1, 2)
    if int(pairs[:, 0].sum()) != expected:
        raise VideoFormatError(f"{where}: a run-length table covers {int(pairs[:, 0].sum())} samples, not {expected}.")
    return np.repeat(pairs[:, 1], pairs[:, 0])


def _read_chunk_offsets(stbl: Box, where: str) -> np.ndarray:
    stco = stbl.child(b"stco")
    if stco is not None:
        return _be_u32(_entries(stco.payload, 4, 4, where), 8, _count(stco.payload, 4))
    co64 = stbl.need(b"co64", where).payload
    count = _count(_entries(co64, 4, 8, where), 4)
    return np.frombuffer(co64, dtype=">u8", count=count, offset=8).astype(np.int64)


def _read_stsc(payload: bytes, num_chunks: int, where: str) -> tuple[np.ndarray, int]:
    count = _count(_entries(payload, 4, 12, where), 4)
    rows = np.frombuffer(payload, dtype=">u4", count=3 * count, offset=8).astype(np.int64).reshape(-1, 3)
    if count == 0 or len(set(rows[:, 2].tolist())) != 1:
        raise VideoFormatError(f"{where}: only one sample description per track is supported.")
    firsts = np.append(rows[:, 0], num_chunks + 1)
    spans = np.diff(firsts)
    if rows[0, 0] != 1 or np.any(spans < 0) or int((rows[:, 1] * spans).sum()) > MAX_SAMPLES:
        raise VideoFormatError(f"{where}: 'stsc' is inconsistent with the chunk offsets.")
    return np.repeat(rows[:, 1], spans), int(rows[0, 2])


def _runs(values: np.ndarray) -> np.ndarray:
    """Run-length encode: rows of (count, value)."""
    if values.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.int64)
    change = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate(([0], change))
    counts = np.diff(np.append(starts, values.shape[0]))
    return np.stack([counts, values[starts]], axis=1)


def _full_box(box_type: bytes, version: int, body: bytes) -> Box:
    return Box(box_type, payload=struct.pack(">I", version << 24) + body)


def write_sample_table(stbl: Box, table: SampleTable) -> None:
    """Replace the sample tables inside ``stbl`` by ``table`` (other children are kept)."""
    new: dict[bytes, Box | None] = {}
    stts = _runs(table.durations)
    new[b"stts"] = _full_box(b"stts", 0, struct.pack(">I", len(stts)) + stts.astype(">u4").tobytes())
    if table.composition_offsets is not None and np.any(table.composition_offsets):
        ctts = _runs(table.composition_offsets)
        version = 1 if np.any(ctts[:, 1] < 0) else 0
        body = np.column_stack([ctts[:, 0], ctts[:, 1]]).astype(">i4" if version else ">u4").tobytes()
        new[b"ctts"] = _full_box(b"ctts", version, struct.pack(">I", len(ctts)) + body)
    else:
        new[b"ctts"] = None
    if table.sync_samples is not None:
        sync = table.sync_samples
        new[b"stss"] = _full_box(b"stss", 0, struct.pack(">I", len(sync)) + sync.astype(">u4").tobytes())
    else:
        new[b"stss"] = None
    sizes = table.sizes
    if sizes.shape[0] and np.all(sizes == sizes[0]):
        new[b"stsz"] = _full_box(b"stsz", 0, struct.pack(">II", int(sizes[0]), sizes.shape[0]))
    else:
        new[b"stsz"] = _full_box(b"stsz", 0, struct.pack(">II", 0, sizes.shape[0]) + sizes.astype(">u4").tobytes())
    stsc = _stsc_rows(table.chunk_sample_counts, table.sample_description_index)
    new[b"stsc"] = _full_box(b"stsc", 0, struct.pack(">I", len(stsc)) + stsc.astype(">u4").tobytes())
    offsets = table.chunk_offsets
    if offsets.shape[0] and int(offsets.max()) > _U32_MAX:
        new[b"co64"] = _full_box(b"co64", 0, struct.pack(">I", len(offsets)) + offsets.astype(">u8").tobytes())
        new[b"stco"] = None
    else:
        new[b"stco"] = _full_box(b"stco", 0, struct.pack(">I", len(offsets)) + offsets.astype(">u4").tobytes())
        new[b"co64"] = None
    _replace_children(stbl, new)


def _stsc_rows(per_chunk: np.ndarray, description: int) -> np.ndarray:
    runs = _runs(per_chunk)
    first_chunk = np.concatenate(([1], 1 + np.cumsum(runs[:, 0])[:-1]))
    return np.column_stack([first_chunk, runs[:, 1], np.full(len(runs), description)])


def _replace_children(stbl: Box, new: dict[bytes, Box | None]) -> None:
    order = [b"stsd", b"stts", b"ctts", b"stss", b"stsc", b"stsz", b"stco", b"co64"]
    kept = [c for c in stbl.children if c.type not in new]
    placed = {c.type: c for c in kept}
    placed.update({k: v for k, v in new.items() if v is not None})
    ordered = [placed[t] for t in order if t in placed]
    ordered += [c for c in kept if c.type not in order]
    stbl.children = ordered


def set_duration(box: Box, duration: int, offset_v0: int, offset_v1: int) -> None:
    """Write a duration field of a versioned box (``mvhd``, ``tkhd``, ``mdhd``) in place."""
    payload = bytearray(box.payload)
    if payload[0] == 1:
        struct.pack_into(">Q", payload, offset_v1, duration)
    elif duration > _U32_MAX:
        raise VideoFormatError(
            f"'{box.type.decode()}' duration {duration} overflows a version-0 box; start a new chunk file."
        )
    else:
        struct.pack_into(">I", payload, offset_v0, duration)
    box.payload = bytes(payload)


def set_timescale(box: Box, timescale: int) -> None:
    """Write the timescale of an ``mvhd`` or ``mdhd`` box in place."""
    payload = bytearray(box.payload)
    struct.pack_into(">I", payload, 20 if payload[0] == 1 else 12, timescale)
    box.payload = bytes(payload)


def read_timescale(box: Box) -> int:
    """The timescale of an ``mvhd`` or ``mdhd`` box."""
    offset = 20 if box.payload[0] == 1 else 12
    return int(struct.unpack_from(">I", box.payload, offset)[0])


def read_edit_media_time(trak: Box) -> int:
    """The ``media_time`` of a track's single edit (0 when there is no edit list)."""
    edts = trak.child(b"edts")
    elst = edts.child(b"elst") if edts else None
    if elst is None:
        return 0
    version = elst.payload[0]
    count = struct.unpack_from(">I", elst.payload, 4)[0]
    if count != 1:
        raise VideoFormatError(f"edit lists with {count} entries are not supported (expected one).")
    if version == 1:
        return int(struct.unpack_from(">q", elst.payload, 16)[0])
    return int(struct.unpack_from(">i", elst.payload, 12)[0])


def set_edit_duration(trak: Box, duration: int) -> None:
    """Set the segment duration of a track's single edit, if it has an edit list."""
    edts = trak.child(b"edts")
    elst = edts.child(b"elst") if edts else None
    if elst is not None:
        set_duration(elst, duration, 8, 8)
