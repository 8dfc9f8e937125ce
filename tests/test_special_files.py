"""Every file the service opens is checked to be a regular file before it could block on it; stop always works.

A FIFO (or a device) where robovid expects a file would block ``open`` or ``read`` forever, and
a blocked main thread cannot act on SIGTERM. Each such path gets a clear event naming it, the
service goes on with everything else, and SIGTERM, SIGINT and SIGHUP stop it with its
``stopped`` event well within the unit's ``TimeoutStopSec``.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import Daemon, rows_by_key, run_cli, start_daemon, wait_for
from frame_oracle import Ledger, check_frames, poll_until

from robovid.layout import chunk_path, segments_dir, state_dir
from robovid_watch.state import camera_id

STOP_WITHIN_S = 15.0
"""Far inside TimeoutStopSec=60 of systemd/robovid-watch.service, on a loaded 2-core machine."""


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _info_json(root: Path) -> Path:
    return _fifo(root / "meta" / "info.json")


def _journal_entry(root: Path) -> Path:
    return _fifo(state_dir(root) / "journal" / "0123456789abcdef--000000.json")


def _failure_record(root: Path) -> Path:
    return _fifo(
        state_dir(root) / "failed" / f"{camera_id('other')}--000000.json"
    )  # read before "other" 0 is scheduled


def _segments_part(root: Path) -> Path:
    return _fifo(segments_dir(root) / "part-000000.parquet")


def _chunk_file(root: Path) -> Path:
    return _fifo(chunk_path(root, "cam", 0, 0))  # the test records a "cam" episode whose append meets it


def _frame(root: Path) -> Path:
    path = root / "images" / "cam" / "episode-000005" / "frame-000003.png"
    for i in range(3):
        Ledger(root).write_frame(path.parent, "cam", 5, i, make_dirs=True)
    (path.parent / ".complete").touch()
    return _fifo(path)


QUARANTINED = {"journal_entry", "failure_record"}
"""robovid's own records: one that is not a regular file is moved to .robovid/quarantine/ (kept as it is)."""
PAUSES = {"meta_info_json"}
"""An unusable meta/info.json (the fps of new episodes) holds every new episode until it is fixed."""

PLACES: dict[str, Callable[[Path], Path]] = {
    "meta_info_json": _info_json,
    "journal_entry": _journal_entry,
    "failure_record": _failure_record,
    "chunk_file": _chunk_file,
    "frame": _frame,
}


def _stop_timed(daemon: Daemon, signum: int = signal.SIGTERM) -> tuple[int | None, float]:
    started = time.monotonic()
    daemon.process.send_signal(signum)
    try:
        code: int | None = daemon.process.wait(timeout=STOP_WITHIN_S)
    except Exception:
        code = None
    elapsed = time.monotonic() - started
    if code is None:
        daemon.kill()
    else:
        daemon.stop()
    return code, elapsed


@pytest.mark.parametrize("place", sorted(PLACES))
def test_a_fifo_where_a_file_is_expected_is_reported_and_never_blocks_the_service(tmp_path: Path, place: str) -> None:
    fifo = PLACES[place](tmp_path)
    ledger = Ledger(tmp_path)
    ledger.write_episode("other", 0)
    if place == "chunk_file":
        ledger.write_episode("cam", 0)  # skips the FIFO and starts the camera's next file
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        said = poll_until(lambda: str(fifo) in " ".join(str(e) for e in list(daemon.events)), 30, daemon)
        served = place in PAUSES or poll_until(lambda: ("other", 0) in rows_by_key(tmp_path), 60, daemon)
    finally:
        code, elapsed = _stop_timed(daemon)
    assert code == 0 and elapsed < STOP_WITHIN_S, f"SIGTERM took {elapsed:.1f} s (exit {code})"
    assert said, f"no event names {fifo}"
    assert served, "the other camera's episode was not processed"
    if place in QUARANTINED:
        fifo = next((state_dir(tmp_path) / "quarantine").glob(f"*--{fifo.name}--*"))
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced or removed"
    check_frames(tmp_path, ledger)


def test_a_fifo_in_the_segment_table_stops_the_service_at_once_like_any_unreadable_part(tmp_path: Path) -> None:
    fifo = _segments_part(tmp_path)
    daemon = start_daemon(tmp_path)
    try:
        exited = poll_until(lambda: daemon.process.poll() is not None, 60)
    finally:
        code, _ = _stop_timed(daemon) if daemon.process.poll() is None else (daemon.stop(), 0.0)
    assert exited and code == 65, f"exit {code}"
    assert str(fifo) in " ".join(str(e) for e in daemon.events_named("metadata_unreadable"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
def test_each_stop_signal_stops_the_service_with_its_stopped_event(tmp_path: Path, signum: int) -> None:
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode 0 committed", daemon=daemon)
    finally:
        code, elapsed = _stop_timed(daemon, signum)
    assert code == 0 and elapsed < STOP_WITHIN_S, f"exit {code} after {elapsed:.1f} s"
    assert daemon.events_named("stopped")
    check_frames(tmp_path, ledger)


def test_robovid_process_never_blocks_on_a_fifo_at_meta_info_json(tmp_path: Path) -> None:
    """``robovid process`` also asks whether the root is LeRobot's (robovid_watch.lerobot reads info.json
    again): before, that open blocked forever on a FIFO and only SIGKILL ended it."""
    fifo = _info_json(tmp_path)
    Ledger(tmp_path).write_episode("cam", 0)
    result = run_cli("process", str(tmp_path), "--no-progress", root=tmp_path, timeout=STOP_WITHIN_S * 4)
    assert str(fifo) in result.stdout + result.stderr, (result.stdout[-2000:], result.stderr[-2000:])
    assert stat.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced or removed"
