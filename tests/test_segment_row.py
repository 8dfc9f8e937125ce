"""The segment row: one typed record from the service into Parquet and through the JSON journal, unchanged."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from robovid.metadata import (
    SEGMENT_SCHEMA,
    SegmentRow,
    SegmentStore,
    _from_json_value,
    _to_json_value,
    find_segment,
    read_segments,
)
from robovid_watch.state import Intent, RootState


def _full_row(**changes: object) -> SegmentRow:
    """A row with every column set, the awkward values included (inf, a non-ASCII key, microseconds)."""
    values: dict[str, object] = {
        "episode_index": 42,
        "video_key": "wrist cam 'left' é",
        "chunk_index": 1,
        "file_index": 7,
        "from_timestamp": 12.3 + 1e-12,
        "to_timestamp": 0.1 + 0.2,
        "first_frame": 369,
        "num_frames": 300,
        "fps": 30,
        "video_height": 480,
        "video_width": 640,
        "video_codec": "av1",
        "video_pix_fmt": "yuv420p",
        "video_fps": 30,
        "video_channels": 3,
        "video_is_depth_map": False,
        "has_audio": False,
        "video_g": 2,
        "video_crf": 30,
        "video_preset": "12",
        "video_fast_decode": 0,
        "video_bytes": 1_234_567,
        "source_bytes": 98_765_432_100,
        "encode_s": 1 / 3,
        "verify_s": 2.5e-7,
        "append_s": 0.0,
        "min_psnr_db": math.inf,
        "committed_at": datetime(2026, 12, 4, 17, 50, 1, 123456, tzinfo=UTC),
    }
    return SegmentRow(**(values | changes))  # type: ignore[arg-type]


def test_the_row_has_one_field_per_column_of_the_schema_in_its_order() -> None:
    names = [f.name for f in dataclasses.fields(SegmentRow)]
    assert names == [column.replace(".", "_") for column in SEGMENT_SCHEMA.names]
    assert list(_full_row().to_record()) == SEGMENT_SCHEMA.names


def test_the_json_round_trip_is_exact_and_typed() -> None:
    row = _full_row()
    back = SegmentRow.from_json(json.loads(json.dumps(row.to_json())))
    assert back == row
    assert isinstance(back.committed_at, datetime) and back.committed_at.tzinfo is not None
    assert back.to_timestamp == 0.1 + 0.2 and back.min_psnr_db == math.inf


def test_a_row_not_yet_placed_round_trips_with_its_empty_columns() -> None:
    row = _full_row(chunk_index=None, file_index=None, first_frame=None, committed_at=None, min_psnr_db=None)
    assert SegmentRow.from_json(json.loads(json.dumps(row.to_json()))) == row


@pytest.mark.parametrize(
    ("arrow_type", "value"),
    [
        (pa.binary(), b"\x00\xffbytes\n"),
        (pa.large_binary(), bytes(range(256))),
        (pa.date32(), date(2026, 12, 4)),
        (pa.timestamp("us", tz="UTC"), datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)),
        (pa.timestamp("ms"), datetime(2026, 1, 2, 3, 4, 5)),
    ],
    ids=str,
)
def test_binary_and_date_columns_come_back_typed_from_json(arrow_type: pa.DataType, value: object) -> None:
    encoded = json.loads(json.dumps(_to_json_value(value, arrow_type)))
    assert isinstance(encoded, str)
    back = _from_json_value(encoded, arrow_type)
    assert back == value and type(back) is type(value)


def test_the_builder_takes_the_video_columns_from_the_probe_and_drops_a_nan_psnr() -> None:
    info = {
        "video.height": 48,
        "video.width": 64,
        "video.codec": "av1",
        "video.pix_fmt": "yuv420p",
        "video.is_depth_map": False,
        "video.fps": 30,
        "video.channels": 3,
        "video.g": 2,
        "video.crf": 30,
        "video.preset": 12,
        "video.fast_decode": 0,
        "has_audio": False,
        "audio.codec": "not a column",
    }
    row = SegmentRow.from_video_info(
        info,
        episode_index=3,
        video_key="cam",
        num_frames=8,
        fps=30,
        video_bytes=10,
        source_bytes=99,
        min_psnr_db=math.nan,
    )
    assert row.video_preset == "12" and row.video_width == 64 and row.has_audio is False
    assert row.min_psnr_db is None and row.chunk_index is None and row.committed_at is None


def test_committed_rows_read_back_equal_from_parquet(tmp_path: Path) -> None:
    rows = [
        _full_row(episode_index=i, committed_at=datetime(2026, 12, 4, 17, 50, i, 5000, tzinfo=UTC)) for i in range(3)
    ]
    store = SegmentStore(tmp_path)
    store.commit(rows[:2])
    store.commit(rows[2:])
    assert read_segments(tmp_path).num_rows == 3
    assert find_segment(tmp_path, rows[1].video_key, 1) == rows[1]
    assert find_segment(tmp_path, rows[1].video_key, 9) is None
    assert store.keys() == {(rows[0].video_key, i) for i in range(3)}


def test_the_journal_gives_back_the_row_it_was_given(tmp_path: Path) -> None:
    state = RootState(tmp_path)
    state.prepare()
    row = _full_row()
    state.write_intent(Intent("cam", 42, 1, 7, 369, 300, row, source_mtime_ns=1_700_000_000_123_456_789))
    back = state.intent("cam", 42)
    assert back is not None and back.row == row and isinstance(back.row.committed_at, datetime)
    assert [i.row for i in state.intents()] == [row]


def test_a_journal_entry_written_before_the_row_was_typed_still_reads(tmp_path: Path) -> None:
    """An intent left by a crash of the previous version: a dict of column names, without the location."""
    state = RootState(tmp_path)
    state.prepare()
    row = _full_row(chunk_index=None, file_index=None, from_timestamp=None, to_timestamp=None, first_frame=None)
    old = {k: v for k, v in row.to_json().items() if k not in ("chunk_index", "file_index", "from_timestamp")}
    old = old | {"append_s": None, "committed_at": None}
    entry = {"camera": "cam", "episode": 42, "chunk_index": 0, "file_index": 0, "frames_before": 0, "num_frames": 300}
    entry |= {"row": old, "source_mtime_ns": 5}
    (state.journal_dir / "old.json").write_text(json.dumps(entry))
    [intent] = state.intents()
    assert intent.row == dataclasses.replace(row, append_s=None, committed_at=None)
