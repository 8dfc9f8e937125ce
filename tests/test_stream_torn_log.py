"""A streamed episode whose crash log was torn by a power cut ends at its first lost frame; it is never parked.

A power cut can leave a crash log ending in a partial record, or without the frames that were not
yet durable while a later log's frames reached the disk (the kernel writes pages back in any
order). The recorder here streams with its encoder held (robovid._faults, in this process), so
no segment is published and every frame is only in the crash log; its threads are stopped as a
kill would stop them, the log is cut as a power cut could cut it, and the real robovid-watch
salvages it: the episode is committed with frames 0..end-1, each showing its own content
(frame oracle), the frames after the torn end are counted in ``stream_salvaged``, and no
``stream_salvage_failed`` is logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import rows_by_key, start_daemon, wait_for
from frame_oracle import FrameId, Ledger, check_frames

import robovid._faults as faults
from robovid import RGBEncoderConfig, StreamingVideoEncoder
from robovid.layout import episode_dir, stream_dir
from robovid.stream_files import raw_path
from robovid.synthetic import render_frame, scene

CAM = "cam"
WIDTH, HEIGHT = 64, 48
FRAME_BYTES = WIDTH * HEIGHT * 3
SEGMENT = 4
FED = 10
"""Frames 0-3 in raw-000000, 4-7 in raw-000001, 8-9 in raw-000002."""


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    points = tmp_path / "points"
    points.mkdir()
    monkeypatch.setattr(faults, "_POINTS_DIR", str(points))
    (points / "stream:before-encode.hold").touch()
    yield points
    (points / "stream:before-encode.hold").unlink(missing_ok=True)


def stream_and_die(root: Path, held: Path) -> list[np.ndarray]:
    """Feed FED frames with the encoder held (nothing published), then stop the threads as a kill would."""
    background = scene(WIDTH, HEIGHT, 0)
    fed = [render_frame(background, WIDTH, HEIGHT, 0, i) for i in range(FED)]
    encoder = StreamingVideoEncoder(
        fps=30,
        rgb_encoder=RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast"),
        queue_maxsize=FED,
        handoff=True,
        segment_frames=SEGMENT,
    )
    encoder.start_episode([CAM], root, episode_index=0)
    for image in fed:
        encoder.feed_frame(CAM, image)
    stream = encoder._streams[CAM]
    stream.halt()  # files kept, nothing published: the encoder never got past frame 0
    stream.release()
    return fed


@pytest.mark.parametrize(
    ("cut", "end", "torn"),
    [
        ({2: FRAME_BYTES + FRAME_BYTES // 2}, 9, 0),  # the last log ends in half a record: frame 9 was never whole
        ({1: 2 * FRAME_BYTES + 100}, 6, 2),  # an earlier log lost its last frames (6, 7); 8-9 reached the disk
    ],
    ids=["partial-last-record", "earlier-log-lost-its-tail"],
)
def test_a_torn_crash_log_is_salvaged_up_to_its_first_lost_frame_and_committed(
    tmp_path: Path, held: Path, cut: dict[int, int], end: int, torn: int
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    stream_and_die(root, held)
    folder = stream_dir(root, CAM, 0)
    for number, size in cut.items():
        os.truncate(raw_path(folder, number), size)

    daemon = start_daemon(root)
    try:
        wait_for(lambda: (CAM, 0) in rows_by_key(root), "the torn episode committed", daemon=daemon)
        wait_for(lambda: not folder.exists() and not episode_dir(root, CAM, 0).exists(), "handoff cleaned")
    finally:
        assert daemon.stop() == 0
    assert not daemon.events_named("stream_salvage_failed")
    assert not daemon.events_named("episode_failed")
    assert [(e["frames"], e["torn_frames"]) for e in daemon.events_named("stream_salvaged")] == [(end, torn)]
    assert rows_by_key(root)[(CAM, 0)][0]["num_frames"] == end
    ledger = Ledger(root)
    ledger.attempted = {FrameId(CAM, 0, i) for i in range(end)}
    assert len(check_frames(root, ledger, final=True).in_segment) == end
