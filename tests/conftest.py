"""Shared fixtures: encoded episode videos made once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import PointHooks

from robovid.encode import encode_frames
from robovid.settings import EncoderSettings
from robovid.synthetic import write_episode

EpisodeVideo = Callable[..., Path]


@pytest.fixture(scope="session")
def episode_video(tmp_path_factory: pytest.TempPathFactory) -> EpisodeVideo:
    """Return ``make(episode, num_frames=6, width=64, height=48, fps=30, vcodec=..., pix_fmt=..., g=2)``.

    It encodes the synthetic episode (index burnt into every frame) once per session and
    returns the cached MP4. Tests must treat the file as read-only: copy it to modify it.
    """
    root = tmp_path_factory.mktemp("episode_videos")
    cache: dict[tuple[object, ...], Path] = {}

    def make(
        episode: int = 0,
        num_frames: int = 6,
        width: int = 64,
        height: int = 48,
        fps: int = 30,
        vcodec: str = "libsvtav1",
        pix_fmt: str = "yuv420p",
        g: int | None = 2,
    ) -> Path:
        key = (episode, num_frames, width, height, fps, vcodec, pix_fmt, g)
        if key not in cache:
            name = "-".join(str(part) for part in key)
            frames = write_episode(root / f"png-{name}", episode, num_frames, width, height, seed=episode)
            video = root / f"episode-{name}.mp4"
            encode_frames(frames, video, fps, EncoderSettings(vcodec=vcodec, pix_fmt=pix_fmt, g=g))
            cache[key] = video
        return cache[key]

    return make


@pytest.fixture
def points(tmp_path_factory: pytest.TempPathFactory) -> PointHooks:
    """Test hooks for a daemon started with ``**points.env``, in a folder outside its root."""
    return PointHooks(tmp_path_factory.mktemp("points"))
