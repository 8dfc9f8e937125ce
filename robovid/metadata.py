"""Episode segment metadata: one Parquet row per (episode, camera), typed, written durably.

Rows live in ``{root}/.cache/huggingface/robovid/segments/part-NNNNNN.parquet`` (:func:`robovid.layout.segments_dir`). A commit rewrites
only the newest part (at most :data:`ROWS_PER_PART` rows) through a temp file, fsync
and ``os.replace``, so a commit costs the same on the first episode and the ten
thousandth, and a reader (plain ``pyarrow.parquet``) only ever sees whole files.

A row crosses from the service into Parquet and through the service's JSON journal as a
:class:`SegmentRow`, whose fields are the columns of :data:`SEGMENT_SCHEMA`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import shlex
import stat
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from robovid._faults import fault_point
from robovid.durable import atomic_output
from robovid.errors import MetadataError
from robovid.layout import PART_RE, existing_segments_dir, segment_part_path
from robovid.remote import is_url, read_remote_parts

ROWS_PER_PART = 256

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
        ("lerobot_stats", pa.string()),
        ("take", pa.int64()),
    ]
)
"""Columns of the segments table. ``first_frame`` is the episode's first frame in its chunk file;
``lerobot_stats`` the camera episode's statistics in LeRobot's format (JSON, computed from the PNGs
during the encode; null in rows committed before robovid kept them); ``take`` 0 for an episode's
first recording, one more for each re-take committed in its place (``robovid retake``): the rows of
earlier takes stay, and so do their frames in their chunk files."""


_COLUMN_OF_FIELD = {name.replace(".", "_"): name for name in SEGMENT_SCHEMA.names}
"""Field name of :class:`SegmentRow` -> its column (``video.height`` is field ``video_height``)."""
_PROBED_COLUMNS = [name for name in SEGMENT_SCHEMA.names if name.startswith("video.") or name == "has_audio"]
"""Columns filled from :func:`robovid.probe.get_video_info`, which uses the same (LeRobot) names."""


@dataclass(frozen=True, kw_only=True)
class SegmentRow:
    """One row of the segments table: one episode of one camera, where it lies and how it was made.

    The fields are the columns of :data:`SEGMENT_SCHEMA`, in its order, with a column
    ``video.x`` as field ``video_x``. The location fields (``chunk_index`` to ``first_frame``)
    and ``committed_at`` stay ``None`` until the episode is placed in its chunk (:meth:`placed`).
    """

    episode_index: int
    video_key: str
    """The camera key."""
    chunk_index: int | None = None
    file_index: int | None = None
    from_timestamp: float | None = None
    """Start of the episode in its chunk file, in seconds."""
    to_timestamp: float | None = None
    """End of the episode's last frame in its chunk file, in seconds."""
    first_frame: int | None = None
    """The episode's first frame among all frames of its chunk file."""
    num_frames: int
    fps: int
    video_height: int | None = None
    video_width: int | None = None
    video_codec: str | None = None
    video_pix_fmt: str | None = None
    video_fps: int | None = None
    video_channels: int | None = None
    video_is_depth_map: bool | None = None
    has_audio: bool | None = None
    video_g: int | None = None
    video_crf: int | None = None
    video_preset: str | None = None
    video_fast_decode: int | None = None
    video_bytes: int | None = None
    """Bytes of the encoded episode."""
    source_bytes: int | None = None
    """Bytes of its PNG frames."""
    encode_s: float | None = None
    verify_s: float | None = None
    append_s: float | None = None
    min_psnr_db: float | None = None
    """Lowest PSNR of the frames compared with their PNG (None when none was compared)."""
    committed_at: datetime | None = None
    lerobot_stats: str | None = None
    """The episode's statistics in LeRobot's format, as JSON (:func:`robovid.lerobot_stats.feature_stats_to_json`):
    counted from its PNGs during the encode. None in rows committed before robovid kept them."""
    take: int = 0
    """Which recording of the episode this is: the row with the highest take is the episode's."""

    @classmethod
    def from_video_info(
        cls,
        info: Mapping[str, Any],
        *,
        episode_index: int,
        video_key: str,
        num_frames: int,
        fps: int,
        video_bytes: int,
        source_bytes: int,
        encode_s: float | None = None,
        verify_s: float | None = None,
        min_psnr_db: float | None = None,
        lerobot_stats: str | None = None,
        take: int = 0,
    ) -> SegmentRow:
        """The row of a freshly encoded episode, its ``video.*`` columns from ``get_video_info`` of the encode."""
        probed = {
            column: _probed_value(info.get(column), SEGMENT_SCHEMA.field(column).type) for column in _PROBED_COLUMNS
        }
        return cls.from_record(
            probed
            | {
                "episode_index": episode_index,
                "video_key": video_key,
                "num_frames": num_frames,
                "fps": fps,
                "video_bytes": video_bytes,
                "source_bytes": source_bytes,
                "encode_s": encode_s,
                "verify_s": verify_s,
                "min_psnr_db": None if min_psnr_db is None or min_psnr_db != min_psnr_db else min_psnr_db,  # NaN
                "lerobot_stats": lerobot_stats,
                "take": take,
            }
        )

    def placed(
        self,
        *,
        chunk_index: int,
        file_index: int,
        from_timestamp: float,
        to_timestamp: float,
        first_frame: int,
        committed_at: datetime,
    ) -> SegmentRow:
        """This row with the episode's location in its chunk file and the commit time."""
        return dataclasses.replace(
            self,
            chunk_index=chunk_index,
            file_index=file_index,
            from_timestamp=from_timestamp,
            to_timestamp=to_timestamp,
            first_frame=first_frame,
            committed_at=committed_at,
        )

    def identity(self, appended_at: datetime | None) -> dict[str, Any]:
        """The row as an append records it in the chunk file (:mod:`robovid._records`), for a rebuild: JSON
        values (:meth:`to_json`), no place in a file (that is where the samples lie), ``committed_at`` the append's time
        (a merge keeps the source row's, so the merged files do not depend on when the merge ran)."""
        return dataclasses.replace(self.placed_nowhere(), committed_at=appended_at).to_json()

    def placed_nowhere(self) -> SegmentRow:
        """This row without its location in a chunk file."""
        return dataclasses.replace(
            self, chunk_index=None, file_index=None, from_timestamp=None, to_timestamp=None, first_frame=None
        )

    def to_record(self) -> dict[str, Any]:
        """The row keyed by column name, with Python values (what pyarrow reads and writes)."""
        return {column: getattr(self, name) for name, column in _COLUMN_OF_FIELD.items()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SegmentRow:
        """A row from a column-keyed mapping (a ``Table.to_pylist()`` item); absent columns are None."""
        values: dict[str, Any] = {name: record.get(column) for name, column in _COLUMN_OF_FIELD.items()}
        values["take"] = values["take"] or 0  # rows committed before takes were counted
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The row keyed by column name with JSON values: :meth:`from_json` gives back an equal row.

        Timestamps and dates become ISO 8601 strings, binary values base64; floats keep every bit
        (``json`` writes their shortest exact repr, and inf/NaN as ``Infinity``/``NaN``).
        """
        return {
            column: _to_json_value(value, SEGMENT_SCHEMA.field(column).type)
            for column, value in self.to_record().items()
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentRow:
        """The row :meth:`to_json` wrote, each value typed by its column's type in :data:`SEGMENT_SCHEMA`."""
        return cls.from_record(
            {
                column: _from_json_value(value, SEGMENT_SCHEMA.field(column).type)
                for column, value in data.items()
                if column in SEGMENT_SCHEMA.names
            }
        )


def _probed_value(value: Any, arrow_type: pa.DataType) -> Any:
    """A probe value in its column's type (robovid's preset tag may hold a number; the column is a string)."""
    return str(value) if value is not None and pa.types.is_string(arrow_type) else value


def _is_binary(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_fixed_size_binary(arrow_type)
    )


def _to_json_value(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return value.isoformat()
    if _is_binary(arrow_type):
        return base64.b64encode(value).decode("ascii")
    return value


def _from_json_value(value: Any, arrow_type: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_timestamp(arrow_type):
        return datetime.fromisoformat(value)
    if pa.types.is_date(arrow_type):
        return date.fromisoformat(value)
    if _is_binary(arrow_type):
        return base64.b64decode(value)
    return value


def _parts(root: Path) -> list[tuple[int, Path]]:
    directory = existing_segments_dir(root)
    if not directory.is_dir():
        return []
    found = []
    for entry in os.scandir(directory):
        match = PART_RE.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


def _read_part(path: Path, root: Path) -> pa.Table:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the reader forever
            raise OSError("not a regular file (a FIFO or a device?)")
        return pq.read_table(path, schema=SEGMENT_SCHEMA)
    except (OSError, pa.ArrowException) as error:
        aside = shlex.quote(f"{path}.damaged")
        raise MetadataError(
            f"{path}: segment metadata is unreadable ({error}). Restore it from a backup, or move it aside and "
            f"rebuild the rows it held from the chunk files, with robovid-watch stopped: `mv {shlex.quote(str(path))} "
            f"{aside}` then `robovid verify --repair {shlex.quote(str(root))}`; then start robovid-watch again. "
            "Rows of frames appended before robovid recorded each episode in its chunk file cannot be rebuilt "
            "(--repair names them)."
        ) from error


def read_segments(root: Path | str, all_takes: bool = False) -> pa.Table:
    """The committed segment rows under ``root``, one per episode and camera, as a pyarrow Table.

    An episode re-taken in place (``robovid retake``) has a row per take; its current one is the
    highest ``take``. ``all_takes`` returns the earlier takes' rows too. ``root`` is a local folder
    or an fsspec URL (``s3://bucket/robot-17``, laid out as robovid-ship ships it): :mod:`robovid.remote`.
    """
    if is_url(root):
        tables = read_remote_parts(str(root), SEGMENT_SCHEMA)
    else:
        tables = [_read_part(path, Path(root)) for _, path in _parts(Path(root))]
    if not tables:
        return SEGMENT_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    table = table.set_column(table.schema.get_field_index("take"), "take", pc.fill_null(table["take"], 0))
    return table if all_takes else _current_takes(table)


def _current_takes(table: pa.Table) -> pa.Table:
    """The rows of each (camera, episode) with its highest take, in table order (two rows of one take both stay)."""
    keys = list(zip(table["video_key"].to_pylist(), table["episode_index"].to_pylist(), strict=True))
    takes = table["take"].to_pylist()
    best: dict[tuple[str, int], int] = {}
    for key, take in zip(keys, takes, strict=True):
        best[key] = max(take, best.get(key, take))
    keep = [i for i, (key, take) in enumerate(zip(keys, takes, strict=True)) if take == best[key]]
    return table if len(keep) == table.num_rows else table.take(keep)


def find_segment(root: Path | str, video_key: str, episode_index: int) -> SegmentRow | None:
    """The row of one episode of one camera, or None when it is not committed."""
    table = read_segments(root)
    for record in table.to_pylist():
        if record["video_key"] == video_key and record["episode_index"] == episode_index:
            return SegmentRow.from_record(record)
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

    def commit(self, rows: Sequence[SegmentRow]) -> None:
        """Add rows; durable (fsynced, directory included) when this returns."""
        with self._lock:
            parts = _parts(self.root)
            number, existing = (parts[-1][0], _read_part(parts[-1][1], self.root)) if parts else (0, None)
            if existing is not None and existing.num_rows + len(rows) > ROWS_PER_PART:
                number, existing = number + 1, None
            new = pa.Table.from_pylist([row.to_record() for row in rows], schema=SEGMENT_SCHEMA)
            table = pa.concat_tables([existing, new]) if existing is not None else new
            path = segment_part_path(self.root, number)
            with atomic_output(path) as temp:
                pq.write_table(table, temp, compression="zstd")
                fault_point("commit:before-rename")

    def rows(self) -> list[dict[str, Any]]:
        """Every committed row."""
        return read_segments(self.root).to_pylist()

    def takes(self) -> dict[tuple[str, int], int]:
        """(video_key, episode_index) -> the take of its current row."""
        table = read_segments(self.root)
        keys = zip(table["video_key"].to_pylist(), table["episode_index"].to_pylist(), strict=True)
        return dict(zip(keys, table["take"].to_pylist(), strict=True))

    def keys(self) -> set[tuple[str, int]]:
        """(video_key, episode_index) of every committed row."""
        table = read_segments(self.root)
        return set(zip(table["video_key"].to_pylist(), table["episode_index"].to_pylist(), strict=True))
