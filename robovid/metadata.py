"""Episode segment metadata: one Parquet row per (episode, camera), written durably.

Rows live in ``{root}/meta/robovid/segments/part-NNNNNN.parquet``. A commit rewrites
only the newest part (at most :data:`ROWS_PER_PART` rows) through a temp file, fsync
and ``os.replace``, so a commit costs the same on the first episode and the ten
thousandth, and a reader (plain ``pyarrow.parquet``) only ever sees whole files.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from robovid._faults import fault_point
from robovid.durable import atomic_output
from robovid.errors import MetadataError
from robovid.layout import chunk_path, segments_dir

ROWS_PER_PART = 256
PART_RE = re.compile(r"part-(\d{6,})\.parquet")

SEGMENT_SCHEMA = pa.schema(
    [
        ("episode_index", pa.int64()),
        ("video_key", pa.string()),
        ("chunk_index", pa.int64()),
        ("file_index", pa.int64()),
        ("from_timestamp", pa.float64()),
        ("to_timestamp", pa.float64()),
        ("first_frame", pa.int64()),
        ("num_frames", pa.int64()),
        ("fps", pa.int64()),
        ("video.height", pa.int64()),
        ("video.width", pa.int64()),
        ("video.codec", pa.string()),
        ("video.pix_fmt", pa.string()),
        ("video.fps", pa.int64()),
        ("video.channels", pa.int64()),
        ("video.is_depth_map", pa.bool_()),
        ("has_audio", pa.bool_()),
        ("video.g", pa.int64()),
        ("video.crf", pa.int64()),
        ("video.preset", pa.string()),
        ("video.fast_decode", pa.int64()),
        ("video_bytes", pa.int64()),
        ("source_bytes", pa.int64()),
        ("encode_s", pa.float64()),
        ("verify_s", pa.float64()),
        ("append_s", pa.float64()),
        ("min_psnr_db", pa.float64()),
        ("committed_at", pa.timestamp("ms", tz="UTC")),
    ]
)
"""Columns of the segments table. ``first_frame`` is the episode's first frame in its chunk file."""


def _parts(root: Path) -> list[tuple[int, Path]]:
    directory = segments_dir(root)
    if not directory.is_dir():
        return []
    found = []
    for entry in os.scandir(directory):
        match = PART_RE.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


def _read_part(path: Path) -> pa.Table:
    try:
        return pq.read_table(path, schema=SEGMENT_SCHEMA)
    except (OSError, pa.ArrowException) as error:
        raise MetadataError(
            f"{path}: segment metadata is unreadable ({error}). Restore it from a backup, or move it aside and "
            "rebuild the rows with `robovid verify`."
        ) from error


def read_segments(root: Path | str) -> pa.Table:
    """Every committed segment row under ``root`` (one per episode and camera), as a pyarrow Table."""
    tables = [_read_part(path) for _, path in _parts(Path(root))]
    if not tables:
        return SEGMENT_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def find_segment(root: Path | str, video_key: str, episode_index: int) -> dict[str, Any] | None:
    """The row of one episode of one camera, or None when it is not committed."""
    table = read_segments(root)
    for row in table.to_pylist():
        if row["video_key"] == video_key and row["episode_index"] == episode_index:
            return row
    return None


def read_lerobot_episodes(root: Path | str) -> pa.Table:
    """One row per episode with LeRobot's ``videos/{key}/...`` location columns."""
    rows: dict[int, dict[str, Any]] = {}
    keys: set[str] = set()
    for row in read_segments(root).to_pylist():
        keys.add(row["video_key"])
        out = rows.setdefault(row["episode_index"], {"episode_index": row["episode_index"]})
        for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            out[f"videos/{row['video_key']}/{name}"] = row[name]
    fields = [pa.field("episode_index", pa.int64())]
    for key in sorted(keys):
        fields += [
            pa.field(f"videos/{key}/chunk_index", pa.int64()),
            pa.field(f"videos/{key}/file_index", pa.int64()),
            pa.field(f"videos/{key}/from_timestamp", pa.float64()),
            pa.field(f"videos/{key}/to_timestamp", pa.float64()),
        ]
    return pa.Table.from_pylist([rows[i] for i in sorted(rows)], schema=pa.schema(fields))


class SegmentStore:
    """Appends rows durably. One writer per root (the service holds the root lock)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def commit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add rows; durable (fsynced, directory included) when this returns."""
        with self._lock:
            parts = _parts(self.root)
            number, existing = (parts[-1][0], _read_part(parts[-1][1])) if parts else (0, None)
            if existing is not None and existing.num_rows + len(rows) > ROWS_PER_PART:
                number, existing = number + 1, None
            new = pa.Table.from_pylist([dict(r) for r in rows], schema=SEGMENT_SCHEMA)
            table = pa.concat_tables([existing, new]) if existing is not None else new
            path = segments_dir(self.root) / f"part-{number:06d}.parquet"
            with atomic_output(path) as temp:
                pq.write_table(table, temp, compression="zstd")
                fault_point("commit:before-rename")

    def keys(self) -> set[tuple[str, int]]:
        """(video_key, episode_index) of every committed row."""
        table = read_segments(self.root)
        return set(zip(table["video_key"].to_pylist(), table["episode_index"].to_pylist(), strict=True))


def decode_episode_frames(
    root: Path | str,
    video_key: str,
    episode_index: int,
    timestamps: Sequence[float],
    tolerance_s: float,
    backend: str | None = None,
) -> Any:
    """Decode frames of one episode by the episode's own timestamps (0 = its first frame).

    Looks the episode up in the segments metadata and queries its chunk file at
    ``from_timestamp + t``. Returns what :func:`robovid.decode_video_frames` returns.
    """
    from robovid.decode import decode_video_frames

    root = Path(root)
    row = find_segment(root, video_key, episode_index)
    if row is None:
        raise MetadataError(
            f"Episode {episode_index} of camera {video_key!r} is not in {segments_dir(root)}: "
            "not encoded yet, or failed (see `robovid status`)."
        )
    path = chunk_path(root, video_key, row["chunk_index"], row["file_index"])
    return decode_video_frames(path, [row["from_timestamp"] + t for t in timestamps], tolerance_s, backend)
