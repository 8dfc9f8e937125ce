"""The `robovid` command line, run as a real subprocess on real recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon_harness import daemon_env, record, rows_by_key

from robovid.layout import chunk_path


def robovid(*args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = daemon_env(root or Path("."))
    return subprocess.run(
        [sys.executable, "-m", "robovid.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_command() -> None:
    result = robovid("--help")
    assert result.returncode == 0
    for command in ("process", "verify", "status", "info", "simulate"):
        assert command in result.stdout


def test_process_drains_the_backlog_once_and_verify_passes(tmp_path: Path) -> None:
    record(tmp_path, ["front", "wrist"], range(3))
    result = robovid("process", str(tmp_path), "--no-progress", root=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done 6, failed 0" in result.stdout
    assert len(rows_by_key(tmp_path)) == 6
    verify = robovid("verify", str(tmp_path), "--json", root=tmp_path)
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout) == {"checked": 6, "problems": []}


def test_verify_reports_a_damaged_chunk_and_exits_1(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(2))
    assert robovid("process", str(tmp_path), "--no-progress", root=tmp_path).returncode == 0
    path = chunk_path(tmp_path, "cam", 0, 0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    verify = robovid("verify", str(tmp_path), root=tmp_path)
    assert verify.returncode == 1
    assert "PROBLEM 'cam' episode 0" in verify.stdout and "2 problems" in verify.stdout


def test_status_shows_pending_failed_and_done(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(2))
    bad = tmp_path / "images" / "cam" / "episode-000001" / "frame-000002.png"
    bad.write_bytes(b"not a png")
    robovid("process", str(tmp_path), "--no-progress", root=tmp_path)
    status = robovid("status", str(tmp_path), "--json", root=tmp_path)
    report = json.loads(status.stdout)
    assert report["done"] == 1 and report["pending"] == 1
    assert [f["episode"] for f in report["failed"]] == [1]
    assert "frame-000002.png" in report["failed"][0]["reason"]
    assert report["recorded_s_last_hour"] > 0
    text = robovid("status", str(tmp_path), root=tmp_path).stdout
    assert "failed: 1" in text and "done: 1" in text


def test_info_prints_the_probe_as_json(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(1))
    robovid("process", str(tmp_path), "--no-progress", root=tmp_path)
    info = json.loads(robovid("info", str(chunk_path(tmp_path, "cam", 0, 0))).stdout)
    assert info["frames"] == 8 and info["video.codec"] == "av1" and info["video.crf"] == 30


def test_info_on_a_missing_file_exits_1_with_a_message(tmp_path: Path) -> None:
    result = robovid("info", str(tmp_path / "nope.mp4"))
    assert result.returncode == 1 and "no such file" in result.stderr


def test_simulate_writes_complete_episodes(tmp_path: Path) -> None:
    result = robovid(
        "simulate", str(tmp_path), "--cameras", "a,b", "--episodes", "2", "--frames", "3", "--size", "64x48", "--fast"
    )
    assert result.returncode == 0, result.stderr
    for camera in ("a", "b"):
        for episode in (0, 1):
            folder = tmp_path / "images" / camera / f"episode-{episode:06d}"
            assert (folder / ".complete").exists() and len(list(folder.glob("*.png"))) == 3
