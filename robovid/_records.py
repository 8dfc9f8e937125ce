"""Identity records inside chunk files: which episode each appended run of samples is.

Every append that knows what it appends (the service, ``robovid merge``) writes, right after the
run's ``mdat`` and before the new ``moov``, one top-level ``uuid`` box of robovid's
(:data:`RECORD_UUID`) holding JSON::

    {"robovid_records": 1, "runs": [{"first_frame": 120, "num_frames": 60,
      "sizes_sha256": "...", "row": {...SegmentRow.to_json() of the episode...}}]}

``first_frame`` and ``num_frames`` place the run among the file's samples (decode order), and
``sizes_sha256`` is the SHA-256 of those samples' byte sizes (little-endian int64): a record only
counts for samples it matches. The box is written and fsynced with the append and becomes part of
the file at the append's one commit write, like the samples. Readers (FFmpeg, PyAV, torchcodec)
skip a ``uuid`` box they do not know. Only boxes before the live ``moov`` count (after it lies an
uncommitted tail). Rewrites keep them: :func:`robovid._movie.write_movie` (compaction, concatenation)
writes each input's records after its samples, renumbered; ``robovid verify --repair`` rebuilds a
lost segment row from them.
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

if TYPE_CHECKING:
    from robovid._movie import Movie

RECORD_UUID = uuid.UUID("b18225a8-7808-4d25-a325-6cd8e22ce69f").bytes
"""The 16-byte user type of robovid's record boxes."""
VERSION = 1
MAX_RECORD_BYTES = 16 << 20
"""A larger record box is not one of robovid's (its JSON is a few kB per episode)."""


def sizes_digest(sizes: np.ndarray) -> str:
    """The fingerprint a record keeps of its samples: SHA-256 of their byte sizes as little-endian int64."""
    return hashlib.sha256(np.ascontiguousarray(sizes, dtype="<i8").tobytes()).hexdigest()


def run_entry(movie: Movie, first_frame: int, num_frames: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """The record of samples ``[first_frame, first_frame + num_frames)`` of ``movie``: ``row`` says whose they are."""
    sizes = movie.table.sizes[first_frame : first_frame + num_frames]
    return {
        "first_frame": first_frame,
        "num_frames": num_frames,
        "sizes_sha256": sizes_digest(sizes),
        "row": dict(row),
    }


def shifted(entries: Sequence[Mapping[str, Any]], by: int) -> list[dict[str, Any]]:
    """``entries`` with their first frames moved by ``by`` (their samples now follow ``by`` others)."""
    return [dict(entry) | {"first_frame": int(entry["first_frame"]) + by} for entry in entries]


def record_box(entries: Sequence[Mapping[str, Any]]) -> bytes:
    """The ``uuid`` box holding ``entries`` (empty bytes for none)."""
    if not entries:
        return b""
    body = RECORD_UUID + json.dumps({"robovid_records": VERSION, "runs": list(entries)}).encode()  # inf PSNR: Infinity
    return struct.pack(">I4s", 8 + len(body), b"uuid") + body


def read_records(movie: Movie, f: BinaryIO | None = None) -> list[dict[str, Any]]:
    """The run records of a movie's file (before its live ``moov``), in file order; unreadable boxes left out.

    A ``Movie`` whose records were set by hand (:attr:`Movie.records`) gives those.
    """
    if movie.records is not None:
        return [dict(entry) for entry in movie.records]
    boxes = [b for b in movie.top if b.type == b"uuid" and b.end <= movie.moov_box.offset]
    if not boxes:
        return []
    entries: list[dict[str, Any]] = []
    if f is not None:
        for box in boxes:
            entries += _parse(_read_at(f, box.offset + box.header_size, box.size - box.header_size))
        return entries
    with movie.data() as handle:
        for box in boxes:
            entries += _parse(_read_at(handle, box.offset + box.header_size, box.size - box.header_size))
    return entries


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    if size < 16 or size > MAX_RECORD_BYTES:
        return b""
    f.seek(offset)
    return f.read(size)


def _parse(body: bytes) -> list[dict[str, Any]]:
    """The runs of one record box's body, or none when it is not robovid's or not readable."""
    if len(body) < 16 or body[:16] != RECORD_UUID:
        return []
    try:
        data = json.loads(body[16:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("robovid_records") != VERSION or not isinstance(data.get("runs"), list):
        return []
    return [entry for entry in data["runs"] if _well_formed(entry)]


def _well_formed(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and all(
            isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool) for k in ("first_frame", "num_frames")
        )
        and isinstance(entry.get("sizes_sha256"), str)
        and isinstance(entry.get("row"), dict)
    )


def slice_entries(entries: Sequence[Mapping[str, Any]], first: int, count: int) -> list[dict[str, Any]]:
    """The entries lying wholly in samples ``[first, first + count)``, renumbered from ``first``."""
    inside = [
        e
        for e in entries
        if first <= int(e["first_frame"]) and int(e["first_frame"]) + int(e["num_frames"]) <= first + count
    ]
    return shifted(inside, -first)


def renewed(source: Movie, output: Movie) -> list[dict[str, Any]]:
    """``source``'s records for ``output``, a re-encode of all its frames: the same runs and rows, fingerprints of
    the new samples. None when the frame counts differ (the records would not fit)."""
    if output.num_frames != source.num_frames:
        return []
    return [
        run_entry(output, int(e["first_frame"]), int(e["num_frames"]), e["row"])
        for e in read_records(source)
        if int(e["first_frame"]) + int(e["num_frames"]) <= output.num_frames
    ]


def write_before_moov(f: BinaryIO, movie: Movie, entries: Sequence[Mapping[str, Any]]) -> None:
    """Put a record box of ``entries`` right before the movie's ``moov``, which must end the file (a file being
    written, not yet published): the ``moov`` moves after it, the samples stay where they are."""
    box = record_box(entries)
    if not box or movie.moov_box.end != f.seek(0, 2):  # a faststart file's moov comes first: left as it is
        return
    f.seek(movie.moov_box.offset)
    moov = f.read(movie.moov_box.size)
    f.seek(movie.moov_box.offset)
    f.write(box + moov)
    f.truncate()
