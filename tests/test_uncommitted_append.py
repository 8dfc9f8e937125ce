"""A failure between the append and the commit never stops a camera for good.

Before, the episode's frames stayed in the chunk with no row, every later episode of that camera
failed on the same commit, and every restart exited 1 (systemd restarted the service forever and
every camera stopped). Now a row that can never be stored is found before the chunk is touched,
and a commit that fails for any other reason but a full disk takes the append back: the episode
fails alone with a clear event and keeps its PNGs, everything else goes on, a restart starts.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from daemon_harness import Daemon, rows_by_key, run_cli, run_daemon, start_daemon, wait_for
from frame_oracle import Ledger, check_frames, poll_until

from robovid.append import count_frames
from robovid.layout import chunk_path, episode_dir, segments_dir


def test_an_episode_whose_row_cannot_be_committed_fails_before_its_append_and_its_camera_goes_on(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    huge = 2**63  # one past what the int64 episode_index column holds
    ledger.write_episode("cam", huge, folder=tmp_path / "images" / "cam" / f"episode-{huge:06d}", burnt_episode=9)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode 0 committed", daemon=daemon)
        failed = poll_until(lambda: bool(daemon.events_named("episode_failed")), 60, daemon)
        ledger.write_episode("cam", 1)
        wait_for(lambda: ("cam", 1) in rows_by_key(tmp_path), "episode 1 committed after it", timeout=60, daemon=daemon)
    finally:
        code = daemon.stop()
    assert code == 0
    check_frames(tmp_path, ledger, final=True)
    assert failed
    (event,) = [e for e in daemon.events_named("episode_failed") if e.get("episode") == huge]
    assert event["error_type"] == "RowNotStorableError" and str(2**63 - 1) in event["reason"]
    restarted = start_daemon(tmp_path)
    try:
        wait_for(lambda: bool(restarted.events_named("started")), "a restart starts", daemon=restarted)
    finally:
        assert restarted.stop() == 0


def _hide_segments(root: Path) -> Path:
    """Replace the segment table's folder by a file: every commit fails with NotADirectoryError."""
    aside = root.parent / "segments-aside"
    shutil.move(segments_dir(root), aside)
    segments_dir(root).write_bytes(b"not a folder")
    return aside


def _restore_segments(root: Path, aside: Path) -> None:
    segments_dir(root).unlink()
    shutil.move(aside, segments_dir(root))


def test_a_restart_whose_recovery_cannot_commit_takes_the_append_back_and_starts(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ledger = Ledger(root)
    ledger.write_episode("cam", 0)
    ledger.write_episode("cam", 1)
    killed = run_daemon(root, ROBOVID_FAULT_POINT="stage:after-append:2", ROBOVID_WORKERS="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    chunk = chunk_path(root, "cam", 0, 0)
    assert count_frames(chunk) == 16 and set(rows_by_key(root)) == {("cam", 0)}
    aside = _hide_segments(root)
    daemon = start_daemon(root)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "the service starts", daemon=daemon)
        wait_for(lambda: bool(daemon.events_named("append_undone")), "the append taken back", daemon=daemon)
    finally:
        assert daemon.stop() == 0, daemon.stderr[-20:]
    assert count_frames(chunk) == 8, "the uncommitted append is still in the chunk"
    event = daemon.events_named("append_undone")[0]  # recovery's; the retry of episode 1 fails the same way
    assert event["episode"] == 1 and "NotADirectoryError" in event["detail"]
    _restore_segments(root, aside)
    # The stopped service may have retried episode 1 (failing the same way, recorded against its folder):
    # as for any failed episode, a change to its folder retries it.
    (episode_dir(root, "cam", 1) / ".complete").touch()
    daemon = start_daemon(root)
    try:
        wait_for(lambda: ("cam", 1) in rows_by_key(root), "episode 1 encoded again from its PNGs", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_frames(root, ledger, final=True)


def _commit_failing_for_episode_1(root: Path) -> tuple[Daemon, Ledger, Path]:
    """A 1-worker service on ``root`` that committed episode 0, then failed episode 1's commit (segments hidden).

    Returns the running service, the ledger and where the segment table was put aside."""
    root.mkdir()
    ledger = Ledger(root)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(root, ROBOVID_WORKERS="1")
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(root), "episode 0 committed", daemon=daemon)
        aside = _hide_segments(root)
        ledger.write_episode("cam", 1)
        wait_for(lambda: bool(daemon.events_named("episode_failed")), "episode 1 failed", daemon=daemon)
    except BaseException:
        daemon.stop()
        raise
    return daemon, ledger, aside


def test_a_commit_failing_while_running_takes_the_append_back_and_the_camera_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "root"
    daemon, ledger, aside = _commit_failing_for_episode_1(root)
    try:
        assert daemon.events_named("append_undone"), "the append was not taken back"
        assert count_frames(chunk_path(root, "cam", 0, 0)) == 8
        _restore_segments(root, aside)
        ledger.write_episode("cam", 2)
        wait_for(lambda: ("cam", 2) in rows_by_key(root), "a later episode committed", daemon=daemon)
        (episode_dir(root, "cam", 1) / ".complete").touch()  # any change to the folder retries it
        wait_for(lambda: ("cam", 1) in rows_by_key(root), "episode 1 committed when retried", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_frames(root, ledger, final=True)


def test_a_commit_failure_blames_the_disk_or_the_metadata_not_the_frames_and_a_restart_retries_it(
    tmp_path: Path,
) -> None:
    """The event, the failure record and `robovid status` say the row could not be committed and what to do
    (disk, `robovid verify --repair`, restart), never to fix the frames; the PNGs are kept and a restart retries it."""
    root = tmp_path / "root"
    daemon, ledger, aside = _commit_failing_for_episode_1(root)
    assert daemon.stop() == 0
    (event,) = daemon.events_named("episode_failed")
    assert event["episode"] == 1 and event["error_type"] == "CommitFailedError", event
    assert "NotADirectoryError" in event["reason"] and "frames are not at fault" in event["reason"], event
    assert "the append was taken back" in event["reason"] and daemon.events_named("append_undone"), event
    assert "fix or replace the frames" not in event["action"], event
    assert "robovid verify --repair" in event["action"] and "restart" in event["action"], event
    assert event.get("exc_info") is None and "unexpected" not in event["reason"], event
    status = run_cli("status", str(root), root=root)
    assert status.returncode == 0, status.stderr
    (line,) = [line for line in status.stdout.splitlines() if "episode 1:" in line]
    assert "could not be committed" in line and f"robovid verify --repair {root}" in line, status.stdout
    _restore_segments(root, aside)
    check_frames(root, ledger)  # episode 1's PNGs intact, episode 0 in its segment
    daemon = start_daemon(root)  # the folder untouched: the restart alone retries it, as the action says
    try:
        wait_for(lambda: ("cam", 1) in rows_by_key(root), "episode 1 committed after a restart", daemon=daemon)
        wait_for(lambda: not list(episode_dir(root, "cam", 1).glob("*.png")), "episode 1 cleaned", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_frames(root, ledger, final=True)
