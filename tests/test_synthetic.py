"""Synthetic recordings: index strips survive real codecs, content is camera-like, layout is LeRobot's."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from robovid.synthetic import (
    burn_index,
    read_index,
    render_frame,
    scene,
    simulate_recorder,
    write_episode,
    write_recording,
)


def _encode_decode(frames: list[np.ndarray], path: Path, codec: str, crf: int) -> list[np.ndarray]:
    """Encode RGB ``frames`` to ``path`` as yuv420p with ``codec`` at ``crf``; return every decoded frame."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30, options={"g": "2", "crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _clip(width: int, height: int, episode: int, num_frames: int, seed: int = 3) -> list[np.ndarray]:
    """Render ``num_frames`` frames of one episode."""
    background = scene(width, height, seed)
    return [render_frame(background, width, height, episode, i) for i in range(num_frames)]


def _psnr_db(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Return the PSNR in dB between two equally long frame lists."""
    mse = np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)])
    return float(10 * np.log10(255.0**2 / mse))


def _read_png(path: Path) -> np.ndarray:
    """Return the pixels of a PNG, closing the file."""
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.mark.parametrize(("width", "height"), [(64, 48), (100, 60), (160, 120), (640, 480), (1279, 719)])
def test_index_round_trips_exactly_on_rendered_frames(width: int, height: int) -> None:
    background = scene(width, height, seed=1)
    for episode, frame in [(0, 0), (1, 2), (4242, 999), (65535, 65535)]:
        img = render_frame(background, width, height, episode, frame)
        assert img.shape == (height, width, 3)
        assert read_index(img) == (episode, frame)


def test_index_round_trips_at_4k_and_on_grey_images() -> None:
    rgb = np.full((2160, 3840, 3), 128, dtype=np.uint8)
    burn_index(rgb, 123, 45678)
    grey = np.full((48, 64), 128, dtype=np.uint8)
    burn_index(grey, 7, 8)
    assert (read_index(rgb), read_index(grey)) == ((123, 45678), (7, 8))


@pytest.mark.parametrize(("codec", "crf"), [("libsvtav1", 35), ("libsvtav1", 40), ("libx264", 30), ("libx265", 30)])
@pytest.mark.parametrize(("width", "height", "num_frames"), [(160, 120, 20), (64, 48, 4), (1280, 720, 3)])
def test_index_survives_lossy_coding_on_every_frame(
    tmp_path: Path, codec: str, crf: int, width: int, height: int, num_frames: int
) -> None:
    decoded = _encode_decode(_clip(width, height, 517, num_frames), tmp_path / "v.mp4", codec, crf)
    assert [read_index(f) for f in decoded] == [(517, i) for i in range(num_frames)]


def test_svtav1_at_crf30_keeps_psnr_above_30db(tmp_path: Path) -> None:
    source = _clip(320, 240, 2, 10)
    decoded = _encode_decode(source, tmp_path / "v.mp4", "libsvtav1", 30)
    assert _psnr_db(source, decoded) > 30


def test_read_index_rejects_frames_without_a_code() -> None:
    background = scene(160, 120, seed=5)
    crops = [background[y : y + 120, x : x + 160] for y, x in [(0, 0), (30, 40), (60, 80)]]
    blanks = [np.full((48, 64, 3), value, dtype=np.uint8) for value in (0, 255)]
    for img in [*crops, *blanks]:
        with pytest.raises(ValueError, match="No valid"):
            read_index(img)


def test_read_index_rejects_a_damaged_code() -> None:
    img = render_frame(scene(160, 120, seed=5), 160, 120, 3, 4)
    img[:5, :10] = 255 - img[:5, :10]  # flip the first episode bit
    with pytest.raises(ValueError, match="check row"):
        read_index(img)


def test_burn_index_refuses_indices_over_16_bits_and_tiny_frames() -> None:
    with pytest.raises(ValueError, match="frame=65536"):
        burn_index(np.zeros((48, 64, 3), dtype=np.uint8), 0, 65536)
    with pytest.raises(ValueError, match="too small"):
        burn_index(np.zeros((48, 63, 3), dtype=np.uint8), 0, 0)


def test_scene_is_deterministic_larger_than_the_frame_and_in_video_range() -> None:
    a, b, other = scene(640, 480, 9), scene(640, 480, 9), scene(640, 480, 10)
    assert a.shape == (720, 960, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, other)
    assert a.min() >= 16 and a.max() <= 239


def test_render_frame_is_reproducible_and_pans_between_frames() -> None:
    background = scene(320, 240, 4)
    first, again = render_frame(background, 320, 240, 0, 10), render_frame(background, 320, 240, 0, 10)
    later = render_frame(background, 320, 240, 0, 40)
    assert np.array_equal(first, again)
    below_strip = slice(60, None)
    assert np.abs(first[below_strip].astype(int) - later[below_strip]).mean() > 5


def test_write_episode_writes_numbered_pngs_then_the_marker(tmp_path: Path) -> None:
    episode_dir = tmp_path / "images" / "front" / "episode-000002"
    paths = write_episode(episode_dir, 2, 5, width=160, height=120)
    assert [p.name for p in paths] == [f"frame-{i:06d}.png" for i in range(5)]
    assert [read_index(_read_png(p)) for p in paths] == [(2, i) for i in range(5)]
    marker = episode_dir / ".complete"
    assert marker.stat().st_size == 0
    assert all(marker.stat().st_mtime_ns >= p.stat().st_mtime_ns for p in paths)


def test_write_episode_without_marker_writes_only_frames(tmp_path: Path) -> None:
    write_episode(tmp_path / "ep", 0, 2, width=64, height=48, marker=None)
    assert sorted(p.name for p in (tmp_path / "ep").iterdir()) == ["frame-000000.png", "frame-000001.png"]


def test_write_recording_gives_each_camera_its_own_scene(tmp_path: Path) -> None:
    write_recording(tmp_path, ["left", "right"], [0, 3], 2, 96, 64)
    frames = {}
    for camera in ("left", "right"):
        for episode in (0, 3):
            episode_dir = tmp_path / "images" / camera / f"episode-{episode:06d}"
            assert (episode_dir / ".complete").exists()
            frames[camera, episode] = _read_png(episode_dir / "frame-000001.png")
            assert read_index(frames[camera, episode]) == (episode, 1)
    assert not np.array_equal(frames["left", 0][20:], frames["right", 0][20:])


def test_simulate_recorder_writes_layout_markers_and_info_json(tmp_path: Path) -> None:
    completed: list[int] = []
    simulate_recorder(
        tmp_path, ["top", "wrist"], 2, 3, 30.0, 64, 48, realtime=False, start_episode=4, on_episode=completed.append
    )
    assert completed == [4, 5]
    assert json.loads((tmp_path / "meta" / "info.json").read_text()) == {"fps": 30.0}
    for camera in ("top", "wrist"):
        for episode in (4, 5):
            episode_dir = tmp_path / "images" / camera / f"episode-{episode:06d}"
            names = sorted(p.name for p in episode_dir.iterdir())
            assert names == [".complete", "frame-000000.png", "frame-000001.png", "frame-000002.png"]
    assert [p.name for p in (tmp_path / "meta").iterdir()] == ["info.json"]


def test_simulate_recorder_keeps_an_existing_info_json(tmp_path: Path) -> None:
    info = tmp_path / "meta" / "info.json"
    info.parent.mkdir()
    info.write_text('{"fps": 15, "robot": "arm"}')
    simulate_recorder(tmp_path, ["top"], 1, 1, 30.0, 64, 48, realtime=False)
    assert json.loads(info.read_text()) == {"fps": 15, "robot": "arm"}


def test_simulate_recorder_paces_frames_at_fps_in_realtime(tmp_path: Path) -> None:
    start_s = time.monotonic()
    simulate_recorder(tmp_path, ["top"], 1, 6, 50.0, 64, 48, realtime=True)
    assert time.monotonic() - start_s >= 5 / 50.0
    assert (tmp_path / "images" / "top" / "episode-000000" / ".complete").exists()


def test_simulate_recorder_stops_between_frames_when_stop_is_set(tmp_path: Path) -> None:
    stop = threading.Event()
    simulate_recorder(tmp_path, ["top"], 3, 2, 100.0, 64, 48, stop=stop, on_episode=lambda _: stop.set())
    camera_dir = tmp_path / "images" / "top"
    assert sorted(p.name for p in camera_dir.iterdir()) == ["episode-000000"]
    assert (camera_dir / "episode-000000" / ".complete").exists()
