"""One writer per recording root, and no file anyone can delete decides it.

The lock is an ``flock`` on the root directory itself, held through a descriptor the service keeps
open: deleting ``.robovid/lock`` or all of ``.robovid/`` does not release it. It covers the journal,
the segment table and the chunk files, so the CLI's writing commands (``process``, ``compact``)
take it too. A root replaced under a running service (moved away, a new folder
made at its path) is noticed: the service stops working on the path it no longer holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from daemon_harness import Daemon, rows_by_key, run_cli, start_daemon, wait_for
from frame_oracle import Ledger, check_frames, poll_until

from robovid.layout import segments_dir, state_dir

EXIT_LOCKED = 75


def _started_or_exited(daemon: Daemon) -> bool:
    return daemon.process.poll() is not None or bool(daemon.events_named("started"))


def _remove_lock_file(root: Path) -> None:
    (state_dir(root) / "lock").unlink()


def _remove_state_dir(root: Path) -> None:
    """Everything of robovid's state but the segment table: the lock, the journal, failures, temp files.

    (What ``.robovid/`` held before the state moved beside the segment table. Deleting the segment
    table itself is a different case, the metadata lost, which this test is not about.)
    """
    for entry in state_dir(root).iterdir():
        if entry != segments_dir(root):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


@pytest.mark.parametrize("remove", [_remove_lock_file, _remove_state_dir], ids=["lock_file", "state_dir"])
def test_a_second_instance_is_refused_after_the_lock_file_or_state_dir_is_deleted(tmp_path: Path, remove) -> None:
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    first = start_daemon(tmp_path)
    second: Daemon | None = None
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode 0 committed", daemon=first)
        remove(tmp_path)
        second = start_daemon(tmp_path)
        wait_for(lambda: _started_or_exited(second), "the second instance started or exited", daemon=None)
        refused = second.process.poll() is not None or poll_until(lambda: second.process.poll() is not None, 10)
        ledger.write_episode("cam", 1)
        wait_for(lambda: ("cam", 1) in rows_by_key(tmp_path), "the first instance goes on working", daemon=first)
    finally:
        if second is not None:
            second.stop()  # closes its pipes whether or not it ran
        first_code = first.stop()
    assert refused and second.process.returncode == EXIT_LOCKED, f"a second instance ran: {second.process.returncode}"
    assert second.events_named("root_locked")
    assert first_code == 0
    check_frames(tmp_path, ledger)


def test_writing_commands_of_the_cli_are_refused_while_the_service_holds_the_root(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode 0 committed", daemon=daemon)
        _remove_lock_file(tmp_path)
        ledger.write_episode("cam", 1, marker=None)  # not complete: only a writer that ignored the lock would take it
        results = {
            "process": run_cli("process", str(tmp_path), "--no-progress", root=tmp_path),
            "compact": run_cli("compact", str(tmp_path), root=tmp_path),
        }
    finally:
        assert daemon.stop() == 0
    for name, result in results.items():
        assert result.returncode == EXIT_LOCKED, (
            f"{name}: exit {result.returncode}: {result.stdout[-500:]} {result.stderr[-1000:]}"
        )
        assert "robovid-watch" in result.stderr or "Another robovid process" in result.stderr
    check_frames(tmp_path, ledger)


def test_a_root_replaced_under_the_service_is_not_written_by_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ledger = Ledger(root)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(root)
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(root), "episode 0 committed", daemon=daemon)
        root.rename(tmp_path / "old-root")
        root.mkdir()
        ledger.write_episode("cam", 1)  # into the new folder at the same path
        stopped = poll_until(lambda: daemon.process.poll() is not None, 30)
    finally:
        daemon.stop()
    assert stopped, "the service kept running on a root it no longer holds"
    assert daemon.events_named("root_replaced")
    assert not (root / "videos").exists() and not (root / "meta").exists(), "it wrote into the new root"
