"""A recorder's mistakes with robovid.StreamingVideoEncoder: each refused with a named error, and nothing fed is lost.

Each test drives the real encoder on real files the way a careless recorder would (an episode
started twice, a camera name misspelt, a disk that fails mid-frame) and checks what is left on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robovid import RGBEncoderConfig, StreamingError, StreamingVideoEncoder
from robovid.layout import stream_dir
from robovid.synthetic import render_frame, scene

WIDTH, HEIGHT = 64, 48
H264 = RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast")


def frames(episode: int, count: int) -> list[np.ndarray]:
    background = scene(WIDTH, HEIGHT, 0)
    return [render_frame(background, WIDTH, HEIGHT, episode, i) for i in range(count)]


def test_a_start_episode_refused_for_one_camera_reserves_the_episode_for_none(tmp_path: Path) -> None:
    """start_episode(["a", "b"]) refused because b's episode 5 was streamed left a's handoff folder (its lock file
    alone) behind, so a retry for camera a alone was refused too, naming a handoff no recorder had written."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True)
    encoder.start_episode(["b"], tmp_path, episode_index=5)
    encoder.feed_frame("b", frames(5, 1)[0])
    encoder.finish_episode()

    with pytest.raises(StreamingError, match="episode 5 of 'b'"):
        encoder.start_episode(["a", "b"], tmp_path, episode_index=5)

    assert not stream_dir(tmp_path, "a", 5).exists()
    encoder.start_episode(["a"], tmp_path, episode_index=5)
    encoder.feed_frame("a", frames(5, 1)[0])
    assert encoder.finish_episode()["a"][0] == stream_dir(tmp_path, "a", 5)
