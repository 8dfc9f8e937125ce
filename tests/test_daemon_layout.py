"""Where the service writes: chunk rollover by size and count, continuing after a restart, systemd's notify protocol."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from daemon_harness import DEADLINE_S, PointHooks, chunk_files, record, rows_by_key, start_daemon, wait_for


def _chunk_names(root: Path) -> list[str]:
    return [p.relative_to(root / "videos" / "cam").as_posix() for p in chunk_files(root)]


def test_a_new_file_starts_at_the_size_limit_and_a_new_chunk_folder_every_chunk_size_files(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(5))
    daemon = start_daemon(tmp_path, ROBOVID_VIDEO_FILE_SIZE_MB="0.0001", ROBOVID_CHUNK_SIZE="2", ROBOVID_WORKERS="1")
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 5, "five rows", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert _chunk_names(tmp_path) == [
        "chunk-000/file-000.mp4",
        "chunk-000/file-001.mp4",
        "chunk-001/file-000.mp4",
        "chunk-001/file-001.mp4",
        "chunk-002/file-000.mp4",
    ]
    locations = sorted(
        (r[0]["chunk_index"], r[0]["file_index"], r[0]["from_timestamp"]) for r in rows_by_key(tmp_path).values()
    )
    assert locations == [(0, 0, 0.0), (0, 1, 0.0), (1, 0, 0.0), (1, 1, 0.0), (2, 0, 0.0)]


def test_after_a_restart_appending_continues_in_the_current_file(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(1))
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 1, "first episode", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    record(tmp_path, ["cam"], range(1, 2))
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 2, "second episode", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert _chunk_names(tmp_path) == ["chunk-000/file-000.mp4"]
    second = rows_by_key(tmp_path)[("cam", 1)][0]
    assert (second["first_frame"], second["from_timestamp"]) == (8, 8 / 30)


def test_the_service_speaks_systemds_notify_protocol(tmp_path: Path) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(address))
        sock.settimeout(60)
        root = tmp_path / "root"
        root.mkdir()
        daemon = start_daemon(root, NOTIFY_SOCKET=str(address))
        messages = [sock.recv(256).decode()]
        assert messages == ["READY=1"], "READY=1 comes first, after the first scan"
        messages.append(sock.recv(256).decode())
        assert messages[-1] == "WATCHDOG=1"
        assert daemon.stop() == 0
        sock.settimeout(5)
        while messages[-1] != "STOPPING=1":
            messages.append(sock.recv(256).decode())


def test_a_backlog_that_keeps_growing_is_reported(tmp_path: Path, points: PointHooks) -> None:
    points.hold("stage:before-encode")  # the one worker waits there: the backlog can only grow
    daemon = start_daemon(tmp_path, ROBOVID_BACKLOG_WARN_S="1", ROBOVID_WORKERS="1", **points.env)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        recorded, deadline = 0, time.monotonic() + DEADLINE_S
        while recorded < 60 or not daemon.events_named("backlog_growing"):  # recording for over a window
            assert time.monotonic() < deadline and daemon.process.poll() is None, "no backlog_growing warning"
            record(tmp_path, ["cam"], range(recorded, recorded + 1))
            recorded += 1
        points.release("stage:before-encode")
        wait_for(lambda: len(rows_by_key(tmp_path)) == recorded, "the backlog drained", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    warning = daemon.events_named("backlog_growing")[0]
    assert warning["level"] == "warning" and warning["backlog_episodes"] > 1 and "ROBOVID_WORKERS" in warning["action"]
