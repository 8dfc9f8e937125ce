"""Settle mode (no marker: complete after ROBOVID_SETTLE_S without change) never loses a frame.

What settle mode can promise: an episode is encoded once nothing in its folder changed for
``ROBOVID_SETTLE_S`` as the service itself observed it (its own monotonic clock, not the files'
mtimes); its encoded frames are then deleted but the folder is kept, so a recorder that was only
pausing can go on writing into it. What it cannot promise: telling a pause longer than the settle
time from the end of an episode. Frames written after the episode was committed are never
encoded as a silent continuation (that would split the episode across two segments); they stay
as PNG, byte-identical, and an ``episode_continued`` event says what happened and what to do.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from daemon_harness import Daemon, rows_by_key, start_daemon, wait_for
from frame_oracle import Ledger, PausingRecorder, check_frames, poll_until

from robovid.layout import episode_dir

SETTLE = {"ROBOVID_SETTLE_S": "1.5", "ROBOVID_RESCAN_S": "1"}


def _committed(root: Path, camera: str, episode: int) -> bool:
    return (camera, episode) in rows_by_key(root)


def _encoded_frames_gone(root: Path, camera: str, episode: int, first_part: int) -> bool:
    folder = episode_dir(root, camera, episode)
    return not any((folder / f"frame-{i:06d}.png").exists() for i in range(first_part))


def _events(daemon: Daemon, name: str, camera: str, episode: int) -> list[dict]:
    return [e for e in daemon.events_named(name) if e.get("camera") == camera and e.get("episode") == episode]


@pytest.mark.parametrize("habit", ["mkdir_once", "makedirs_every_frame"])
def test_a_recorder_pausing_longer_than_the_settle_time_loses_no_frame_and_is_told(tmp_path: Path, habit: str) -> None:
    ledger = Ledger(tmp_path)
    recorder = PausingRecorder(ledger, "cam", 3, num_frames=10, pause_after=5, pause_s=90, period_s=0.02)
    recorder.make_dirs_each_frame = habit == "makedirs_every_frame"
    daemon = start_daemon(tmp_path, **SETTLE)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        recorder.start()
        assert recorder.paused.wait(30)
        wait_for(lambda: _committed(tmp_path, "cam", 3), "the first part committed after the pause", daemon=daemon)
        wait_for(lambda: _encoded_frames_gone(tmp_path, "cam", 3, 5), "its PNGs deleted", daemon=daemon)
        recorder.go_on.set()
        recorder.join()
        told = poll_until(lambda: bool(_events(daemon, "episode_continued", "cam", 3)), 30, daemon)
    finally:
        assert daemon.stop() == 0
    assert recorder.lost == [], f"the recorder could not write frames {recorder.lost}: the folder was removed"
    assert recorder.folder_vanished == [], "settle mode removed the folder a pausing recorder was still writing into"
    verdict = check_frames(tmp_path, ledger)
    assert {k.frame for k in verdict.in_segment} == set(range(5))
    assert {k.frame for k in verdict.as_png} == set(range(5, 10))
    assert told, "no episode_continued event for the frames written after the commit"
    (event,) = _events(daemon, "episode_continued", "cam", 3)[:1]
    text = f"{event.get('reason', '')} {event.get('action', '')}"
    assert "ROBOVID_SETTLE_S" in text and "frame-000005.png" in text
    assert not [e for e in daemon.events_named("episode_failed") if e.get("error_type") == "DuplicateEpisodeError"]


def test_frames_dated_in_the_future_settle_by_the_services_own_clock_and_are_reported(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    future_ns = time.time_ns() + 24 * 3600 * 10**9
    ledger.write_episode("cam", 0, marker=None, mtime_ns=future_ns)
    daemon = start_daemon(tmp_path, **SETTLE)
    try:
        wait_for(lambda: _committed(tmp_path, "cam", 0), "the episode committed", timeout=45, daemon=daemon)
        told = poll_until(lambda: bool(daemon.events_named("clock_skew")), 10, daemon)
    finally:
        assert daemon.stop() == 0
    check_frames(tmp_path, ledger)
    assert told, "frames dated a day ahead were not reported"
    (event,) = daemon.events_named("clock_skew")[:1]
    assert event.get("camera") == "cam" and event.get("episode") == 0


def test_a_settled_episode_is_encoded_once_and_its_emptied_folder_is_not_reported(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    for episode in range(3):
        ledger.write_episode("cam", episode, marker=None)
    daemon = start_daemon(tmp_path, **SETTLE)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 3, "three episodes committed", daemon=daemon)
        wait_for(
            lambda: all(_encoded_frames_gone(tmp_path, "cam", e, 8) for e in range(3)), "PNGs deleted", daemon=daemon
        )
        ledger.write_episode("cam", 3, marker=None)  # its commit comes after rescans of the emptied folders
        wait_for(lambda: _committed(tmp_path, "cam", 3), "a later episode committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("episode_failed") and not daemon.events_named("episode_continued")
    check_frames(tmp_path, ledger, final=True)
