"""The `robovid` command line, run as a real subprocess on real recordings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from daemon_harness import daemon_env, record, rows_by_key

from robovid.compact import chunk_space
from robovid.layout import chunk_path


def robovid(*args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = daemon_env(root or Path("."))
    return subprocess.run(
        [sys.executable, "-m", "robovid_watch.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_command() -> None:
    result = robovid("--help")
    assert result.returncode == 0
    for command in ("process", "verify", "status", "info", "compact", "simulate"):
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
    assert info["frames"] == 8 and info["video.codec"] == "h264" and info["video.crf"] == 22


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


def test_compact_frees_the_dead_space_of_finished_files_and_verify_still_passes(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(4))
    assert robovid("process", str(tmp_path), "--no-progress", "--workers", "1", root=tmp_path).returncode == 0
    finished, current = chunk_path(tmp_path, "cam", 0, 0), chunk_path(tmp_path, "cam", 0, 1)
    shutil.copyfile(finished, current)  # stands for a later file, the one the service appends to now
    dead = chunk_space(finished).dead_bytes
    assert dead > 0

    result = robovid("compact", str(tmp_path), root=tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"{dead / 1e6:.2f} MB freed" in result.stdout
    assert chunk_space(finished).dead_bytes == 0
    assert chunk_space(current).dead_bytes == dead, "the last file of a camera is left alone"
    single = robovid("compact", str(current), root=tmp_path)
    assert single.returncode == 0 and chunk_space(current).dead_bytes == 0
    current.unlink()  # the stand-in: no row claims its frames, and verify would rightly say so
    verify = robovid("verify", str(tmp_path), "--json", root=tmp_path)
    assert json.loads(verify.stdout)["problems"] == []


def test_compact_on_a_file_that_is_no_video_exits_1_naming_it(tmp_path: Path) -> None:
    bogus = tmp_path / "file-000.mp4"
    bogus.write_bytes(b"not a video")
    result = robovid("compact", str(bogus))
    assert result.returncode == 1
    assert str(bogus) in result.stderr
