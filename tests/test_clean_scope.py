"""The service deletes only what it encoded and verified, judged by each frame's identity, never by clocks.

The journal intent records every encoded frame's identity (name, size, inode, mtime and
ctime); cleaning deletes a file only while it still has that identity. A re-take written into
a committed episode's folder (while the service was down, with a clock that ran behind) is
therefore kept; sidecar files a recorder leaves beside the frames (``timestamps.json``,
``.DS_Store``, a ``depth/`` folder) are left alone, and the folder goes only when nothing else
is in it, without the episode being reported again and again.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from daemon_harness import rows_by_key, run_cli, run_daemon, start_daemon, wait_for
from frame_oracle import Ledger, check_frames, poll_until

from robovid.layout import episode_dir


def test_a_retake_recorded_between_commit_and_clean_with_a_clock_behind_is_never_deleted(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    folder = ledger.write_episode("cam", 0, 8)
    killed = run_daemon(tmp_path, ROBOVID_FAULT_POINT="stage:after-commit:1", ROBOVID_WORKERS="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert ("cam", 0) in rows_by_key(tmp_path)
    an_hour_ago_ns = time.time_ns() - 3600 * 10**9  # the robot booted with its clock behind, before NTP
    for i in range(8):  # the re-take overwrites the frames in place, as most recorders do
        assert ledger.write_frame(folder, "cam", 100, i, mtime_ns=an_hour_ago_ns)
    (folder / ".complete").touch()
    daemon = start_daemon(tmp_path)
    try:
        told = poll_until(
            lambda: bool(daemon.events_named("episode_failed") or daemon.events_named("clean_unfinished")), 30, daemon
        )
    finally:
        assert daemon.stop() == 0
    verdict = check_frames(tmp_path, ledger)
    assert {(k.episode, k.frame) for k in verdict.as_png} == {(100, i) for i in range(8)}, "the re-take was deleted"
    assert told, "the kept re-take was not reported"


def test_sidecar_files_are_left_alone_and_the_episode_is_not_reported_again(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    folder = ledger.write_episode("cam", 0, 8, marker=None)
    sidecars = {
        folder / "timestamps.json": json.dumps([i / 30 for i in range(8)]).encode(),
        folder / ".DS_Store": b"\x00\x00\x00\x01Bud1",
        folder / "depth" / "frame-000000.png": ledger.png_bytes(7, 0),
    }
    for path, data in sidecars.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    (folder / ".complete").touch()
    ledger.write_episode("cam", 1, 8)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 2, "both episodes committed", daemon=daemon)
        wait_for(lambda: not episode_dir(tmp_path, "cam", 1).exists(), "episode 1 cleaned", daemon=daemon)
        ledger.write_episode("cam", 2, 8)  # committed after rescans that saw episode 0's sidecars
        wait_for(lambda: ("cam", 2) in rows_by_key(tmp_path), "a later episode committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert {p: p.read_bytes() for p in sidecars} == sidecars, "a sidecar file was changed or deleted"
    assert not list(folder.glob("frame-*.png")), "the encoded frames were not deleted"
    assert not daemon.events_named("episode_failed"), daemon.events_named("episode_failed")
    restarted = start_daemon(tmp_path)
    ledger.write_episode("cam", 3, 8)
    try:
        wait_for(lambda: ("cam", 3) in rows_by_key(tmp_path), "a later episode committed", daemon=restarted)
    finally:
        assert restarted.stop() == 0
    errors = [e for e in restarted.events if e.get("level") == "error"]
    assert not errors, f"a restart reported the sidecars again: {errors}"
    status = json.loads(run_cli("status", str(tmp_path), "--json", root=tmp_path).stdout)
    assert status["failed"] == [] and status["pending"] == 0
    check_frames(tmp_path, ledger, final=True)


def test_a_marker_whose_name_ends_in_png_is_not_taken_for_a_frame(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0, 8, marker="DONE.png")
    daemon = start_daemon(tmp_path, ROBOVID_COMPLETE_MARKER="DONE.png")
    try:
        wait_for(
            lambda: ("cam", 0) in rows_by_key(tmp_path) or bool(daemon.events_named("episode_failed")),
            "the episode committed or failed",
            daemon=daemon,
        )
        wait_for(lambda: not episode_dir(tmp_path, "cam", 0).exists(), "the folder cleaned", timeout=30, daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("episode_failed"), daemon.events_named("episode_failed")[0].get("reason")
    check_frames(tmp_path, ledger, final=True)


def test_a_marker_name_that_is_a_frame_name_is_refused_at_start(tmp_path: Path) -> None:
    result = run_daemon(tmp_path, ROBOVID_COMPLETE_MARKER="frame-999999.png")
    assert result.returncode == 78, result.stderr[-2000:]
    assert "ROBOVID_COMPLETE_MARKER" in result.stderr
