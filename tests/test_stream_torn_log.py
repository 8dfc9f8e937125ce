"""A streamed episode whose crash log was torn by a power cut ends at its first lost frame; it is never parked.

A power cut can leave a crash log ending in a partial record, without the frames that were not
yet durable while a later log's frames reached the disk (the kernel writes pages back in any
order), or with blocks the disk never received read back as zeros (XFS and others extend a file
before its data is written). The recorder here streams with its encoder held (robovid._faults, in this process), so
no segment is published and every frame is only in the crash log; its threads are stopped as a
kill would stop them, the log is cut as a power cut could cut it, and the real robovid-watch
salvages it: the episode is committed with frames 0..end-1, each showing its own content
(frame oracle), the frames after the torn end are counted in ``stream_salvaged``, and no
``stream_salvage_failed`` is logged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import rows_by_key, start_daemon, wait_for
from frame_oracle import FrameId, Ledger, check_frames

from robovid import RGBEncoderConfig, StreamingVideoEncoder
from robovid.frames import read_frame_rgb
from robovid.layout import episode_dir, frame_path, stream_dir
from robovid.stream_files import STREAM_JSON, TRAILER, raw_path
from robovid.stream_log import salvage
from robovid.synthetic import render_frame, scene

CAM = "cam"
WIDTH, HEIGHT = 64, 48
FRAME_BYTES = WIDTH * HEIGHT * 3
RECORD = FRAME_BYTES + TRAILER.size
"""A frame's record in the crash log: its bytes, then its index and CRC-32."""
SEGMENT = 4
FED = 10
"""Frames 0-3 in raw-000000, 4-7 in raw-000001, 8-9 in raw-000002."""


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


def zero_fill(path: Path, start: int, length: int) -> None:
    """Overwrite ``length`` bytes at ``start`` with zeros, as blocks a power cut kept from the disk read back."""
    with open(path, "r+b") as log:
        log.seek(start)
        log.write(bytes(length))


@pytest.mark.parametrize(
    ("cut", "zeroed", "end", "torn"),
    [
        ({2: RECORD + RECORD // 2}, {}, 9, 0),  # the last log ends in half a record: frame 9 was never whole
        ({1: 2 * RECORD + 100}, {}, 6, 2),  # an earlier log lost its last frames (6, 7); 8-9 reached the disk
        ({}, {2: (RECORD, RECORD)}, 9, 0),  # the last log's last record (frame 9) is all zeros
        ({}, {1: (2 * RECORD + 1000, 4096)}, 6, 3),  # a zeroed block inside frame 6's pixels; 7-9 are whole
    ],
    ids=["partial-last-record", "earlier-log-lost-its-tail", "zero-filled-last-record", "zero-filled-block"],
)
def test_a_torn_crash_log_is_salvaged_up_to_its_first_lost_frame_and_committed(
    tmp_path: Path, held_encoder: Path, cut: dict[int, int], zeroed: dict[int, tuple[int, int]], end: int, torn: int
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    stream_and_die(root, held_encoder)
    folder = stream_dir(root, CAM, 0)
    for number, size in cut.items():
        os.truncate(raw_path(folder, number), size)
    for number, (start, length) in zeroed.items():
        zero_fill(raw_path(folder, number), start, length)

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


def test_a_crash_log_written_before_records_had_trailers_is_still_salvaged(tmp_path: Path, held_encoder: Path) -> None:
    """A handoff an older robovid left (``stream.json`` without ``log_format``, bare records) after an upgrade."""
    root = tmp_path / "root"
    root.mkdir()
    fed = stream_and_die(root, held_encoder)
    folder = stream_dir(root, CAM, 0)
    info = json.loads((folder / STREAM_JSON).read_text())
    del info["log_format"]
    (folder / STREAM_JSON).write_text(json.dumps(info))
    for number in range(3):
        data = raw_path(folder, number).read_bytes()
        bare = b"".join(data[start : start + FRAME_BYTES] for start in range(0, len(data), RECORD))
        raw_path(folder, number).write_bytes(bare)

    finished = salvage(folder, episode_dir(root, CAM, 0))

    assert finished is not None
    assert (finished.num_frames, finished.torn_frames) == (FED, 0)
    for index, image in enumerate(fed):
        assert np.array_equal(read_frame_rgb(frame_path(episode_dir(root, CAM, 0), index)), image)
