"""`robovid merge DEST SRC...`: robots' roots into one dataset; renumbered, exact, idempotent, crash-safe.

Sources are made by the real pipeline (`robovid process`) with small chunk files, so each camera
has several: robot A in AV1, robot B in h264 (its frames cannot follow A's by stream copy, so DEST
starts a file for them). Every frame carries its source (episode, frame) index, so each merged row
is checked frame by frame against the episode it was renumbered from.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from daemon_harness import PointHooks, daemon_env, decoded_indices, wait_for
from merge_harness import (
    CAMERAS,
    EXPECTED,
    FRAMES,
    ROBOT_A,
    ROBOT_B,
    check_lerobot,
    check_merged,
    digests,
    make_robot,
    merge_cli,
)

from robovid.errors import MergeError
from robovid.layout import chunk_path, episode_dir, merge_dir, sealed_dir, state_dir
from robovid.merge import merge_roots
from robovid.metadata import read_segments
from robovid.synthetic import write_episode, write_recording
from robovid.verify import verify_root
from robovid_watch.state import root_locked


@pytest.fixture(scope="module")
def robots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    robot_a = make_robot(tmp_path_factory.mktemp("robot_a"), ROBOT_A, "libsvtav1")
    robot_b = make_robot(tmp_path_factory.mktemp("robot_b"), ROBOT_B, "h264")
    assert len(list(robot_a.glob("videos/front/*/*.mp4"))) >= 2, "want several source files per camera"
    return robot_a, robot_b


def test_merge_renumbers_episodes_with_exact_offsets_and_consistent_lerobot_metadata(
    tmp_path: Path, robots: tuple[Path, Path]
) -> None:
    robot_a, robot_b = robots
    before = {robot: digests(robot) for robot in robots}
    dest = tmp_path / "dest"
    report = merge_roots(dest, [robot_a, robot_b], task="pick the cube")
    check_merged(dest, EXPECTED)
    check_lerobot(dest, EXPECTED, "pick the cube")
    assert verify_root(dest) == ([], len(EXPECTED) * len(CAMERAS))
    assert report.rows_committed == len(EXPECTED) * len(CAMERAS) and report.recovered == 0
    assert report.episodes == {str(robot_a.resolve()): {0: 0, 1: 1, 2: 2}, str(robot_b.resolve()): {100: 3, 101: 4}}
    numbering = json.loads((merge_dir(dest) / "episodes.json").read_text())["episodes"]
    assert numbering == {str(robot_a.resolve()): {"0": 0, "1": 1, "2": 2}, str(robot_b.resolve()): {"100": 3, "101": 4}}
    assert {robot: digests(robot) for robot in robots} == before, "a source was written to"
    codecs = {r["video_key"]: set() for r in read_segments(dest).to_pylist()}
    for row in read_segments(dest).to_pylist():
        codecs[row["video_key"]].add((row["video.codec"], row["chunk_index"], row["file_index"]))
    assert all(len({c for c, *_ in places}) == 2 for places in codecs.values()), "both robots' codecs kept"


def test_a_rerun_changes_nothing_and_a_robot_merged_later_is_appended_in_place(
    tmp_path: Path, robots: tuple[Path, Path]
) -> None:
    _, robot_b = robots
    dest = tmp_path / "dest"
    merge_roots(dest, [robot_b], task="t")
    check_merged(dest, {0: 100, 1: 101})
    before = digests(dest)
    again = merge_roots(dest, [robot_b], task="t")
    assert (again.appends, again.rows_committed) == (0, 0)
    assert digests(dest) == before, "a rerun rewrote something"

    robot_c = tmp_path / "robot_c"
    make_robot(robot_c, range(7, 8), "h264", file_size_mb="200")
    last = chunk_path(dest, "front", 0, 0)
    inode, old = last.stat().st_ino, last.read_bytes()
    merge_roots(dest, [robot_b, robot_c], task="t")
    check_merged(dest, {0: 100, 1: 101, 2: 7})
    new = last.read_bytes()
    assert last.stat().st_ino == inode and len(new) > len(old), "DEST's file was not appended to in place"
    assert sum(x != y for x, y in zip(old, new, strict=False)) <= 4, "more than the commit flip changed"


def test_episodes_a_source_records_later_continue_the_numbering(tmp_path: Path, robots: tuple[Path, Path]) -> None:
    robot_a = tmp_path / "robot_a"
    shutil.copytree(robots[0], robot_a)
    dest = tmp_path / "dest"
    merge_roots(dest, [robot_a, robots[1]], task="t")
    make_robot(robot_a, range(3, 4), "libsvtav1")  # robot A recorded on after the merge
    report = merge_roots(dest, [robot_a, robots[1]], task="t")
    assert report.episodes[str(robot_a.resolve())] == {0: 0, 1: 1, 2: 2, 3: 5}
    check_merged(dest, {**EXPECTED, 5: 3})
    check_lerobot(dest, {**EXPECTED, 5: 3}, "t")


def test_a_source_being_written_is_refused_and_the_service_cannot_start_on_a_source_being_merged(
    tmp_path: Path, robots: tuple[Path, Path], points: PointHooks
) -> None:
    robot_a, robot_b = robots
    with root_locked(robot_a), pytest.raises(MergeError, match="in use by another robovid process"):
        merge_roots(tmp_path / "dest", [robot_a, robot_b])
    assert not read_segments(tmp_path / "dest").num_rows

    points.hold("merge:after-intent")
    command = [sys.executable, "-m", "robovid_watch.cli", "merge", str(tmp_path / "dest"), str(robot_a), "--task", "t"]
    merging = subprocess.Popen(command, env={**daemon_env(tmp_path), **points.env}, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: points.passes("merge:after-intent") >= 1, "the merge's first append")
        service = subprocess.run(
            [sys.executable, "-m", "robovid_watch.main"],
            env=daemon_env(robot_a),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert service.returncode == 75, service.stderr[-2000:]
    finally:
        points.release("merge:after-intent")
        _, err = merging.communicate(timeout=600)
    assert merging.returncode == 0, err[-2000:]
    check_merged(tmp_path / "dest", {0: 0, 1: 1, 2: 2})


def test_sources_unlike_each_other_are_refused_before_anything_moves(tmp_path: Path, robots: tuple[Path, Path]) -> None:
    odd = tmp_path / "odd"
    write_recording(odd, ("front",), range(1), FRAMES, 64, 48)
    done = subprocess.run(
        [sys.executable, "-m", "robovid_watch.cli", "process", str(odd), "--no-progress"],
        env=daemon_env(odd),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = merge_cli(str(tmp_path / "dest"), str(robots[0]), str(odd))
    assert result.returncode == 1 and "has cameras ['front']" in result.stderr, result.stderr
    assert not list((tmp_path / "dest").glob("videos/**/*.mp4"))
    assert merge_cli(str(tmp_path / "dest"), str(robots[0]), str(robots[0])).returncode == 1
    assert merge_cli(str(tmp_path / "dest"), str(robots[0])).returncode == 0
    later = merge_cli(str(tmp_path / "dest"), str(odd))
    assert later.returncode == 1 and "(merged before) has ['front', 'wrist']" in later.stderr, later.stderr
    assert len(read_segments(tmp_path / "dest")) == len(ROBOT_A) * len(CAMERAS)


KILL_POINTS = [
    "merge:after-intent:1",
    "append:creating:1",
    "merge:after-intent:3",
    "append:after-mdat:2",
    "append:before-flip:3",
    "merge:after-append:4",
    "commit:before-rename:2",
    "merge:after-commit:5",
    "lerobot-export:after-data:1",
    "lerobot-export:before-info:1",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_merge_killed_at_any_point_then_rerun_has_every_frame_in_exactly_one_episode(
    tmp_path: Path, robots: tuple[Path, Path], point: str
) -> None:
    robot_a, robot_b = robots
    dest = tmp_path / "dest"
    args = (str(dest), str(robot_a), str(robot_b), "--task", "t", "--file-size-mb", "0.02")
    killed = merge_cli(*args, ROBOVID_FAULT_POINT=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr[-2000:]}"
    check_merged(dest, EXPECTED, final=False)
    rerun = merge_cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    check_merged(dest, EXPECTED)
    check_lerobot(dest, EXPECTED, "t")
    again = merge_cli(*args)
    assert again.returncode == 0 and "0 segment row(s) committed in 0 append(s)" in again.stdout, again.stdout


def test_the_merge_held_mid_append_and_killed_by_the_test_then_rerun(
    tmp_path: Path, robots: tuple[Path, Path], points: PointHooks
) -> None:
    dest = tmp_path / "dest"
    args = (str(dest), str(robots[0]), str(robots[1]), "--task", "t")
    points.hold("append:before-flip")
    command = [sys.executable, "-m", "robovid_watch.cli", "merge", *args, "--no-progress"]
    merging = subprocess.Popen(command, env={**daemon_env(dest), **points.env}, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: points.passes("append:before-flip") >= 1, "an append written but not committed")
        merging.kill()
        merging.communicate(timeout=60)
    finally:
        points.release("append:before-flip")
    assert merging.returncode == -signal.SIGKILL
    assert list(merge_dir(dest).glob("intent-*.json")), "the killed run left its intent"
    check_merged(dest, EXPECTED, final=False)
    rerun = merge_cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    check_merged(dest, EXPECTED)
    assert state_dir(dest).is_dir()


def test_a_source_merged_before_under_another_path_is_refused(tmp_path: Path, robots: tuple[Path, Path]) -> None:
    dest = tmp_path / "dest"
    merge_roots(dest, [robots[1]], task="t")
    moved = tmp_path / "moved"
    shutil.copytree(robots[1], moved)
    with pytest.raises(MergeError, match="holds episodes merged before"):
        merge_roots(dest, [moved], task="t")
    check_merged(dest, {0: 100, 1: 101})


def test_each_episode_keeps_its_robots_lerobot_task(tmp_path: Path, robots: tuple[Path, Path]) -> None:
    copies = [tmp_path / "robot_a", make_robot(tmp_path / "robot_c", range(2), "h264")]
    shutil.copytree(robots[0], copies[0])
    for copy, task in zip(copies, ("pick", "place"), strict=True):
        exported = subprocess.run(
            [sys.executable, "-m", "robovid_watch.cli", "lerobot", str(copy), "--task", task],
            env=daemon_env(copy),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert exported.returncode == 0, exported.stderr[-2000:]
    dest = tmp_path / "dest"
    assert merge_cli(str(dest), *map(str, copies)).returncode == 0
    check_merged(dest, {0: 0, 1: 1, 2: 2, 3: 0, 4: 1})
    tasks = pq.read_table(dest / "meta" / "tasks.parquet").to_pylist()
    assert [(t["task_index"], t["__index_level_0__"]) for t in tasks] == [(0, "pick"), (1, "place")]
    episodes = pq.read_table(next(dest.glob("meta/episodes/*/*.parquet"))).to_pylist()
    assert [e["tasks"] for e in episodes] == [["pick"]] * 3 + [["place"]] * 2
    data = pq.read_table(next(dest.glob("data/*/*.parquet")))
    assert data["task_index"].to_pylist() == [0] * 3 * FRAMES + [1] * 2 * FRAMES
    info = json.loads((dest / "meta" / "info.json").read_text())
    assert info["total_tasks"] == 2
    stats = json.loads((dest / "meta" / "stats.json").read_text())
    assert stats["task_index"]["max"] == [1] and stats["task_index"]["min"] == [0]
    assert merge_cli(str(dest), *map(str, copies), "--task", "one").returncode == 0
    assert pq.read_table(dest / "meta" / "tasks.parquet")["__index_level_0__"].to_pylist() == ["one"]


def test_every_take_a_source_keeps_is_merged_and_the_latest_is_the_episode(tmp_path: Path) -> None:
    """A robot re-took episode 0 (`robovid retake`): both takes' frames are in its chunk file. Both are merged,
    each frame of DEST's files in exactly one row, and the merged episode is the latest take."""
    robot, dest = tmp_path / "robot", tmp_path / "dest"

    def cli(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "robovid_watch.cli", *args],
            env=daemon_env(robot),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    for episode in (0, 1):
        write_episode(episode_dir(robot, "cam", episode), episode, FRAMES, 64, 48, seed=1)
    cli("process", str(robot), "--no-progress")
    write_episode(episode_dir(robot, "cam", 0), 100, 6, 64, 48, seed=2)  # the re-take: burnt-in episode 100
    cli("retake", str(robot), "0", "--camera", "cam")
    cli("process", str(robot), "--no-progress")
    assert sorted(r["take"] for r in read_segments(robot, all_takes=True).to_pylist()) == [0, 0, 1]
    assert merge_cli(str(dest), str(robot)).returncode == 0
    rows = read_segments(dest, all_takes=True).to_pylist()
    claimed: dict[Path, list[int]] = defaultdict(list)
    found = {}
    for row in rows:
        path = chunk_path(dest, "cam", row["chunk_index"], row["file_index"])
        frames = decoded_indices(path)[row["first_frame"] : row["first_frame"] + row["num_frames"]]
        found[(row["episode_index"], row["take"])] = frames
        claimed[path] += range(row["first_frame"], row["first_frame"] + row["num_frames"])
    assert found == {
        (0, 0): [(0, i) for i in range(FRAMES)],
        (0, 1): [(100, i) for i in range(6)],
        (1, 0): [(1, i) for i in range(FRAMES)],
    }
    for path, frames in claimed.items():
        assert sorted(frames) == list(range(len(decoded_indices(path)))), f"{path}: a frame in no row or in two"
    assert sorted((r["episode_index"], r["take"]) for r in read_segments(dest).to_pylist()) == [(0, 1), (1, 0)]
    assert json.loads((dest / "meta" / "info.json").read_text())["total_frames"] == 6 + FRAMES


def test_a_dest_a_service_finished_files_in_is_refused(tmp_path: Path, robots: tuple[Path, Path]) -> None:
    """A root robovid-watch sealed files in (robovid-ship may have shipped and pruned them) is not a DEST."""
    dest = tmp_path / "dest"
    shutil.copytree(robots[0], dest)  # several files a camera: all but the last are sealed at a start
    robovid_watch = subprocess.run(  # a service start seals every file but each camera's last
        [sys.executable, "-m", "robovid_watch.cli", "process", str(dest), "--no-progress"],
        env=daemon_env(dest),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert robovid_watch.returncode == 0, robovid_watch.stderr[-2000:]
    assert any(sealed_dir(dest).glob("*.json"))
    before = digests(dest)
    with pytest.raises(MergeError, match="finished \\(sealed\\)"):
        merge_roots(dest, [robots[1]])
    assert digests(dest) == before
