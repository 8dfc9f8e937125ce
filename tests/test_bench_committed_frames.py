"""bench_streaming's frame checker (benchmarks/_committed_frames.py) catches a frame that is not the one fed.

The benchmark's claim, that an overloaded stream still commits every fed frame with its own
content, is only as good as this checker: here it is shown a video with a repeated, two swapped
and one foreign frame, and a root the real service committed from streamed episodes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon_harness import daemon_env

from benchmarks._committed_frames import Placement, check_chunk, check_root, synthetic_frames
from robovid import RGBEncoderConfig, StreamingVideoEncoder
from robovid.layout import chunk_path
from robovid.metadata import read_segments
from robovid.synthetic import render_frame, scene

CAM = "cam"
WIDTH, HEIGHT = 64, 48
H264 = RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast")


def test_a_repeated_swapped_or_foreign_frame_is_counted_wrong(tmp_path: Path) -> None:
    fed = synthetic_frames(WIDTH, HEIGHT)
    frames = [fed(0, i) for i in range(10)]
    frames[4] = fed(0, 5)  # a repeated frame in place of frame 4
    frames[6], frames[7] = fed(0, 7), fed(0, 6)  # two swapped
    frames[8] = render_frame(scene(WIDTH, HEIGHT, 99), WIDTH, HEIGHT, 0, 8)  # its own index, another picture
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264)
    encoder.start_episode([CAM], tmp_path)
    for frame in frames:
        encoder.feed_frame(CAM, frame)
    video, _ = encoder.finish_episode()[CAM]

    check = check_chunk(video, [Placement(0, 0, 10)], fed)

    assert (check.committed, check.checked, check.extra) == (10, 10, 0)
    assert check.wrong == [(0, 4), (0, 6), (0, 7), (0, 8)]


def test_every_frame_the_service_committed_from_streamed_episodes_is_checked(tmp_path: Path) -> None:
    fed = synthetic_frames(WIDTH, HEIGHT)
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True)
    for episode in range(2):
        encoder.start_episode([CAM], tmp_path, episode_index=episode)
        for i in range(10):
            encoder.feed_frame(CAM, fed(episode, i))
        encoder.finish_episode()
    command = [sys.executable, "-m", "robovid_watch.cli", "process", str(tmp_path), "--no-progress"]
    done = subprocess.run(command, env=daemon_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    check = check_root(tmp_path, fed)

    assert (check.committed, check.checked, check.extra, check.wrong) == (20, 20, 0, [])
    rows = read_segments(tmp_path).to_pylist()
    # both in one file, in the order the service's workers appended them (either may come first)
    assert sorted((r["chunk_index"], r["file_index"], r["first_frame"]) for r in rows) == [(0, 0, 0), (0, 0, 10)]
    later = next(r["episode_index"] for r in rows if r["first_frame"] == 10)
    chunk = chunk_path(tmp_path, CAM, 0, 0)
    alone = check_chunk(chunk, [Placement(10, later, 10)], fed)
    assert (alone.checked, alone.extra, alone.wrong) == (10, 10, [])
    misplaced = check_chunk(chunk, [Placement(0, later, 10)], fed)  # the other episode's frames taken for it
    assert misplaced.wrong == [(later, i) for i in range(10)]
