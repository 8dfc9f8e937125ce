"""robovid's own state files are untrusted input: a damaged one is quarantined, never a crash loop.

A journal intent or a failure record can be truncated, emptied, turned into something that is
not a JSON object, or carry a field written by another robovid version. Before, each made every
start exit 1 (systemd restarted the service forever, every camera stopped). Now the record is
moved to the state folder's ``quarantine/`` with a ``state_record_quarantined`` event; for an intent, the
append it may describe is taken back (whatever the camera's last chunk file holds past what its
rows claim) and the episode is encoded again from its PNGs; a failed episode is simply retried.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from daemon_harness import Daemon, decoded_indices, rows_by_key, run_daemon, start_daemon, wait_for
from frame_oracle import Ledger, check_frames

from robovid.layout import chunk_path, segments_dir, state_dir


def _entry(directory: str, root: Path) -> Path:
    (path,) = [p for p in (state_dir(root) / directory).glob("*.json")]
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _foreign_field(path: Path) -> None:
    data = json.loads(path.read_bytes())
    data["written_by"] = "robovid 9.0 (a field this version does not know)"
    path.write_text(json.dumps(data))


def _not_an_object(path: Path) -> None:
    path.write_text("[1, 2, 3]")


DAMAGE = {
    "truncated": _truncate,
    "zero_bytes": _empty,
    "foreign_field": _foreign_field,
    "not_an_object": _not_an_object,
}


def _clean_run(root: Path, ledger: Ledger, committed: int) -> Daemon:
    daemon = start_daemon(root)
    try:
        wait_for(lambda: len(rows_by_key(root)) == committed, f"{committed} episodes committed", daemon=daemon)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr[-20:]
    return daemon


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("kill_at", ["stage:after-intent:1", "stage:after-append:1"])
def test_a_damaged_journal_intent_is_quarantined_and_no_start_crashes(
    tmp_path: Path, damage: str, kill_at: str
) -> None:
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    killed = run_daemon(tmp_path, ROBOVID_FAULT_POINT=kill_at, ROBOVID_WORKERS="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    intent = _entry("journal", tmp_path)
    DAMAGE[damage](intent)
    daemon = _clean_run(tmp_path, ledger, committed=1)
    assert daemon.events_named("state_record_quarantined"), "the damaged intent was not reported"
    assert not intent.exists(), "the damaged intent is still where the service reads it"
    ledger.write_episode("cam", 1)
    again = _clean_run(tmp_path, ledger, committed=2)
    assert not [e for e in again.events if e.get("event") in ("crashed", "state_record_quarantined")]
    check_frames(tmp_path, ledger, final=True)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_failure_record_is_quarantined_and_the_episode_retried(tmp_path: Path, damage: str) -> None:
    ledger = Ledger(tmp_path)
    folder = ledger.write_episode("cam", 0)
    frame = folder / "frame-000003.png"
    good = frame.read_bytes()
    frame.write_bytes(b"not a png")
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: bool(daemon.events_named("episode_failed")), "episode 0 failed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    DAMAGE[damage](_entry("failed", tmp_path))
    frame.write_bytes(good)  # fixed: the episode is retried
    daemon = _clean_run(tmp_path, ledger, committed=1)
    assert daemon.events_named("state_record_quarantined")
    check_frames(tmp_path, ledger, final=True)


def test_a_damaged_intent_never_takes_back_frames_its_episode_does_not_hold_as_pngs(tmp_path: Path) -> None:
    """The segment table lost its rows as well: the chunk's whole content looks unclaimed, but only the
    interrupted append's frames are still on disk as PNGs. Nothing else is taken back (it may be the only copy)."""
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    _clean_run(tmp_path, ledger, committed=1)
    ledger.write_episode("cam", 1)
    killed = run_daemon(tmp_path, ROBOVID_FAULT_POINT="stage:after-append:1", ROBOVID_WORKERS="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    chunk = chunk_path(tmp_path, "cam", 0, 0)
    assert [episode for episode, _ in decoded_indices(chunk)] == [0] * 8 + [1] * 8
    _truncate(_entry("journal", tmp_path))
    shutil.rmtree(segments_dir(tmp_path))  # episode 0's row is gone; its PNGs were deleted at its commit
    daemon = _clean_run(tmp_path, ledger, committed=1)  # episode 1, encoded again from its PNGs
    decoded = decoded_indices(chunk)
    assert decoded[:8] == [(0, i) for i in range(8)], "episode 0's only copy was taken back"
    assert daemon.events_named("append_not_undone"), "the unclaimed frames were not reported"
    assert [episode for episode, _ in decoded[16:]] == [1] * 8
