"""The real robovid-watch, as a subprocess on a temp root, fed the way a recorder feeds it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import (
    Daemon,
    Episode,
    PointHooks,
    check_invariants,
    chunk_files,
    png_digest,
    record,
    rows_by_key,
    run_daemon,
    start_daemon,
    wait_for,
)
from videocheck import require_torchcodec

from robovid.decode import decode_episode_frames
from robovid.encoders import SOFTWARE_VCODECS
from robovid.frames import read_frame_rgb
from robovid.layout import episode_dir
from robovid.metadata import read_lerobot_episodes
from robovid.probe import get_video_info
from robovid.settings import DEFAULT_SVTAV1_PRESET, EncoderSettings
from robovid.synthetic import read_index, write_episode
from robovid.verify import psnr_db
from robovid_watch.config import CODEC_DEFAULTS, load_settings
from robovid_watch.finished import sealed_files

CAMERAS = ["front", "wrist cam 'left'"]


def test_daemon_turns_recorded_episodes_into_chunks_and_deletes_the_pngs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    early = record(root, CAMERAS, range(0, 2))
    sources = {
        (e.camera, e.index): [read_frame_rgb(p) for p in sorted(episode_dir(root, e.camera, e.index).glob("*.png"))]
        for e in early
    }
    daemon = start_daemon(root)
    try:
        late = record(root, CAMERAS, range(2, 4))  # written while the service watches
        episodes = early + late
        originals = {e: png_digest(root, e) or "" for e in episodes}
        wait_for(lambda: len(rows_by_key(root)) == len(episodes), "a row per episode", daemon=daemon)
        wait_for(lambda: all(png_digest(root, e) is None for e in episodes), "PNGs deleted", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_invariants(root, episodes, originals, final=True)
    assert sorted(p.relative_to(root).as_posix() for p in chunk_files(root)) == [
        "videos/front/chunk-000/file-000.mp4",
        "videos/wrist cam 'left'/chunk-000/file-000.mp4",
    ]
    assert list((root / "images").iterdir()) == [], "empty camera folders are removed"
    done = daemon.events_named("episode_done")
    assert len(done) == len(episodes)
    assert all(e["frames"] == 8 and e["video_bytes"] > 0 and e["compression_ratio"] > 1 for e in done)
    for (camera, index), frames in sources.items():
        decoded = decode_episode_frames(root, camera, index, [0.0, 7 / 30], 1e-4, backend="pyav")
        for source, got, frame in zip(frames[::7], decoded, (0, 7), strict=True):
            rgb = (np.asarray(got).transpose(1, 2, 0) * 255).round().astype(np.uint8)
            assert read_index(rgb) == (index, frame)
            assert psnr_db(rgb, source) > 25
    wide = read_lerobot_episodes(root)
    assert "videos/front/from_timestamp" in wide.column_names
    assert wide.num_rows == 4


def test_rows_carry_probe_info_encoder_settings_and_timings(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    record(root, ["cam"], range(2))
    daemon = start_daemon(root, ROBOVID_CRF="35", ROBOVID_G="4")
    try:
        wait_for(lambda: len(rows_by_key(root)) == 2, "two rows", daemon=daemon)
    finally:
        daemon.stop()
    row = rows_by_key(root)[("cam", 1)][0]
    assert row["from_timestamp"] == pytest.approx(row["first_frame"] / 30)  # two workers: either order
    assert row["to_timestamp"] - row["from_timestamp"] == pytest.approx(8 / 30)
    assert (row["video.codec"], row["video.width"], row["video.height"], row["video.fps"]) == ("h264", 64, 48, 30)
    assert (row["video.crf"], row["video.g"], row["video.channels"]) == (35, 4, 3)
    assert row["video.preset"] == CODEC_DEFAULTS["h264"][1] == "veryfast"
    assert row["encode_s"] > 0 and row["verify_s"] > 0 and row["append_s"] > 0
    assert row["source_bytes"] > row["video_bytes"] > 0


def test_a_codec_change_starts_a_new_chunk_file_and_every_episode_still_decodes(tmp_path: Path) -> None:
    """A service restarted with another codec never appends it to the old codec's chunk file."""
    root = tmp_path / "root"
    root.mkdir()
    episodes = record(root, ["cam"], range(0, 2))
    runs = [("libsvtav1", "av1"), ("h264", "h264"), ("libsvtav1", "av1")]
    for run, (vcodec, _) in enumerate(runs):
        if run:
            episodes += record(root, ["cam"], range(2 * run, 2 * run + 2))
        daemon = _run_until_done(root, episodes, ROBOVID_VCODEC=vcodec)
        finished = daemon.events_named("chunk_file_finished")
        assert [e["level"] for e in finished] == (["info"] if run else [])
        assert not daemon.events_named("chunk_skipped")
    check_invariants(root, episodes, {}, final=True)
    files = sorted(chunk_files(root))
    assert [p.name for p in files] == ["file-000.mp4", "file-001.mp4", "file-002.mp4"]
    assert [get_video_info(p)["video.codec"] for p in files] == [codec for _, codec in runs]
    sealed = {(f.file_index, f.reason) for f in sealed_files(root)}
    assert {(0, "settings changed"), (1, "settings changed")} <= sealed, sealed
    rows = rows_by_key(root)
    for e in episodes:
        (row,) = rows[("cam", e.index)]
        assert (row["file_index"], row["video.codec"]) == (e.index // 2, runs[e.index // 2][1])
        for backend in ("pyav", "torchcodec"):
            if backend == "torchcodec":
                require_torchcodec()
            decoded = decode_episode_frames(root, "cam", e.index, [0.0, 7 / 30], 1e-4, backend=backend)
            indices = [read_index((np.asarray(f).transpose(1, 2, 0) * 255).round().astype(np.uint8)) for f in decoded]
            assert indices == [(e.index, 0), (e.index, 7)], (backend, row["video.codec"])


def _run_until_done(root: Path, episodes: list[Episode], **env: str) -> Daemon:
    """Start the service, wait until every episode has its row and no PNG left, stop it."""
    daemon = start_daemon(root, **env)
    try:
        wait_for(lambda: len(rows_by_key(root)) == len(episodes), "a row per episode", daemon=daemon)
        wait_for(lambda: all(png_digest(root, e) is None for e in episodes), "PNGs deleted", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    return daemon


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ROBOVID_CRF", "99", "less than or equal to 63"),
        ("ROBOVID_VCODEC", "vp9", "'libsvtav1', 'h264' or 'hevc'"),
        ("ROBOVID_WORKERS", "many", "valid integer"),
        ("ROBOVID_PRESET", "turbo", "Supported values are ultrafast"),
        ("ROBOVID_COMPLETE_MARKER", "a/b", "plain file name"),
    ],
)
def test_bad_environment_value_stops_the_daemon_with_exit_78_naming_it(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = run_daemon(tmp_path, **{variable: value})
    assert result.returncode == 78
    assert variable in result.stderr and expected in result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing was touched"


def test_the_service_encodes_with_its_faithful_default_and_each_codec_at_its_own_crf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h264 veryfast crf 22 by default (benchmarks/README.md); an operator who picks another codec gets the crf at
    which it matches the reference's quality and robovid's preset for it, not h264's numbers."""
    assert set(CODEC_DEFAULTS) == set(SOFTWARE_VCODECS)
    monkeypatch.setenv("ROBOVID_CRF", "")  # what the example environment file shows, uncommented
    monkeypatch.setenv("ROBOVID_PRESET", "")
    assert load_settings(root=tmp_path).encoder_settings() == EncoderSettings(
        vcodec="h264", crf=22, preset="veryfast", threads=1
    )
    av1 = load_settings(root=tmp_path, vcodec="libsvtav1").encoder_settings()
    assert (av1.crf, av1.effective_preset) == (30, DEFAULT_SVTAV1_PRESET)
    hevc = load_settings(root=tmp_path, vcodec="hevc").encoder_settings()
    assert (hevc.crf, hevc.preset) == (23, None)
    chosen = load_settings(root=tmp_path, vcodec="libsvtav1", crf=40, preset="8").encoder_settings()
    assert (chosen.crf, chosen.preset) == (40, 8)
    assert load_settings(root=tmp_path, preset="medium").encoder_settings().preset == "medium"


def test_missing_root_exits_78(tmp_path: Path) -> None:
    result = run_daemon(tmp_path / "absent")
    assert result.returncode == 78 and "ROBOVID_ROOT" in result.stderr


def test_second_instance_on_the_same_root_refuses_to_start(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "first daemon started", daemon=daemon)
        second = run_daemon(tmp_path)
        assert second.returncode == 75
        assert "Another robovid process" in second.stdout + second.stderr
        record(tmp_path, ["cam"], range(1))
        wait_for(lambda: len(rows_by_key(tmp_path)) == 1, "first daemon still works", daemon=daemon)
    finally:
        assert daemon.stop() == 0


def test_corrupt_frame_fails_its_episode_keeps_its_pngs_and_the_rest_go_on(tmp_path: Path, points: PointHooks) -> None:
    episodes = record(tmp_path, ["cam"], range(3))
    bad = episode_dir(tmp_path, "cam", 1) / "frame-000004.png"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    kept = png_digest(tmp_path, episodes[1])
    daemon = start_daemon(tmp_path, **points.env)
    try:
        wait_for(lambda: set(rows_by_key(tmp_path)) == {("cam", 0), ("cam", 2)}, "good episodes done", daemon=daemon)
        wait_for(lambda: bool(daemon.events_named("episode_failed")), "episode_failed event", daemon=daemon)
        failed = daemon.events_named("episode_failed")[0]
        assert failed["episode"] == 1 and failed["error_type"] == "CorruptFrameError"
        assert "frame-000004.png" in failed["reason"] and "PNGs were kept" in failed["action"]
        assert png_digest(tmp_path, episodes[1]) == kept
        # Two rescans, each followed by a scheduling pass: a failed episode is not retried while its folder is unchanged.
        points.wait_passes("service:rescan", points.passes("service:rescan") + 3, daemon)
        assert len(daemon.events_named("episode_failed")) == 1
        (episode_dir(tmp_path, "cam", 1) / ".complete").unlink()  # the operator re-records the episode
        write_episode(episode_dir(tmp_path, "cam", 1), 1, 8, 64, 48)
        wait_for(lambda: ("cam", 1) in rows_by_key(tmp_path), "fixed episode retried and done", daemon=daemon)
    finally:
        assert daemon.stop() == 0
    check_invariants(tmp_path, episodes, {}, final=True)


def test_gap_in_frame_numbers_fails_the_episode_naming_the_missing_frame(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["cam"], range(2))
    (episode_dir(tmp_path, "cam", 0) / "frame-000003.png").unlink()
    kept = png_digest(tmp_path, episodes[0])
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: ("cam", 1) in rows_by_key(tmp_path), "other episode done", daemon=daemon)
        wait_for(lambda: bool(daemon.events_named("episode_failed")), "episode_failed event", daemon=daemon)
    finally:
        daemon.stop()
    failed = daemon.events_named("episode_failed")[0]
    assert failed["error_type"] == "FrameSequenceError" and "3" in failed["reason"]
    assert png_digest(tmp_path, episodes[0]) == kept and ("cam", 0) not in rows_by_key(tmp_path)


def test_incomplete_episode_is_left_alone_until_its_marker_appears(tmp_path: Path, points: PointHooks) -> None:
    write_episode(episode_dir(tmp_path, "cam", 0), 0, 8, 64, 48, marker=None)
    daemon = start_daemon(tmp_path, **points.env)
    try:
        wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
        points.wait_passes("service:rescan", 3, daemon)  # the scan at start, then a rescan and the pass after it
        assert rows_by_key(tmp_path) == {} and len(list(episode_dir(tmp_path, "cam", 0).glob("*.png"))) == 8
        (episode_dir(tmp_path, "cam", 0) / ".complete").touch()
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "episode done after its marker", daemon=daemon)
    finally:
        daemon.stop()


def test_settle_time_completes_folders_without_a_marker(tmp_path: Path) -> None:
    write_episode(episode_dir(tmp_path, "cam", 0), 0, 8, 64, 48, marker=None)
    daemon = start_daemon(tmp_path, ROBOVID_SETTLE_S="1")
    try:
        wait_for(lambda: ("cam", 0) in rows_by_key(tmp_path), "settled episode done", daemon=daemon)
    finally:
        daemon.stop()


def test_sigterm_stops_the_daemon_cleanly(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(1))
    daemon = start_daemon(tmp_path)
    wait_for(lambda: bool(daemon.events_named("started")), "started", daemon=daemon)
    started = time.monotonic()
    assert daemon.stop(timeout=60) == 0
    assert time.monotonic() - started < 60
    assert daemon.events_named("stopped")


def test_the_service_never_imports_torch(tmp_path: Path) -> None:
    record(tmp_path, ["cam"], range(1))
    code = (
        "import os, sys\n"
        f"os.environ.update(ROBOVID_ROOT={str(tmp_path)!r}, ROBOVID_MIN_FREE_MB='0', ROBOVID_LOG_FORMAT='json')\n"
        "from robovid_watch.config import load_settings\n"
        "from robovid_watch.service import Service\n"
        "service = Service(load_settings(), once=True)\n"
        "service.run()\n"
        "heavy = sorted(m for m in ('torch', 'torchcodec', 'torchvision') if m in sys.modules)\n"
        "print('HEAVY', heavy, service.counters.done)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] 1" in result.stdout, result.stderr[-2000:]
