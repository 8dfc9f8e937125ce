"""A root from another recorder, processed by the real service, exported as a LeRobot v3 dataset.

The files are read back with pyarrow and json and checked against LeRobot 0.4.4's schema;
tests/test_lerobot_real.py loads them with LeRobot itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from daemon_harness import daemon_env, record

from robovid.frames import read_frame_rgb
from robovid.lerobot_export import ExportCache, export_dataset, exportable
from robovid.lerobot_meta import read_complete
from robovid.lerobot_stats import FrameStatsAccumulator
from robovid.metadata import read_segments
from robovid.synthetic import write_episode

FPS = 10
CAMERAS = ["front", "wrist"]


def _process(root: Path) -> None:
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps({"fps": FPS}))
    done = subprocess.run(
        [sys.executable, "-m", "robovid_watch.cli", "process", str(root), "--no-progress"],
        env=daemon_env(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three episodes of 8, 8 and 8 frames from two cameras, encoded and committed by `robovid process`."""
    root = tmp_path_factory.mktemp("exported")
    record(root, CAMERAS, range(3), num_frames=8)
    _process(root)
    return root


def _export(root: Path, task: str = "pour water") -> None:
    episodes, stopped = exportable(root, read_segments(root).to_pylist())
    assert stopped == ""
    export_dataset(root, episodes, FPS, task=task)


def test_info_json_describes_the_dataset(processed: Path, tmp_path: Path) -> None:
    root = _copy(processed, tmp_path)
    _export(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["fps"], info["total_episodes"], info["total_frames"], info["total_tasks"]) == (FPS, 3, 24, 1)
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert list(info["features"]) == [*CAMERAS, "timestamp", "frame_index", "episode_index", "index", "task_index"]
    front = info["features"]["front"]
    assert (front["dtype"], front["shape"], front["names"]) == ("video", [48, 64, 3], ["height", "width", "channels"])
    assert front["info"]["video.codec"] == "h264" and front["info"]["video.fps"] == FPS  # the service's default
    assert info["features"]["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}


def test_data_rows_index_every_frame(processed: Path, tmp_path: Path) -> None:
    root = _copy(processed, tmp_path)
    _export(root)
    table = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert table.column_names == ["timestamp", "frame_index", "episode_index", "index", "task_index"]
    assert table.schema.field("timestamp").type == pa.float32()
    assert all(table.schema.field(n).type == pa.int64() for n in table.column_names[1:])
    assert table["index"].to_pylist() == list(range(24))
    assert table["episode_index"].to_pylist() == [e for e in range(3) for _ in range(8)]
    frames = np.array(table["frame_index"].to_pylist())
    assert frames.tolist() == list(range(8)) * 3
    np.testing.assert_array_equal(table["timestamp"].to_numpy(), (frames / FPS).astype(np.float32))
    assert set(table["task_index"].to_pylist()) == {0}


def test_episodes_rows_locate_data_and_video_and_carry_statistics(processed: Path, tmp_path: Path) -> None:
    root = _copy(processed, tmp_path)
    _export(root)
    table = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    names = table.column_names
    assert names[:7] == [
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
    ]
    assert names[-2:] == ["meta/episodes/chunk_index", "meta/episodes/file_index"]
    assert table["episode_index"].to_pylist() == [0, 1, 2]
    assert table["tasks"].to_pylist() == [["pour water"]] * 3
    assert table["dataset_from_index"].to_pylist() == [0, 8, 16]
    assert table["dataset_to_index"].to_pylist() == [8, 16, 24]
    segments = {(r["video_key"], r["episode_index"]): r for r in read_segments(root).to_pylist()}
    for camera in CAMERAS:
        for name in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            column = table[f"videos/{camera}/{name}"].to_pylist()
            assert column == [segments[(camera, e)][name] for e in range(3)]
        for key in ("min", "max", "mean", "std", "q01", "q50", "q99"):
            values = np.array(table[f"stats/{camera}/{key}"].to_pylist())
            assert values.shape == (3, 3, 1, 1) and np.all((values >= -1e-9) & (values <= 1 + 1e-9))
        assert table[f"stats/{camera}/count"].to_pylist() == [[8]] * 3
    assert table["stats/index/min"].to_pylist() == [[0], [8], [16]]
    assert table.schema.field("stats/index/min").type == pa.list_(pa.int64())
    assert table["stats/timestamp/max"].to_pylist() == [[0.7]] * 3


def test_tasks_and_dataset_statistics(processed: Path, tmp_path: Path) -> None:
    root = _copy(processed, tmp_path)
    _export(root)
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert tasks.to_pylist() == [{"task_index": 0, "__index_level_0__": "pour water"}]
    pandas_meta = json.loads(tasks.schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["__index_level_0__"]
    stats = json.loads((root / "meta" / "stats.json").read_text())
    assert set(stats) == {*CAMERAS, "timestamp", "frame_index", "episode_index", "index", "task_index"}
    assert stats["index"]["count"] == [24] and stats["index"]["max"] == [23]
    assert stats["front"]["count"] == [24]
    assert np.array(stats["front"]["mean"]).shape == (3, 1, 1)
    assert set(stats["front"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}


def test_exporting_again_writes_nothing_and_new_episodes_extend_the_files(processed: Path, tmp_path: Path) -> None:
    root = _copy(processed, tmp_path)
    rows = read_segments(root).to_pylist()
    episodes, _ = exportable(root, rows)
    first = export_dataset(root, episodes[:2], FPS)
    assert len(first.written) == 5
    assert json.loads((root / "meta" / "info.json").read_text())["total_episodes"] == 2
    assert export_dataset(root, episodes[:2], FPS).written == []
    export_dataset(root, episodes, FPS)
    complete = read_complete(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    assert complete is not None and complete[0]["episode_index"].to_pylist() == [0, 1, 2]


def test_export_stops_before_an_episode_missing_a_camera(processed: Path, tmp_path: Path) -> None:
    rows = [r for r in read_segments(processed).to_pylist() if (r["video_key"], r["episode_index"]) != ("wrist", 1)]
    episodes, stopped = exportable(processed, rows)
    assert [e.index for e in episodes] == [0]
    assert "episode 1" in stopped and "wrist" in stopped


def test_an_export_killed_before_info_json_is_finished_by_the_next_one(processed: Path, tmp_path: Path) -> None:
    root = _copy(processed, tmp_path)
    code = f"""
import sys
from pathlib import Path
from robovid.lerobot_export import ExportCache, export_dataset, exportable
from robovid.metadata import read_segments
root = Path({str(root)!r})
episodes, _ = exportable(root, read_segments(root).to_pylist())
export_dataset(root, episodes, {FPS})
"""
    env = daemon_env(root, ROBOVID_FAULT_POINT="lerobot-export:before-info:1")
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((root / "meta" / "info.json").read_text()) == {"fps": FPS}  # the old one: not committed
    assert (root / "meta" / "stats.json").exists()
    _export(root)
    assert json.loads((root / "meta" / "info.json").read_text())["total_episodes"] == 3
    assert not [p for p in root.rglob("*") if ".robovid-tmp-" in p.name]


def _copy(source: Path, tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", str(source), str(root)], check=True)
    os.chmod(root, 0o755)
    return root


def _png_stats(tmp_path: Path, camera_number: int, episode: int) -> dict[str, np.ndarray]:
    """The statistics of an episode's original PNGs (record() draws them again from the same seed)."""
    frames = write_episode(tmp_path / f"png-{camera_number}-{episode}", episode, 8, 64, 48, seed=camera_number)
    accumulator = FrameStatsAccumulator(len(frames))
    for index, path in enumerate(frames):
        accumulator.add(index, read_frame_rgb(path))
    return accumulator.stats()


def test_episode_statistics_are_those_of_the_pngs_kept_from_the_encode(processed: Path, tmp_path: Path) -> None:
    root = _copy(processed, tmp_path)
    _export(root)
    table = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    for number, camera in enumerate(CAMERAS):
        for episode in range(3):
            expected = _png_stats(tmp_path, number, episode)
            for key, value in expected.items():
                assert table[f"stats/{camera}/{key}"][episode].as_py() == value.tolist(), (camera, episode, key)


def test_rows_committed_without_statistics_get_them_from_their_decoded_video(processed: Path, tmp_path: Path) -> None:
    rows = [dict(r, lerobot_stats=None) for r in read_segments(processed).to_pylist()]
    episodes, _ = exportable(processed, rows)
    expected = _png_stats(tmp_path, 0, 0)
    decoded = episodes[0].video_stats["front"]
    assert decoded["count"].tolist() == expected["count"].tolist()
    np.testing.assert_allclose(decoded["mean"], expected["mean"], atol=0.02)  # lossy video, same frames
    np.testing.assert_allclose(decoded["q50"], expected["q50"], atol=0.03)


def test_an_export_reusing_the_last_ones_work_writes_the_same_files_as_a_fresh_one(
    processed: Path, tmp_path: Path
) -> None:
    incremental, fresh = _copy(processed, tmp_path / "a"), _copy(processed, tmp_path / "b")
    cache = ExportCache()
    episodes, _ = exportable(incremental, read_segments(incremental).to_pylist(), cache=cache)
    for count in (1, 2, 3):
        export_dataset(incremental, episodes[:count], FPS, cache=cache)
    export_dataset(fresh, exportable(fresh, read_segments(fresh).to_pylist())[0], FPS)
    for name in ("meta/stats.json", "meta/info.json", "meta/tasks.parquet"):
        assert (incremental / name).read_bytes() == (fresh / name).read_bytes(), name
    for name in ("data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet"):
        assert pq.read_table(incremental / name).equals(pq.read_table(fresh / name)), name
