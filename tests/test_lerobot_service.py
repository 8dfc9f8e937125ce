"""The real robovid-watch beside a LeRobot-shaped recorder (LeRobot's files, LeRobot's write order).

tests/lerobot_files.Session writes a root the way LeRobot 0.4.4 does with its encoding switched
off: PNGs without a completion marker, info.json rewritten in place at each save, the episodes
file without a footer until finalize. tests/test_lerobot_real.py does the same with LeRobot itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from daemon_harness import Daemon, Episode, daemon_env, png_digest, record, rows_by_key, start_daemon, wait_for
from lerobot_files import CAMERAS, Session

LEROBOT = {"ROBOVID_LEROBOT_ENCODE": "1", "ROBOVID_SETTLE_S": "0.05", "ROBOVID_LEROBOT_QUIET_S": "0.5"}
EPISODES_FILE = Path("meta/episodes/chunk-000/file-000.parquet")


def _episodes(episode: int, frames: int) -> list[Episode]:
    return [Episode(camera, episode, frames) for camera in CAMERAS]


def _waiting(daemon: Daemon, episode: int) -> bool:
    return {(e["camera"], e["episode"]) for e in daemon.events_named("episode_waiting")} >= {
        (c, episode) for c in CAMERAS
    }


def _committed(root: Path, episode: int) -> bool:
    return all((camera, episode) in rows_by_key(root) for camera in CAMERAS)


def test_an_episode_is_encoded_only_once_lerobot_saved_it_then_its_columns_are_written(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.record(0, 12)
    before = {e: png_digest(tmp_path, e) for e in _episodes(0, 12)}
    daemon = start_daemon(tmp_path, **LEROBOT)
    try:
        wait_for(lambda: _waiting(daemon, 0), "episode 0 reported as waiting for LeRobot", daemon=daemon)
        assert {e: png_digest(tmp_path, e) for e in before} == before  # settle time passed: still untouched
        session.save(12)
        wait_for(lambda: _committed(tmp_path, 0), "episode 0 committed once saved", daemon=daemon)
        session.record(1, 13)
        session.save(13)
        wait_for(lambda: _committed(tmp_path, 1), "episode 1 committed", daemon=daemon)
        wait_for(lambda: all(png_digest(tmp_path, e) is None for e in _episodes(1, 13)), "PNGs freed", daemon=daemon)
        session.finalize()
        lerobot_rows = pq.read_table(tmp_path / EPISODES_FILE)
        wait_for(lambda: bool(daemon.events_named("lerobot_metadata_complete")), "columns and info", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    table = pq.read_table(tmp_path / EPISODES_FILE)
    for name in lerobot_rows.column_names:
        assert table[name].equals(lerobot_rows[name]) and table.schema.field(name) == lerobot_rows.schema.field(name)
    rows = rows_by_key(tmp_path)
    for camera in CAMERAS:
        got = table[f"videos/{camera}/from_timestamp"].to_pylist()
        assert got == [rows[(camera, e)][0]["from_timestamp"] for e in (0, 1)]
    info = json.loads((tmp_path / "meta" / "info.json").read_text())
    assert (
        info["total_episodes"] == 2 and info["features"][CAMERAS[0]]["info"]["video.codec"] == "h264"
    )  # the service's default


def test_a_folder_holding_more_frames_than_lerobot_saved_is_refused_until_fixed(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.record(0, 15)  # a discarded 15-frame take, then a 12-frame take into the same folder
    session.save(12)
    daemon = start_daemon(tmp_path, **LEROBOT)
    try:
        wait_for(
            lambda: (
                len(
                    [
                        e
                        for e in daemon.events_named("episode_failed")
                        if e["error_type"] == "LeRobotLengthMismatchError"
                    ]
                )
                == 2
            ),
            "both cameras refused",
            daemon=daemon,
        )
        failed = daemon.events_named("episode_failed")[0]
        assert "15 frames" in failed["reason"] and "12" in failed["reason"]
        assert all(png_digest(tmp_path, e) is not None for e in _episodes(0, 15))
        for camera in CAMERAS:
            for index in (12, 13, 14):
                (tmp_path / "images" / camera / "episode-000000" / f"frame-{index:06d}.png").unlink()
        wait_for(lambda: _committed(tmp_path, 0), "episode 0 committed once the extra frames are gone", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert {row[0]["num_frames"] for row in rows_by_key(tmp_path).values()} == {12}


def test_a_lerobot_root_is_left_to_lerobot_unless_robovid_is_asked_to_encode_it(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.record(0, 12)
    session.save(12)
    before = {e: png_digest(tmp_path, e) for e in _episodes(0, 12)}
    done = subprocess.run(
        [sys.executable, "-m", "robovid_watch.cli", "process", str(tmp_path), "--no-progress"],
        env=daemon_env(tmp_path, ROBOVID_SETTLE_S="0.05"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done 0, failed 0" in done.stdout
    assert "lerobot_root" in done.stdout + done.stderr and "ROBOVID_LEROBOT_ENCODE" in done.stdout + done.stderr
    assert {e: png_digest(tmp_path, e) for e in before} == before
    assert rows_by_key(tmp_path) == {}


def test_a_root_from_another_recorder_is_exported_as_its_episodes_commit(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text('{"fps": 10}')
    record(tmp_path, ["front", "wrist"], range(2))
    daemon = start_daemon(tmp_path, ROBOVID_LEROBOT_EXPORT="1", ROBOVID_LEROBOT_TASK="wipe the table")

    def exported(count: int) -> bool:
        return any(e["episodes"] == count for e in daemon.events_named("lerobot_exported"))

    try:
        wait_for(lambda: exported(2), "episodes 0 and 1 exported", daemon=daemon)
        record(tmp_path, ["front", "wrist"], range(2, 3))
        wait_for(lambda: exported(3), "episode 2 exported", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    info = json.loads((tmp_path / "meta" / "info.json").read_text())
    assert (info["codebase_version"], info["total_episodes"], info["total_frames"]) == ("v3.0", 3, 24)
    table = pq.read_table(tmp_path / EPISODES_FILE)
    assert table["episode_index"].to_pylist() == [0, 1, 2]
    assert table["tasks"].to_pylist() == [["wipe the table"]] * 3


def test_the_second_camera_of_an_episode_is_taken_once_the_first_proved_its_length(tmp_path: Path) -> None:
    session = Session(tmp_path)
    for episode in range(2):
        session.record(episode, 12)
        session.save(12)
    daemon = start_daemon(tmp_path, ROBOVID_WORKERS="1", **LEROBOT)  # one camera at a time
    try:
        wait_for(lambda: _committed(tmp_path, 0) and _committed(tmp_path, 1), "both episodes committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0


def _cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "robovid_watch.cli", *args],
        env=daemon_env(root, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_robovid_lerobot_writes_the_columns_after_lerobot_finalized(tmp_path: Path) -> None:
    session = Session(tmp_path)
    for episode in range(2):
        session.record(episode, 12)
        session.save(12)
    session.flush()  # rows written, no footer yet: LeRobot still has the file open
    processed = _cli(tmp_path, "process", str(tmp_path), "--no-progress", ROBOVID_LEROBOT_ENCODE="1")
    assert processed.returncode == 0 and "done 4, failed 0" in processed.stdout, processed.stderr[-2000:]
    early = _cli(tmp_path, "lerobot", str(tmp_path))
    assert early.returncode == 1 and "has not closed" in early.stdout, early.stdout + early.stderr[-2000:]
    session.finalize()
    done = _cli(tmp_path, "lerobot", str(tmp_path))
    assert done.returncode == 0 and done.stdout.splitlines()[-1].startswith("complete"), done.stdout + done.stderr
    table = pq.read_table(tmp_path / EPISODES_FILE)
    assert table[f"videos/{CAMERAS[1]}/to_timestamp"].to_pylist() == [1.2, 2.4]
    info = json.loads((tmp_path / "meta" / "info.json").read_text())
    assert all(info["features"][camera]["info"]["video.height"] == 48 for camera in CAMERAS)


def test_robovid_lerobot_exports_a_root_from_another_recorder(tmp_path: Path) -> None:
    record(tmp_path, ["front"], range(2))
    assert _cli(tmp_path, "process", str(tmp_path), "--no-progress").returncode == 0
    done = _cli(tmp_path, "lerobot", str(tmp_path), "--task", "fold the towel")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    info = json.loads((tmp_path / "meta" / "info.json").read_text())
    assert (info["total_episodes"], info["fps"]) == (2, 30)
    assert pq.read_table(tmp_path / "meta" / "tasks.parquet")["__index_level_0__"].to_pylist() == ["fold the towel"]


def test_a_retake_asked_for_in_a_lerobot_root_replaces_robovids_columns_not_lerobots(tmp_path: Path) -> None:
    from robovid.metadata import read_segments
    from robovid.synthetic import write_episode

    session = Session(tmp_path)
    session.record(0, 12)
    session.save(12)
    session.finalize()
    daemon = start_daemon(tmp_path, **LEROBOT)
    try:
        wait_for(lambda: bool(daemon.events_named("lerobot_metadata_complete")), "columns written", daemon=daemon)
        before = pq.read_table(tmp_path / EPISODES_FILE)
        folder = tmp_path / "images" / CAMERAS[0] / "episode-000000"
        write_episode(folder, 100, 12, 64, 48, seed=7, marker=None)  # a new take, LeRobot's length
        asked = _cli(tmp_path, "retake", str(tmp_path), "0", "--camera", CAMERAS[0])
        assert asked.returncode == 0, asked.stdout + asked.stderr
        wait_for(lambda: bool(daemon.events_named("episode_retake_committed")), "re-take committed", daemon=daemon)

        def moved() -> bool:
            table = pq.read_table(tmp_path / EPISODES_FILE)
            return (
                table[f"videos/{CAMERAS[0]}/from_timestamp"].to_pylist()
                != before[f"videos/{CAMERAS[0]}/from_timestamp"].to_pylist()
            )

        wait_for(moved, "the episodes file points at the new take", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    table = pq.read_table(tmp_path / EPISODES_FILE)
    current = {r["video_key"]: r for r in read_segments(tmp_path).to_pylist()}
    assert table[f"videos/{CAMERAS[0]}/from_timestamp"].to_pylist() == [current[CAMERAS[0]]["from_timestamp"]]
    assert current[CAMERAS[0]]["take"] == 1
    assert table[f"videos/{CAMERAS[1]}/from_timestamp"].equals(before[f"videos/{CAMERAS[1]}/from_timestamp"])
    for name in (n for n in before.column_names if not n.startswith("videos/")):
        assert table[name].equals(before[name])
