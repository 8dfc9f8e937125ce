"""robovid-watch's metrics file: each metric moves when its cause happens, with the real service.

The root is a small tmpfs mounted by the test, so free space is the root's alone and moves
only when the test (or the service) writes there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from daemon_harness import record, start_daemon, wait_for
from prom import metric, read_metrics
from tmpfs import small_tmpfs

from robovid.layout import episode_dir
from robovid.metadata import read_segments
from robovid.synthetic import write_episode

CAMERAS = ["front", "wrist"]
MiB = 1024 * 1024


def _values(prom: Path) -> dict[str, float]:
    return read_metrics(prom) if prom.exists() else {}


def _waits_for(prom: Path, name: str, check, what: str, daemon, **labels: str) -> None:  # type: ignore[no-untyped-def]
    wait_for(lambda: (v := metric(_values(prom), name, **labels)) is not None and check(v), what, daemon=daemon)


def test_each_service_metric_moves_when_its_cause_happens(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    prom = metrics_dir / "robovid_watch.prom"
    with small_tmpfs(tmp_path / "root", "64m") as root:
        episodes = record(root, CAMERAS, range(3))
        png_bytes = sum(p.stat().st_size for p in (root / "images").rglob("*.png"))

        # Too little space: nothing starts, the backlog shows, the pause shows, free space follows a new file.
        paused = start_daemon(root, ROBOVID_METRICS_DIR=str(metrics_dir), ROBOVID_MIN_FREE_MB="1000")
        try:
            _waits_for(prom, "robovid_backlog_episodes", lambda v: v == len(episodes), "backlog 6", paused)
            values = _values(prom)
            assert metric(values, "robovid_paused_for_space") == 1
            assert metric(values, "robovid_disk_min_free_bytes") == 1000 * MiB
            assert metric(values, "robovid_episodes_done_total") == 0
            assert metric(values, "robovid_last_success_timestamp_seconds") is None
            free_before = metric(values, "robovid_disk_free_bytes")
            assert free_before == shutil.disk_usage(root).free
            (root / "filler.bin").write_bytes(os.urandom(8 * MiB))
            _waits_for(
                prom, "robovid_disk_free_bytes", lambda v: v <= free_before - 8 * MiB, "free space drops", paused
            )
        finally:
            assert paused.stop() == 0
        (root / "filler.bin").unlink()

        # Room again: every episode is done, the backlog empties, bytes in and out and the last success move.
        started = time.time()
        daemon = start_daemon(root, ROBOVID_METRICS_DIR=str(metrics_dir), ROBOVID_MIN_FREE_MB="0")
        try:
            _waits_for(prom, "robovid_episodes_done_total", lambda v: v == len(episodes), "6 done", daemon)
            _waits_for(prom, "robovid_backlog_episodes", lambda v: v == 0, "backlog 0", daemon)
            rows = read_segments(root).to_pylist()
            values = _values(prom)
            assert metric(values, "robovid_input_bytes_total") == png_bytes == sum(r["source_bytes"] for r in rows)
            assert metric(values, "robovid_output_bytes_total") == sum(r["video_bytes"] for r in rows)
            assert metric(values, "robovid_last_success_timestamp_seconds") >= started
            assert metric(values, "robovid_realtime_factor") > 0
            assert metric(values, "robovid_paused_for_space") == 0
            assert metric(values, "robovid_episodes_failed") == 0

            # A corrupt frame: the failure counters move, and the episode waits for a person.
            bad = episode_dir(root, "front", 9)
            write_episode(bad, 9, 8, 64, 48, seed=0)
            (bad / "frame-000003.png").write_bytes(b"not a png")
            _waits_for(prom, "robovid_episodes_failed_total", lambda v: v == 1, "1 failure", daemon)
            _waits_for(prom, "robovid_episodes_failed", lambda v: v == 1, "1 failed episode waiting", daemon)
        finally:
            assert daemon.stop() == 0

        # A restarted service knows its last success from the metadata.
        prom.unlink()
        again = start_daemon(root, ROBOVID_METRICS_DIR=str(metrics_dir), ROBOVID_MIN_FREE_MB="0")
        try:
            newest = max(r["committed_at"] for r in read_segments(root).to_pylist()).timestamp()
            _waits_for(
                prom,
                "robovid_last_success_timestamp_seconds",
                lambda v: abs(v - newest) < 1.0,
                "the last success from the metadata",
                again,
            )
            assert metric(_values(prom), "robovid_episodes_done_total") == 0
        finally:
            assert again.stop() == 0
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is missing (apt-get install prometheus; make setup does): the file's format is not checked"
        if os.environ.get("ROBOVID_REQUIRE_SYSTEM_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([promtool, "check", "metrics"], input=prom.read_text(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
