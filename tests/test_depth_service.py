"""Depth cameras through the real robovid-watch: encoded exactly, verified frame by frame, appended, exported, crash-safe.

A camera whose PNGs are 16-bit greyscale (RealSense-style millimetres, from
:mod:`robovid.synthetic_depth`, with noise, edges and holes) runs the same pipeline as a colour
camera beside it; every decoded depth sample must equal the recorded one.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from daemon_harness import rows_by_key, run_daemon, start_daemon, wait_for
from frame_oracle import Ledger, check_frames

from robovid import decode_episode_frames, decode_video_frames
from robovid.depth import read_depth_frame
from robovid.depth_config import DepthEncoderConfig
from robovid.depth_encode import encode_depth_frames, verify_depth_video
from robovid.depth_fingerprint import depth_fingerprint
from robovid.errors import FrameMismatchError
from robovid.layout import chunk_path, episode_dir
from robovid.synthetic import write_episode
from robovid.synthetic_depth import depth_scene, render_depth, write_depth_episode
from robovid.verify import verify_root

W, H = 64, 48
FRAMES = 8


def _recorded_depth(root: Path, episode: int) -> np.ndarray:
    folder = episode_dir(root, "depth", episode)
    return np.stack([read_depth_frame(folder / f"frame-{i:06d}.png") for i in range(FRAMES)])


def test_a_depth_camera_beside_a_colour_camera_is_kept_exactly_and_exported_as_depth(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text('{"fps": 30}')
    for episode in range(2):
        write_episode(episode_dir(tmp_path, "front", episode), episode, FRAMES, W, H)
        write_depth_episode(episode_dir(tmp_path, "depth", episode), episode, FRAMES, W, H, seed=episode)
    recorded = {episode: _recorded_depth(tmp_path, episode) for episode in range(2)}
    assert all((depth == 0).any() for depth in recorded.values())  # holes are part of what must survive
    daemon = start_daemon(tmp_path, ROBOVID_LEROBOT_EXPORT="1", ROBOVID_LEROBOT_TASK="pick")
    try:
        wait_for(
            lambda: any(e["episodes"] == 2 for e in daemon.events_named("lerobot_exported")),
            "both episodes of both cameras exported",
            daemon=daemon,
        )
    finally:
        assert daemon.stop() == 0
    done = {(e["camera"], e["episode"]) for e in daemon.events_named("episode_done")}
    assert done == {(camera, episode) for camera in ("front", "depth") for episode in range(2)}
    assert not daemon.events_named("episode_failed")
    rows = rows_by_key(tmp_path)
    for episode in range(2):
        depth_row, front_row = rows[("depth", episode)][0], rows[("front", episode)][0]
        assert (depth_row["video.codec"], depth_row["video.pix_fmt"], depth_row["video.is_depth_map"]) == (
            "ffv1",
            "gray16le",
            True,
        )
        assert (front_row["video.codec"], front_row["video.is_depth_map"]) == ("h264", False)
        assert depth_row["verify_s"] is not None and front_row["verify_s"] is not None
        path = chunk_path(tmp_path, "depth", depth_row["chunk_index"], depth_row["file_index"])
        timestamps = [depth_row["from_timestamp"] + i / 30 for i in range(FRAMES)]
        decoded = np.asarray(decode_video_frames(path, timestamps, 1e-4, is_depth=True))
        np.testing.assert_array_equal(decoded[:, 0], recorded[episode])  # every millimetre, holes included
        by_episode = np.asarray(
            decode_episode_frames(tmp_path, "depth", episode, [i / 30 for i in range(FRAMES)], 1e-4)
        )
        np.testing.assert_array_equal(by_episode[:, 0], recorded[episode])  # the row says depth: not 8-bit RGB
        assert not episode_dir(tmp_path, "depth", episode).exists()  # PNGs freed only after all that
    info = json.loads((tmp_path / "meta" / "info.json").read_text())
    depth_feature = info["features"]["depth"]
    assert depth_feature["shape"] == [H, W, 1]
    assert depth_feature["info"]["is_depth_map"] is True and depth_feature["info"]["depth_unit"] == "mm"
    assert depth_feature["info"]["video.codec"] == "ffv1"
    assert "is_depth_map" not in info["features"]["front"]["info"]
    # LeRobot's statistics of a depth feature (its current main): one channel, in the stored millimetres
    for episode in range(2):
        stats = json.loads(rows[("depth", episode)][0]["lerobot_stats"])
        mm = recorded[episode].astype(np.float64)  # 64x48, 8 frames: every pixel of every frame is sampled
        assert (stats["min"], stats["max"], stats["count"]) == ([[[mm.min()]]], [[[mm.max()]]], [FRAMES])
        np.testing.assert_allclose(stats["mean"], [[[mm.mean()]]], rtol=1e-12)
        np.testing.assert_allclose(stats["std"], [[[mm.std()]]], rtol=1e-9)
    dataset_stats = json.loads((tmp_path / "meta" / "stats.json").read_text())["depth"]
    both = np.concatenate([recorded[0], recorded[1]]).astype(np.float64)
    assert dataset_stats["max"] == [[[both.max()]]] and dataset_stats["count"] == [2 * FRAMES]
    np.testing.assert_allclose(dataset_stats["mean"], [[[both.mean()]]], rtol=1e-12)
    assert np.asarray(json.loads((tmp_path / "meta" / "stats.json").read_text())["front"]["mean"]).shape == (3, 1, 1)
    assert verify_root(tmp_path) == ([], 4)  # the depth rows' frames read back as depth, with either backend
    assert verify_root(tmp_path, backend="torchcodec") == ([], 4)


def test_a_depth_encode_that_does_not_show_each_frames_own_depth_fails_verification(tmp_path: Path) -> None:
    folder = tmp_path / "episode"
    write_depth_episode(folder, 0, 4, W, H, marker=None)
    frames = sorted(folder.glob("frame-*.png"))
    video = tmp_path / "depth.mp4"
    result = encode_depth_frames(frames, video, 30, DepthEncoderConfig.exact().to_settings())
    sources = [depth_fingerprint(read_depth_frame(p)) for p in frames]
    assert verify_depth_video(video, 4, sources).num_frames == 4
    assert result.size_bytes == video.stat().st_size
    stale = tmp_path / "stale.mp4"  # a video whose frame 1 shows frame 0's depth, and so on
    encode_depth_frames([frames[0], *frames[:3]], stale, 30, DepthEncoderConfig.exact().to_settings())
    with pytest.raises(FrameMismatchError, match="previous frame") as excinfo:
        verify_depth_video(stale, 4, sources)
    assert excinfo.value.frame == 1 and excinfo.value.kind == "stale"
    one_mm = read_depth_frame(frames[3])
    one_mm[20, 30] += 1
    with pytest.raises(FrameMismatchError, match="frame 3"):
        verify_depth_video(video, 4, [*sources[:3], depth_fingerprint(one_mm)])


@dataclass
class DepthLedger(Ledger):
    """The oracle's ledger, writing ``robovid.synthetic_depth`` 16-bit PNGs for the cameras in ``depth``."""

    depth: frozenset[str] = frozenset({"depth"})
    _camera: threading.local = field(default_factory=threading.local)

    def write_frame(self, folder: Path, camera: str, burnt_episode: int, frame: int, **kwargs: object) -> bool:
        self._camera.name = camera
        return super().write_frame(folder, camera, burnt_episode, frame, **kwargs)  # type: ignore[arg-type]

    def png_bytes(self, burnt_episode: int, frame: int, seed: int = 0) -> bytes:
        if getattr(self._camera, "name", None) not in self.depth:
            return super().png_bytes(burnt_episode, frame, seed)
        depth = render_depth(depth_scene(seed), *self.size, burnt_episode, frame)
        out = io.BytesIO(imagecodecs.png_encode(depth, level=1))
        return out.getvalue()


@pytest.mark.parametrize(
    "point",
    ["encode:frame:3", "stage:after-encode:2", "append:after-mdat:2", "stage:after-append:2", "clean:unlink:3"],
)
def test_a_kill_during_a_depth_episode_loses_no_frame_and_appends_none_twice(tmp_path: Path, point: str) -> None:
    ledger = DepthLedger(tmp_path)
    for episode in range(3):
        ledger.write_episode("depth", episode, FRAMES)
    killed = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT=point, ROBOVID_WORKERS="1")
    assert killed.returncode == -9, killed.stderr[-2000:]  # it died at the point, by SIGKILL
    check_frames(tmp_path, ledger)
    daemon = start_daemon(tmp_path)
    try:
        wait_for(lambda: len(rows_by_key(tmp_path)) == 3, "all three depth episodes committed", daemon=daemon)
        wait_for(
            lambda: not any(episode_dir(tmp_path, "depth", e).exists() for e in range(3)), "PNGs freed", daemon=daemon
        )
    finally:
        assert daemon.stop() == 0
    verdict = check_frames(tmp_path, ledger, final=True)
    assert len(verdict.in_segment) == 3 * FRAMES and not verdict.as_png
