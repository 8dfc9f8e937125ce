"""Settings are checked against what the encoder and the service accept, at start (exit 78 naming the variable).

The limits, measured through PyAV 18.1 (FFmpeg 7, SVT-AV1 4.1, x264, x265), are named in
:data:`robovid.encoders.MAX_FPS` (libsvtav1: 240 fps; robovid's own range is 1 to 1000) and
:data:`robovid.layout.MAX_EPISODE_INDEX` (tests/test_uncommitted_append.py). Before, ``inf`` passed
validation and crashed the service, and ``ROBOVID_FPS=500`` failed every episode with an FFmpeg
``ArgumentError``. ``robovid status`` reports folders it cannot read instead of crashing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from daemon_harness import DROP_FILE_PERMISSION_OVERRIDE, rows_by_key, run_cli, run_daemon, start_daemon, wait_for
from frame_oracle import Ledger, check_frames

EXIT_CONFIG = 78

BAD_SETTINGS = {
    "ROBOVID_VIDEO_FILE_SIZE_MB": ["inf", "nan", "-inf"],
    "ROBOVID_SETTLE_S": ["inf"],
    "ROBOVID_RESCAN_S": ["inf"],
    "ROBOVID_BACKLOG_WARN_S": ["inf"],
    "ROBOVID_FPS": ["500", "241"],  # with libsvtav1 (CODEC below): at most 240
}
CODEC = {"ROBOVID_FPS": {"ROBOVID_VCODEC": "libsvtav1"}}
"""Settings checked against a codec other than the service's default (h264, which takes up to 1000 fps)."""


@pytest.mark.parametrize(
    ("variable", "value"), [(k, v) for k, values in BAD_SETTINGS.items() for v in values], ids=lambda x: str(x)
)
def test_a_value_the_encoder_or_service_cannot_use_stops_it_at_start_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = run_daemon(tmp_path, timeout=60, **{variable: value}, **CODEC.get(variable, {}))
    assert result.returncode == EXIT_CONFIG, (
        f"exit {result.returncode}: {result.stdout[-1000:]} {result.stderr[-1000:]}"
    )
    assert variable in result.stderr and value in result.stderr


def test_the_fps_limit_names_the_codec_and_an_fps_it_accepts_passes(tmp_path: Path) -> None:
    refused = run_daemon(tmp_path, timeout=60, ROBOVID_FPS="500", ROBOVID_VCODEC="libsvtav1")
    assert "libsvtav1" in refused.stderr and "240" in refused.stderr
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(tmp_path, ROBOVID_FPS="500", ROBOVID_VCODEC="h264")
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "an h264 episode at 500 fps committed", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_frames(tmp_path, ledger)


def test_status_reports_a_root_with_an_unreadable_camera_folder_and_dangling_symlinks(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    (tmp_path / "images" / "cam" / "episode-000000" / "frame-000008.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "images" / "cam" / "episode-000001").symlink_to(tmp_path / "gone-folder")
    (tmp_path / "images" / "dangling-camera").symlink_to(tmp_path / "gone-camera")
    locked = tmp_path / "images" / "locked"
    ledger.write_episode("locked", 0)
    locked.chmod(0)
    as_root = os.geteuid() == 0
    if as_root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE: chmod 000 blocks nothing")
    try:
        result = run_cli(
            "status", str(tmp_path), "--json", root=tmp_path, prefix=DROP_FILE_PERMISSION_OVERRIDE if as_root else None
        )
    finally:
        locked.chmod(0o755)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["pending"] >= 1
    assert any("locked" in str(u) for u in report.get("unreadable", [])), report


def test_an_fps_in_info_json_the_codec_cannot_encode_holds_new_episodes_naming_the_limit(tmp_path: Path) -> None:
    """meta/info.json is read while the service runs, so its fps cannot be refused at start: an fps the codec
    cannot encode is an unusable info.json (new episodes wait, nothing fails), not an FFmpeg error per episode."""
    info = tmp_path / "meta" / "info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"fps": 500}))
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(tmp_path, ROBOVID_VCODEC="libsvtav1")
    try:
        wait_for(lambda: bool(daemon.events_named("info_json_invalid")), "info.json refused", daemon=daemon)
        (event,) = daemon.events_named("info_json_invalid")
        assert "240" in event["detail"] and "ROBOVID_VCODEC=libsvtav1" in event["detail"], event
        info.write_text(json.dumps({"fps": 30}))  # the operator fixes it
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode 0 committed at 30 fps", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("episode_failed"), "an episode failed on an fps the codec cannot encode"
    check_frames(tmp_path, ledger, final=True)
