"""Reading LeRobot v3 metadata and adding robovid's video columns, against LeRobot's documented schema."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lerobot_files
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lerobot_files import CAMERAS

from robovid.errors import LeRobotMetadataError
from robovid.lerobot_meta import (
    INFO_PATH,
    ColumnsReport,
    SavedEpisodes,
    SegmentPlace,
    add_video_columns,
    add_video_info,
    check_frame_counts,
    lerobot_idle,
    read_complete,
    read_info,
    saved_episodes,
    segment_places,
    video_column_names,
    with_video_columns,
)

EPISODES_FILE = Path("meta/episodes/chunk-000/file-000.parquet")


def _places(lengths: list[int], cameras: tuple[str, ...] = CAMERAS) -> dict[tuple[str, int], SegmentPlace]:
    places, start = {}, 0.0
    for episode, length in enumerate(lengths):
        for camera in cameras:
            places[(camera, episode)] = SegmentPlace(0, 0, start, start + length / 10, length)
        start += length / 10
    return places


# --- info.json ---------------------------------------------------------------------------


def test_info_json_is_read_with_its_stamp_and_recognised_as_v3(tmp_path: Path) -> None:
    assert read_info(tmp_path) is None
    lerobot_files.write_info(tmp_path, lerobot_files.info(3, 60))
    info = read_info(tmp_path)
    assert info is not None and info.is_lerobot_v3
    assert (info.total_episodes, info.total_frames) == (3, 60)
    assert info.video_keys == list(CAMERAS)
    (tmp_path / INFO_PATH).write_text('{"fps": 30}')
    plain = read_info(tmp_path)
    assert plain is not None and not plain.is_lerobot_v3 and plain.video_keys == []


def test_a_half_written_info_json_says_to_read_it_again(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / INFO_PATH).write_text('{\n    "codebase_version": "v3.0",\n    "total_epi')
    with pytest.raises(LeRobotMetadataError, match="LeRobot may be rewriting it"):
        read_info(tmp_path)


def test_video_info_is_added_and_every_lerobot_byte_is_kept(tmp_path: Path) -> None:
    lerobot_files.write_info(tmp_path, lerobot_files.info(3, 60))
    original = (tmp_path / INFO_PATH).read_bytes()
    info = read_info(tmp_path)
    assert info is not None
    video = {"video.height": 48, "video.width": 64, "video.codec": "av1", "video.fps": 10, "has_audio": False}
    assert add_video_info(tmp_path, info, dict.fromkeys(CAMERAS, video), settle_s=0.01) is True
    written = json.loads((tmp_path / INFO_PATH).read_bytes())
    assert [written["features"][c]["info"] for c in CAMERAS] == [video, video]
    for camera in CAMERAS:
        del written["features"][camera]["info"]
    assert json.dumps(written, indent=4, ensure_ascii=False).encode() == original
    again = read_info(tmp_path)
    assert again is not None and add_video_info(tmp_path, again, dict.fromkeys(CAMERAS, video)) is None


def test_a_feature_declared_with_an_info_dict_gets_the_video_keys_beside_it(tmp_path: Path) -> None:
    data = lerobot_files.info(3, 60)
    data["features"][CAMERAS[0]]["info"] = {"is_depth_map": True}  # how LeRobot's current API declares depth
    lerobot_files.write_info(tmp_path, data)
    info = read_info(tmp_path)
    assert info is not None
    video = {"video.codec": "ffv1", "video.is_depth_map": True, "is_depth_map": True, "depth_unit": "mm"}
    assert add_video_info(tmp_path, info, dict.fromkeys(CAMERAS, video), settle_s=0.01) is True
    written = json.loads((tmp_path / INFO_PATH).read_bytes())
    assert [written["features"][c]["info"] for c in CAMERAS] == [video, video]
    again = read_info(tmp_path)
    assert again is not None and add_video_info(tmp_path, again, {c: {"video.codec": "h264"} for c in CAMERAS}) is None


def test_video_info_is_not_written_over_a_newer_info_json(tmp_path: Path) -> None:
    lerobot_files.write_info(tmp_path, lerobot_files.info(3, 60))
    info = read_info(tmp_path)
    assert info is not None
    lerobot_files.write_info(tmp_path, lerobot_files.info(4, 80))  # LeRobot saved another episode meanwhile
    assert add_video_info(tmp_path, info, {CAMERAS[0]: {"video.codec": "av1"}}, settle_s=0.01) is False
    assert json.loads((tmp_path / INFO_PATH).read_bytes()) == lerobot_files.info(4, 80)


# --- what LeRobot has saved -----------------------------------------------------------------


def test_an_episodes_file_lerobot_has_open_is_not_read_until_finalized(tmp_path: Path) -> None:
    writer = lerobot_files.recording(tmp_path, [20, 20], finalized=False)
    assert writer is not None
    info = read_info(tmp_path)
    assert info is not None
    saved = saved_episodes(tmp_path, info)
    assert saved.lengths == {} and saved.open_files == [tmp_path / EPISODES_FILE]
    assert read_complete(tmp_path / EPISODES_FILE) is None
    assert not lerobot_idle(tmp_path, info, quiet_s=0)
    writer.close()
    saved = saved_episodes(tmp_path, info)
    assert saved.lengths == {0: 20, 1: 20} and saved.open_files == []
    assert lerobot_idle(tmp_path, info, quiet_s=0)
    assert not lerobot_idle(tmp_path, info, quiet_s=3600)


def test_lerobot_is_not_idle_while_info_json_counts_an_episode_not_in_the_files(tmp_path: Path) -> None:
    lerobot_files.recording(tmp_path, [20, 20])
    lerobot_files.write_info(tmp_path, lerobot_files.info(3, 60))  # a third episode saved, its row buffered
    info = read_info(tmp_path)
    assert info is not None and not lerobot_idle(tmp_path, info, quiet_s=0)


def test_frame_counts_equal_to_exact_lengths_are_ready_and_a_longer_folder_is_refused() -> None:
    saved = SavedEpisodes(3, 60, lengths={0: 20, 1: 20, 2: 20})
    check = check_frame_counts(saved, {}, {0: 20, 1: 25, 2: 20})
    assert check.ready == {0, 2}
    assert check.mismatched == {1: (25, 20)}
    assert check.unproven == frozenset()


def test_frame_counts_are_proved_from_total_frames_while_the_episodes_file_is_open() -> None:
    saved = SavedEpisodes(3, 62)  # no complete episodes file yet
    assert check_frame_counts(saved, {0: 20}, {1: 21, 2: 21, 3: 7}).ready == {1, 2}
    assert check_frame_counts(saved, {}, {0: 20, 1: 21, 2: 21}).ready == {0, 1, 2}
    single = check_frame_counts(SavedEpisodes(1, 20), {}, {0: 25})  # one unknown episode: its length is the rest
    assert single.mismatched == {0: (25, 20)} and single.ready == frozenset()
    leftover = check_frame_counts(saved, {0: 20}, {1: 26, 2: 21})  # a discarded take left 5 frames in one
    assert leftover.ready == frozenset() and leftover.unproven == {1, 2}
    missing = check_frame_counts(saved, {}, {1: 21, 2: 21})  # episode 0 neither known nor on disk
    assert missing.ready == frozenset() and missing.unproven == {1, 2}


def test_an_unsaved_episode_is_never_ready() -> None:
    check = check_frame_counts(SavedEpisodes(1, 20), {}, {0: 20, 1: 20})
    assert check.ready == {0} and 1 not in check.unproven


# --- robovid's columns --------------------------------------------------------------------


def test_video_columns_go_after_dataset_to_index_and_every_lerobot_value_is_kept(tmp_path: Path) -> None:
    lerobot_files.recording(tmp_path, [20, 21, 22])
    path = tmp_path / EPISODES_FILE
    before = pq.read_table(path)
    report = add_video_columns(tmp_path, CAMERAS, _places([20, 21, 22]), settle_s=0.01)
    assert report.written == [path] and report.complete
    after = pq.read_table(path)
    lerobot_columns = [name for name in after.column_names if not name.startswith("videos/")]
    assert lerobot_columns == before.column_names
    for name in before.column_names:
        assert after.schema.field(name) == before.schema.field(name)
        assert after[name].equals(before[name]), name
    position = after.column_names.index("dataset_to_index")
    expected = [name for camera in CAMERAS for name in video_column_names(camera)]
    assert after.column_names[position + 1 : position + 9] == expected
    assert after["videos/observation.images.wrist/from_timestamp"].to_pylist() == [0.0, 2.0, 4.1]
    assert after.schema.field("videos/observation.images.front/chunk_index").type == pa.int64()
    assert after.schema.field("videos/observation.images.front/to_timestamp").type == pa.float64()
    assert add_video_columns(tmp_path, CAMERAS, _places([20, 21, 22]), settle_s=0.01).written == []


def test_rows_are_filled_as_their_episodes_commit(tmp_path: Path) -> None:
    lerobot_files.recording(tmp_path, [20, 21])
    places = _places([20, 21])
    first = add_video_columns(tmp_path, CAMERAS, {k: v for k, v in places.items() if k[1] == 0}, settle_s=0.01)
    assert first.missing == [(CAMERAS[0], 1), (CAMERAS[1], 1)] and not first.complete
    table = pq.read_table(tmp_path / EPISODES_FILE)
    assert table["videos/observation.images.front/chunk_index"].to_pylist() == [0, None]
    second = add_video_columns(tmp_path, CAMERAS, places, settle_s=0.01)
    assert second.complete and second.written == [tmp_path / EPISODES_FILE]
    assert pq.read_table(tmp_path / EPISODES_FILE)["videos/observation.images.front/file_index"].null_count == 0


def test_a_segment_whose_length_differs_from_lerobots_is_not_written(tmp_path: Path) -> None:
    lerobot_files.recording(tmp_path, [20, 21])
    places = _places([20, 25])
    report = add_video_columns(tmp_path, CAMERAS, places, settle_s=0.01)
    assert sorted(report.mismatched) == [(CAMERAS[0], 1, 25, 21), (CAMERAS[1], 1, 25, 21)]
    assert pq.read_table(tmp_path / EPISODES_FILE)["videos/observation.images.front/chunk_index"].to_pylist() == [
        0,
        None,
    ]


def test_video_values_lerobot_wrote_itself_are_kept() -> None:
    table = pa.Table.from_pylist([lerobot_files.episode_row(0, 20, 0)])
    table = table.append_column("videos/observation.images.front/chunk_index", pa.array([3], pa.int64()))
    for name, value, kind in (("file_index", 4, pa.int64()), ("from_timestamp", 9.0, pa.float64())):
        table = table.append_column(f"videos/observation.images.front/{name}", pa.array([value], kind))
    table = table.append_column("videos/observation.images.front/to_timestamp", pa.array([11.0], pa.float64()))
    report = ColumnsReport()
    updated = with_video_columns(table, [CAMERAS[0]], _places([20], (CAMERAS[0],)), report)
    assert updated is None and report.conflicts == [(CAMERAS[0], 0)]


def test_an_episodes_file_lerobot_still_writes_is_left_alone(tmp_path: Path) -> None:
    writer = lerobot_files.recording(tmp_path, [20], finalized=False)
    assert writer is not None
    size = os.stat(tmp_path / EPISODES_FILE).st_size
    report = add_video_columns(tmp_path, CAMERAS, _places([20]), settle_s=0.01)
    assert report.open_files == [tmp_path / EPISODES_FILE] and report.written == []
    assert os.stat(tmp_path / EPISODES_FILE).st_size == size
    writer.close()
    assert pq.read_table(tmp_path / EPISODES_FILE).num_rows == 1


def test_segment_places_come_from_segment_rows() -> None:
    rows = [
        {
            "video_key": "front",
            "episode_index": 4,
            "chunk_index": 0,
            "file_index": 2,
            "from_timestamp": 1.5,
            "to_timestamp": 3.5,
            "num_frames": 20,
        }
    ]
    assert segment_places(rows) == {("front", 4): SegmentPlace(0, 2, 1.5, 3.5, 20)}
