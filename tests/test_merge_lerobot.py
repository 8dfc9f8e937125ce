"""`robovid merge` of LeRobot-recorded roots (data/ rows with observation.state and action), without LeRobot.

The sources are laid out as LeRobot 0.4.4 records (tests/merge_harness.py ``make_lerobot_robot``;
tests/test_lerobot_real.py merges roots LeRobot itself recorded, when ROBOVID_LEROBOT_PYTHON is set).
Every frame carries its source (episode, frame) index and every data row its source episode, so
the merged dataset is checked frame by frame and row by row the way LeRobot reads it.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from merge_harness import (
    FRAMES,
    ROBOT_A,
    check_merged,
    digests,
    lerobot_wrong,
    make_lerobot_robot,
    make_robot,
    merge_cli,
)

from robovid.errors import MergeError, MergeMismatchError
from robovid.layout import merge_dir
from robovid.lerobot_stats import QUANTILE_KEYS
from robovid.merge import merge_roots

BURNT_A = range(100, 103)
BURNT_B = range(200, 202)
EXPECTED = {0: 100, 1: 101, 2: 102, 3: 200, 4: 201}
"""DEST episode -> the index burnt into its source frames and rows (A's episodes first, then B's)."""


@pytest.fixture(scope="module")
def robots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    robot_a = make_lerobot_robot(tmp_path_factory.mktemp("lerobot_a") / "root", BURNT_A, "task a")
    robot_b = make_lerobot_robot(tmp_path_factory.mktemp("lerobot_b") / "root", BURNT_B, "task b")
    assert len(list(robot_a.glob("videos/*/chunk-*/*.mp4"))) > 2, "want several source files per camera"
    return robot_a, robot_b


@pytest.fixture(scope="module")
def merged(robots: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("merged") / "dest"
    merge_roots(dest, list(robots))
    return dest


def test_two_lerobot_recorded_roots_merge_with_every_frame_and_row_from_its_source_episode(
    robots: tuple[Path, Path], merged: Path
) -> None:
    before = {robot: digests(robot) for robot in robots}
    assert lerobot_wrong(merged, EXPECTED) == (0, 0)
    wrong_frames, wrong_rows = lerobot_wrong(merged, EXPECTED | {0: 101, 1: 100})  # a wrong mapping is caught
    assert (wrong_frames, wrong_rows) == (2 * 2 * FRAMES, 2 * FRAMES)
    info = json.loads((merged / "meta" / "info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (5, 5 * FRAMES, 2)
    assert info["features"] == json.loads((robots[0] / "meta" / "info.json").read_text())["features"]
    tasks = [r["__index_level_0__"] for r in pq.read_table(merged / "meta" / "tasks.parquet").to_pylist()]
    data = pq.read_table(sorted(merged.glob("data/*/*.parquet"))).to_pylist()
    assert [tasks[r["task_index"]] for r in data] == ["task a"] * 3 * FRAMES + ["task b"] * 2 * FRAMES
    episodes = pq.read_table(next(merged.glob("meta/episodes/*/*.parquet"))).to_pylist()
    assert [e["tasks"] for e in episodes] == [["task a"]] * 3 + [["task b"]] * 2
    for episode in episodes:
        assert episode["stats/episode_index/mean"] == [episode["episode_index"]]
        assert episode["stats/index/min"] == [episode["dataset_from_index"]]
    check_merged(merged, EXPECTED, cameras=("observation.images.front", "observation.images.wrist"))
    assert {robot: digests(robot) for robot in robots} == before, "a source was written"


def test_the_merged_statistics_are_the_count_weighted_aggregate_of_the_sources(
    robots: tuple[Path, Path], merged: Path
) -> None:
    """mean/std/min/max equal numpy's over every merged row; quantiles the count-weighted mean of the episodes'."""
    stats = json.loads((merged / "meta" / "stats.json").read_text())
    data = pq.read_table(sorted(merged.glob("data/*/*.parquet")))
    for name in ("observation.state", "action", "index", "episode_index"):
        values = np.array(data[name].to_pylist(), dtype=np.float64).reshape(data.num_rows, -1)
        np.testing.assert_allclose(stats[name]["mean"], values.mean(axis=0), rtol=1e-9)
        np.testing.assert_allclose(stats[name]["std"], values.std(axis=0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats[name]["min"], values.min(axis=0))
        np.testing.assert_allclose(stats[name]["max"], values.max(axis=0))
        assert stats[name]["count"] == [data.num_rows]
    sources = [pq.read_table(next(r.glob("meta/episodes/*/*.parquet"))).to_pylist() for r in robots]
    rows = [row for table in sources for row in table]
    for feature in ("observation.state", "observation.images.front"):
        counts = np.array([row[f"stats/{feature}/count"][0] for row in rows], dtype=np.float64)
        assert stats[feature]["count"] == [int(counts.sum())]
        for key in QUANTILE_KEYS:
            values = np.array([row[f"stats/{feature}/{key}"] for row in rows], dtype=np.float64)
            weights = counts.reshape(-1, *([1] * (values.ndim - 1)))
            expected = (values * weights).sum(axis=0) / counts.sum()
            np.testing.assert_allclose(stats[feature][key], expected, rtol=1e-9, err_msg=f"{feature} {key}")


def test_a_rerun_changes_nothing_and_a_later_robot_is_appended(tmp_path: Path, robots: tuple[Path, Path]) -> None:
    dest = tmp_path / "dest"
    merge_roots(dest, [robots[0]])
    assert lerobot_wrong(dest, {k: v for k, v in EXPECTED.items() if k < 3}) == (0, 0)
    first = digests(dest)
    again = merge_roots(dest, [robots[0]])
    assert again.appends == 0 and digests(dest) == first
    merge_roots(dest, list(robots))
    assert lerobot_wrong(dest, EXPECTED) == (0, 0)


KILL_POINTS = [
    "merge-lerobot:after-store:2",
    "merge:after-intent:1",
    "append:after-mdat:2",
    "merge:after-append:3",
    "commit:before-rename:2",
    "merge:after-commit:4",
    "merge-lerobot:after-data:1",
    "merge-lerobot:before-info:1",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_merge_killed_at_any_point_then_rerun_gives_the_uninterrupted_result(
    tmp_path: Path, robots: tuple[Path, Path], merged: Path, point: str
) -> None:
    dest = tmp_path / "dest"
    args = (str(dest), str(robots[0]), str(robots[1]))
    killed = merge_cli(*args, ROBOVID_FAULT_POINT=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr[-2000:]}"
    rerun = merge_cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert lerobot_wrong(dest, EXPECTED) == (0, 0)
    check_merged(dest, EXPECTED, cameras=("observation.images.front", "observation.images.wrist"))
    lerobot_files = ("data/", "meta/", "videos/")
    assert {k: v for k, v in digests(dest).items() if k.startswith(lerobot_files)} == {
        k: v for k, v in digests(merged).items() if k.startswith(lerobot_files)
    }
    assert not list(merge_dir(dest).glob("intent-*.json"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fps": 15}, "fps 15 (vs 10)"),
        ({"robot_type": "so100"}, "robot_type 'so100' (vs None)"),
        ({"features.observation.state.shape": [3]}, "observation.state shape [3] (vs [2])"),
        ({"features.observation.images.front.info.video.codec": "av1"}, "video.codec 'av1' (vs 'h264')"),
        ({"features.observation.images.front.info.video.pix_fmt": "yuv444p"}, "video.pix_fmt 'yuv444p'"),
        ({"drop": "action"}, "features missing: action"),
    ],
)
def test_sources_unlike_each_other_are_refused_naming_the_difference_before_anything_moves(
    tmp_path: Path, robots: tuple[Path, Path], change: dict[str, object], message: str
) -> None:
    odd = tmp_path / "odd"
    shutil.copytree(robots[1], odd)
    info = json.loads((odd / "meta" / "info.json").read_text())
    for key, value in change.items():
        if key == "drop":
            del info["features"][str(value)]
        elif key.startswith("features."):
            rest = key[len("features.") :]
            feature = next(f for f in info["features"] if rest.startswith(f + "."))
            path = rest[len(feature) + 1 :]
            target = info["features"][feature]
            if path.startswith("info."):
                target, path = target["info"], path[len("info.") :]
            target[path] = value
        else:
            info[key] = value
    (odd / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    dest = tmp_path / "dest"
    with pytest.raises(MergeMismatchError) as raised:
        merge_roots(dest, [robots[0], odd])
    assert message in str(raised.value) and str(odd) in str(raised.value)
    assert not list(dest.glob("videos/**/*.mp4")) and not list(dest.glob("meta/**/*"))


def test_a_lerobot_recorded_root_and_a_video_only_root_are_refused(tmp_path: Path, robots: tuple[Path, Path]) -> None:
    video_only = make_robot(tmp_path / "video_only", ROBOT_A, "h264")
    result = merge_cli(str(tmp_path / "dest"), str(robots[0]), str(video_only))
    assert result.returncode == 1, result.stderr
    assert "one is LeRobot-recorded (data columns action, observation.state)" in result.stderr, result.stderr
    assert merge_cli(str(tmp_path / "dest"), str(robots[0])).returncode == 0
    later = merge_cli(str(tmp_path / "dest"), str(video_only))
    assert later.returncode == 1 and "DEST (merged before)" in later.stderr, later.stderr


def test_a_source_whose_meta_episodes_names_a_missing_video_is_refused(
    tmp_path: Path, robots: tuple[Path, Path]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(robots[1], broken)
    shutil.rmtree(broken / "videos" / "observation.images.wrist")
    with pytest.raises(MergeError, match=r"observation\.images\.wrist.*but missing"):
        merge_roots(tmp_path / "dest", [robots[0], broken])
    assert not list((tmp_path / "dest").glob("videos/**/*.mp4"))
