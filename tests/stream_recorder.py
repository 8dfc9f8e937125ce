"""A recorder process that streams one episode with robovid.StreamingVideoEncoder(handoff=True), for tests.

Not a test module: tests/test_streaming_service.py runs it as a subprocess with
``ROBOVID_TEST_POINTS`` set, so it can hold its own encoder thread at ``stream:before-encode``.

    python stream_recorder.py ROOT CAMERA EPISODE POINTS_DIR

It feeds synthetic frames (robovid.synthetic, the episode and frame index burnt in) in a fixed
order of states, with no timing involved, then prints ``ready N`` (N frames fed) and waits to be
killed:

1. frames 0..8 with the encoder free, each taken before the next is fed; it waits until segments 0 and 1 (frames 0..7, 4 a segment)
   are published and frame 8 was taken by the encoder (still in its open segment);
2. it holds the encoder, feeds frame 9 and waits until the encoder holds it;
3. frames 10..12 fill the queue (3), frames 13..19 spill: into the crash log, then PNGs by the
   spill thread; it waits until all 7 are PNGs and the log of frames 16..19 is deleted.

So at the kill: frames 0..7 are in published segments, 8 was encoded into an unpublished segment,
9 is inside the held encoder, 10..12 wait in the queue (all four only in memory and the crash
log), 13..19 are PNGs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from robovid import RGBEncoderConfig, StreamingVideoEncoder
from robovid.layout import episode_dir, stream_dir
from robovid.synthetic import render_frame, scene

WIDTH, HEIGHT = 64, 48
SEGMENT_FRAMES, QUEUE = 4, 3
FRAMES = 20
POINT = "stream:before-encode"


def passes(points: Path) -> int:
    try:
        return (points / f"{POINT}.passed").stat().st_size
    except FileNotFoundError:
        return 0


def wait(condition: object) -> None:
    deadline = time.monotonic() + 120
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("stream_recorder: timed out")
        time.sleep(0.01)


def main() -> None:
    root, camera, episode, points = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    background = scene(WIDTH, HEIGHT, 0)
    frames = [render_frame(background, WIDTH, HEIGHT, episode, i) for i in range(FRAMES)]
    encoder = StreamingVideoEncoder(
        fps=30,
        rgb_encoder=RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast"),
        queue_maxsize=QUEUE,
        handoff=True,
        segment_frames=SEGMENT_FRAMES,
    )
    encoder.start_episode([camera], root, episode_index=episode)
    folder = stream_dir(root, camera, episode)
    for i in range(9):  # one at a time, each taken by the encoder before the next: the queue never fills
        encoder.feed_frame(camera, frames[i])
        wait(lambda n=i + 1: passes(points) >= n)
    wait(lambda: (folder / "seg-000001.mp4").exists())
    (points / f"{POINT}.hold").touch()
    encoder.feed_frame(camera, frames[9])
    wait(lambda: passes(points) >= 10)
    for i in range(10, FRAMES):
        encoder.feed_frame(camera, frames[i])
    assert encoder.spilled_frames[camera] == 7, encoder.spilled_frames
    pngs = episode_dir(root, camera, episode)
    wait(lambda: len(list(pngs.glob("frame-*.png"))) == 7 and not (folder / "raw-000004.rgb").exists())
    print(f"ready {FRAMES}", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
