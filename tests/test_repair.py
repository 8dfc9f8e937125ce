"""``robovid verify --repair``: segment rows lost with the segment table come back from the chunk files' records.

The real service commits episodes (burnt-in indices), rows are lost the ways users lose them (the
table deleted, one part deleted, a part damaged and moved aside as the service's exit-65 message
says), and the real CLI rebuilds them. The frame oracle (tests/frame_oracle.py) decides: every frame
in exactly one committed segment, decoded as itself.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from daemon_harness import DEADLINE_S, PointHooks, daemon_env, rows_by_key, run_cli, start_daemon, wait_for
from frame_oracle import Ledger, check_frames
from merge_harness import EXPECTED, ROBOT_A, ROBOT_B, check_merged, make_robot
from videocheck import index_of_chw

from robovid._movie import read_movie
from robovid.decode import decode_video_frames
from robovid.layout import chunk_path, segment_part_path, segments_dir
from robovid.merge import merge_roots
from robovid.metadata import read_segments

CAMERAS = ["cam", "wrist"]
EPISODES = 4
_VOLATILE = {"committed_at", "append_s"}
"""Columns a rebuilt row may differ in: the record keeps the time of the append, not of the commit, and is written
during the append, so the append's duration is not in it (null in a rebuilt row)."""


def _committed_root(root: Path, episodes: int = EPISODES) -> Ledger:
    """The real service has committed ``episodes`` episodes of each camera and cleaned their PNGs."""
    ledger = Ledger(root)
    for episode in range(episodes):
        for camera in CAMERAS:
            ledger.write_episode(camera, episode)
    daemon = start_daemon(root, ROBOVID_WORKERS="1")
    try:
        wait_for(lambda: len(rows_by_key(root)) == episodes * len(CAMERAS), "every episode committed", daemon=daemon)
        wait_for(lambda: not check_frames(root, ledger).as_png, "every PNG cleaned", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_frames(root, ledger, final=True)
    return ledger


def _differences(
    a: dict[tuple[str, int, int], dict[str, Any]], b: dict[tuple[str, int, int], dict[str, Any]]
) -> list[str]:
    out = [f"{k}: only in one" for k in set(a) ^ set(b)]
    for key in set(a) & set(b):
        out += [f"{key} {c}: {a[key][c]!r} != {b[key].get(c)!r}" for c in a[key] if a[key][c] != b[key].get(c)]
    return out


def _rows(root: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {
        (r["video_key"], r["episode_index"], r["take"]): {k: v for k, v in r.items() if k not in _VOLATILE}
        for r in read_segments(root, all_takes=True).to_pylist()
    }


def _check_decodes(root: Path) -> None:
    """Each row's frames, decoded at its timestamps by both backends, are its episode's frames 0..n-1."""
    for row in read_segments(root).to_pylist():
        path = chunk_path(root, row["video_key"], row["chunk_index"], row["file_index"])
        times = [row["from_timestamp"] + i / row["fps"] for i in range(row["num_frames"])]
        for backend in ("pyav", "torchcodec"):
            frames = decode_video_frames(path, times, 1e-4, backend)
            expected = [(row["episode_index"], i) for i in range(row["num_frames"])]
            assert [index_of_chw(f) for f in frames] == expected, (backend, row["video_key"], row["episode_index"])


def _repair(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("verify", "--repair", str(root), *extra, root=root)


def test_rows_of_a_deleted_segment_table_are_rebuilt_exactly_once(tmp_path: Path) -> None:
    ledger = _committed_root(tmp_path)
    before = _rows(tmp_path)
    shutil.rmtree(segments_dir(tmp_path))
    with pytest.raises(AssertionError, match="LOST"):
        check_frames(tmp_path, ledger)
    verify = run_cli("verify", str(tmp_path), root=tmp_path)
    assert verify.returncode == 1 and verify.stdout.count("claimed by no row") == len(CAMERAS), verify.stdout
    repaired = _repair(tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert repaired.stdout.count("REBUILT") == EPISODES * len(CAMERAS), repaired.stdout
    assert "0 problems" in repaired.stdout
    assert _differences(_rows(tmp_path), before) == []
    check_frames(tmp_path, ledger, final=True)
    _check_decodes(tmp_path)
    again = _repair(tmp_path)
    assert again.returncode == 0 and "0 rows rebuilt" in again.stdout, again.stdout + again.stderr
    assert read_segments(tmp_path, all_takes=True).num_rows == EPISODES * len(CAMERAS)


def test_rows_of_one_deleted_part_are_rebuilt_and_the_others_stay(tmp_path: Path) -> None:
    ledger = _committed_root(tmp_path)
    before = _rows(tmp_path)
    table = pq.read_table(segment_part_path(tmp_path, 0))
    pq.write_table(table.slice(0, 3), segment_part_path(tmp_path, 0))  # a table in two parts, as one grows
    pq.write_table(table.slice(3), segment_part_path(tmp_path, 1))
    kept = {(r["video_key"], r["episode_index"]): r["committed_at"] for r in table.slice(0, 3).to_pylist()}
    segment_part_path(tmp_path, 1).unlink()
    repaired = _repair(tmp_path, "--json")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert len(json.loads(repaired.stdout)["repair"]["rebuilt"]) == len(before) - 3
    assert _differences(_rows(tmp_path), before) == []
    now = {(r["video_key"], r["episode_index"]): r["committed_at"] for r in read_segments(tmp_path).to_pylist()}
    assert all(now[key] == at for key, at in kept.items()), "a row that was not lost was rewritten"
    check_frames(tmp_path, ledger, final=True)
    _check_decodes(tmp_path)


@pytest.mark.parametrize("point", ["repair:after-commit", "commit:before-rename"])
def test_a_repair_killed_midway_then_run_again_rebuilds_every_row_once(
    tmp_path: Path, points: PointHooks, point: str
) -> None:
    root = tmp_path / "root"
    ledger = _committed_root(root)
    before = _rows(root)
    shutil.rmtree(segments_dir(root))
    points.hold(point)
    env = daemon_env(root) | points.env
    process = subprocess.Popen(
        [sys.executable, "-m", "robovid_watch.cli", "verify", "--repair", str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: points.passes(point) >= 1 or process.poll() is not None, f"repair held at {point}")
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGKILL)
    finally:
        process.communicate(timeout=DEADLINE_S)
    partial = _rows(root)
    assert len(partial) < len(before) and all(partial[k] == before[k] for k in partial)
    points.release(point)
    repaired = _repair(root)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert _differences(_rows(root), before) == []
    assert read_segments(root, all_takes=True).num_rows == len(before)
    assert [p.name for p in segments_dir(root).iterdir()] == ["part-000000.parquet"], "the killed commit's temp file"
    check_frames(root, ledger, final=True)


def test_the_exit_65_advice_followed_word_for_word_brings_the_service_back(tmp_path: Path) -> None:
    ledger = _committed_root(tmp_path)
    before = _rows(tmp_path)
    segment_part_path(tmp_path, 0).write_bytes(b"PAR1 this is not parquet")
    ledger.write_episode("cam", EPISODES)  # recorded while the table was damaged
    daemon = start_daemon(tmp_path)
    assert daemon.process.wait(timeout=DEADLINE_S) == 65
    daemon.stop()
    [event] = daemon.events_named("metadata_unreadable")
    commands = re.findall(r"`([^`]+)`", event["detail"])
    assert (
        len(commands) == 2 and commands[0].startswith("mv ") and commands[1].startswith("robovid verify --repair ")
    ), commands
    for command in commands:
        argv = shlex.split(command)
        if argv[0] == "robovid":
            argv = [sys.executable, "-m", "robovid_watch.cli", *argv[1:]]
        done = subprocess.run(argv, env=daemon_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert _differences(_rows(tmp_path), before) == []
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: ("cam", EPISODES) in rows_by_key(tmp_path), "the new episode committed", daemon=daemon)
        wait_for(lambda: not check_frames(tmp_path, ledger).as_png, "its PNGs cleaned", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_frames(tmp_path, ledger, final=True)
    _check_decodes(tmp_path)


def test_repair_refuses_to_run_while_the_service_holds_the_root(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        repaired = _repair(tmp_path)
    finally:
        assert daemon.stop() == 0
    assert repaired.returncode == 1
    assert "in use by another robovid process" in repaired.stderr and "systemctl stop robovid-watch" in repaired.stderr


def _patch_records(root: Path, change: Any) -> None:
    """Rewrite each record box of every chunk file in place (same length) with ``change(box bytes)``."""
    for camera in CAMERAS:
        path = chunk_path(root, camera, 0, 0)
        boxes = [b for b in read_movie(path).top if b.type == b"uuid"]
        with open(path, "r+b") as f:
            for box in boxes:
                f.seek(box.offset)
                data = f.read(box.size)
                f.seek(box.offset)
                f.write(change(data))


@pytest.mark.parametrize("damage", ["no records (files from before)", "a record that does not match"])
def test_frames_whose_record_is_missing_or_wrong_are_named_and_left_without_a_row(tmp_path: Path, damage: str) -> None:
    _committed_root(tmp_path, episodes=2)
    shutil.rmtree(segments_dir(tmp_path))
    if damage.startswith("no records"):
        _patch_records(tmp_path, lambda data: data[:4] + b"free" + data[8:])  # padding, as before records existed
    else:
        _patch_records(tmp_path, lambda data: re.sub(rb'"sizes_sha256": "[0-9a-f]', b'"sizes_sha256": "g', data))
    repaired = _repair(tmp_path)
    assert repaired.returncode == 1
    assert read_segments(tmp_path).num_rows == 0
    expected = "carry no identity record" if damage.startswith("no records") else "does not match the samples"
    for camera in CAMERAS:
        path = chunk_path(tmp_path, camera, 0, 0)
        assert f"NOT REBUILT {path}: frames 0.." in repaired.stdout, repaired.stdout
    assert repaired.stdout.count(expected) == len(CAMERAS), repaired.stdout
    assert "restore the segment table from a backup" in repaired.stdout.lower()


def test_rows_of_a_merged_root_are_rebuilt_under_its_own_episode_numbers(tmp_path: Path) -> None:
    robot_a = make_robot(tmp_path / "robot_a", ROBOT_A, "libsvtav1")  # several source files per camera
    robot_b = make_robot(tmp_path / "robot_b", ROBOT_B, "h264")
    dest = tmp_path / "dest"
    merge_roots(dest, [robot_a, robot_b])
    before = _rows(dest)
    shutil.rmtree(segments_dir(dest))
    repaired = _repair(dest)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert _differences(_rows(dest), before) == []
    check_merged(dest, EXPECTED)


def test_verify_names_a_chunk_file_replaced_by_another_with_as_many_frames(tmp_path: Path) -> None:
    _committed_root(tmp_path, episodes=2)
    cam, wrist = (chunk_path(tmp_path, camera, 0, 0) for camera in CAMERAS)
    assert run_cli("verify", str(tmp_path), root=tmp_path).returncode == 0
    swap = cam.with_name("swap.mp4")
    cam.rename(swap)
    wrist.rename(cam)
    swap.rename(wrist)  # each camera's rows now point at the other camera's frames: they decode fine
    verify = run_cli("verify", str(tmp_path), root=tmp_path)
    assert verify.returncode == 1
    assert verify.stdout.count("the file's own record at frame") == 2 * len(CAMERAS), verify.stdout
    assert f"{cam}: the file's own record at frame 0 says camera 'wrist' episode 0" in verify.stdout
