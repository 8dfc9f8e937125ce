"""robovid.StreamingVideoEncoder in-process: no frame is dropped when the encoder falls behind.

The encoder thread is held at its test hook (``stream:before-encode``, robovid._faults) so its
queue fills for certain, with no sleep and no race: every frame after that spills to a PNG, and
the finished video (or, with ``handoff``, the segments plus the PNGs) still holds every frame
fed, in order, each showing its own content (the index burnt into it).
"""

from __future__ import annotations

import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import robovid
from robovid import FrameSizeError, RGBEncoderConfig, StreamingError, StreamingVideoEncoder, UnknownCameraError
from robovid.frames import read_frame_rgb
from robovid.layout import episode_dir, frame_path, stream_dir
from robovid.stream_files import Finished, SpillWriter, StreamInfo, published_segments, read_segment_data
from robovid.stream_log import salvage
from robovid.synthetic import read_index, render_frame, scene
from robovid.verify import psnr_db

CAM = "observation.images.cam"
WIDTH, HEIGHT = 64, 48
H264 = RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast")


def frames(episode: int, count: int, seed: int = 0) -> list[np.ndarray]:
    background = scene(WIDTH, HEIGHT, seed)
    return [render_frame(background, WIDTH, HEIGHT, episode, i) for i in range(count)]


def decoded_indices(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        return [
            read_index(np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)) for frame in container.decode(video=0)
        ]


def passes(points: Path, name: str) -> int:
    try:
        return (points / f"{name}.passed").stat().st_size
    except FileNotFoundError:
        return 0


def wait_until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def feed_with_worker_held(encoder: StreamingVideoEncoder, points: Path, fed: list[np.ndarray]) -> None:
    """Frame 0 reaches the held worker, frames 1..queue_maxsize fill its queue, every later one spills."""
    encoder.feed_frame(CAM, fed[0])
    wait_until(lambda: passes(points, "stream:before-encode") >= 1, "the encoder thread to take frame 0")
    for image in fed[1:]:
        encoder.feed_frame(CAM, image)


def test_a_full_queue_spills_and_loses_no_frame(tmp_path: Path, held_encoder: Path) -> None:
    """LeRobot's test_graceful_frame_dropping, robovid's way: 50 frames, a tiny queue, none dropped."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=2)
    encoder.start_episode([CAM], tmp_path)
    fed = frames(0, 50)
    feed_with_worker_held(encoder, held_encoder, fed)
    png_dir = episode_dir(tmp_path, CAM, 0)
    assert encoder.spilled_frames[CAM] == 47  # frames 3..49: the queue held 1 and 2
    wait_until(lambda: len(list(png_dir.glob("frame-*.png"))) == 47, "the spilled frames written as PNGs")
    assert sorted(p.name for p in png_dir.glob("frame-*.png")) == [f"frame-{i:06d}.png" for i in range(3, 50)]
    assert read_frame_rgb(frame_path(png_dir, 3)).tobytes() == fed[3].tobytes()  # lossless
    (held_encoder / "stream:before-encode.hold").unlink()

    results = encoder.finish_episode()

    video, stats = results[CAM]
    assert decoded_indices(video) == [(0, i) for i in range(50)]
    assert encoder._dropped_frames[CAM] == 0
    assert stats is not None and int(stats["count"][0]) == 50
    assert not png_dir.exists()  # the tail is in the video now
    encoder.close()


def test_handoff_leaves_segments_fingerprints_and_the_png_tail(tmp_path: Path, held_encoder: Path) -> None:
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=4, handoff=True, segment_frames=2)
    encoder.start_episode([CAM], tmp_path, episode_index=7)
    fed = frames(7, 12)
    feed_with_worker_held(encoder, held_encoder, fed)
    folder = stream_dir(tmp_path, CAM, 7)
    png_dir = episode_dir(tmp_path, CAM, 7)
    wait_until(lambda: len(list(png_dir.glob("frame-*.png"))) == 7, "the spilled frames 5..11 written as PNGs")
    # the crash log: frames 0..4 wait for the held encoder; the logs of spilled frames 6..11 went with their PNGs
    wait_until(lambda: not (folder / "raw-000005.rgb").exists(), "the log of frames 10, 11 deleted")
    assert sorted(p.name for p in folder.glob("raw-*.rgb")) == ["raw-000000.rgb", "raw-000001.rgb", "raw-000002.rgb"]
    (held_encoder / "stream:before-encode.hold").unlink()

    results = encoder.finish_episode()

    assert results[CAM][0] == folder
    assert Finished.read(folder) == Finished(12, 5)
    assert not list(folder.glob("raw-*"))  # the crash log goes once its frames are in segments
    segments = published_segments(folder)
    assert segments == [0, 1, 2]  # frames 0-1, 2-3, 4
    indices = [i for n in segments for i in decoded_indices(folder / f"seg-{n:06d}.mp4")]
    assert indices == [(7, i) for i in range(5)]
    fingerprints = [fp for n in segments for fp in read_segment_data(folder, n)[0]]
    assert len(fingerprints) == 5 and fingerprints[0].width == WIDTH
    assert sorted(p.name for p in png_dir.iterdir()) == [".complete", *(f"frame-{i:06d}.png" for i in range(5, 12))]
    info = StreamInfo.read(folder)
    assert info is not None and (info.width, info.height, info.fps) == (WIDTH, HEIGHT, 30)
    assert info.encoder_settings().vcodec == "h264"


def test_a_streamed_episode_is_refused_a_second_time_until_robovid_watch_took_it(tmp_path: Path) -> None:
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True)
    encoder.start_episode([CAM], tmp_path, episode_index=0)
    for image in frames(0, 3):
        encoder.feed_frame(CAM, image)
    encoder.finish_episode()
    with pytest.raises(StreamingError, match="was streamed and robovid-watch has not"):
        encoder.start_episode([CAM], tmp_path, episode_index=0)
    encoder.start_episode([CAM], tmp_path)  # the next index by default
    encoder.feed_frame(CAM, frames(1, 1)[0])
    assert encoder.finish_episode()[CAM][0] == stream_dir(tmp_path, CAM, 1)


def test_cancel_deletes_the_take_with_its_spilled_pngs(tmp_path: Path, held_encoder: Path) -> None:
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=1, handoff=True)
    encoder.start_episode([CAM], tmp_path, episode_index=3)
    feed_with_worker_held(encoder, held_encoder, frames(3, 5))
    assert encoder.spilled_frames[CAM] == 3
    encoder.cancel_episode()
    assert not stream_dir(tmp_path, CAM, 3).exists()
    assert not episode_dir(tmp_path, CAM, 3).exists()


def test_a_frame_of_another_size_is_refused_naming_both(tmp_path: Path) -> None:
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264)
    encoder.start_episode([CAM], tmp_path)
    encoder.feed_frame(CAM, np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(FrameSizeError, match=r"32x48.*64x48"):
        encoder.feed_frame(CAM, np.zeros((48, 32, 3), np.uint8))
    with pytest.raises(robovid.FrameFormatError, match="H x W x 3"):
        encoder.feed_frame(CAM, np.zeros((48, 64), np.uint8))
    encoder.close()


@pytest.mark.parametrize(
    ("fps", "rate"), [(np.int64(30), Fraction(30)), (np.float32(29.97), Fraction(2997, 100))], ids=repr
)
def test_numpy_scalar_fps_streams_at_its_exact_rate(tmp_path: Path, fps: Any, rate: Fraction) -> None:
    """LeRobot builds its streaming encoder with the dataset metadata's fps, a numpy scalar."""
    encoder = StreamingVideoEncoder(fps=fps, rgb_encoder=H264)
    encoder.start_episode([CAM], tmp_path)
    for image in frames(0, 3):
        encoder.feed_frame(CAM, image)
    video, _ = encoder.finish_episode()[CAM]
    encoder.close()

    with av.open(str(video)) as container:
        assert container.streams.video[0].average_rate == rate
    assert decoded_indices(video) == [(0, i) for i in range(3)]


@pytest.mark.parametrize("fps", [np.int64(0), float("nan"), True, "30"], ids=repr)
def test_an_fps_that_is_not_a_rate_is_refused_when_the_encoder_is_built(fps: Any) -> None:
    with pytest.raises(ValueError, match=r"Invalid fps .* It must be a number from 1 to 1000"):
        StreamingVideoEncoder(fps=fps, rgb_encoder=H264)


def test_a_frame_for_a_camera_not_opened_is_refused_naming_the_open_ones(tmp_path: Path) -> None:
    """LeRobot raises a bare KeyError('cam'); robovid's is still a KeyError, and says what is open."""
    other = "observation.images.wrist"
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264)
    encoder.start_episode([CAM, other], tmp_path)
    fed = frames(0, 2)
    encoder.feed_frame(CAM, fed[0])

    with pytest.raises(KeyError) as caught:
        encoder.feed_frame("observation.images.top", fed[1])

    assert isinstance(caught.value, UnknownCameraError)
    assert str(caught.value) == (
        f"No camera 'observation.images.top' in episode 0: its open cameras are {CAM!r}, {other!r}. Feed one of "
        "those, or list 'observation.images.top' in start_episode's video_keys."
    )
    encoder.feed_frame(CAM, fed[1])  # the episode goes on
    encoder.feed_frame(other, fed[0])
    results = encoder.finish_episode()
    encoder.close()
    assert decoded_indices(results[CAM][0]) == [(0, 0), (0, 1)]


def test_frames_of_other_dtypes_are_encoded_as_they_are_or_refused_never_saturated(tmp_path: Path) -> None:
    """An int64 frame (numpy arithmetic on a camera frame gives one) was multiplied by 255 like a float in [0, 1]:
    every non-zero value became 255, and the verify stage, fingerprinting the converted frame, could not see it."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264)
    encoder.start_episode([CAM], tmp_path)
    fed = frames(0, 4)
    encoder.feed_frame(CAM, fed[0])
    encoder.feed_frame(CAM, fed[1].astype(np.int64))
    encoder.feed_frame(CAM, fed[2].astype(np.float32) / 255)  # LeRobot's float frames: [0, 1]
    for bad in (fed[3].astype(np.float32), fed[3].astype(np.uint16) * 257, np.full(fed[3].shape, np.nan, np.float32)):
        with pytest.raises(robovid.FrameFormatError, match="uint8"):
            encoder.feed_frame(CAM, bad)
    encoder.feed_frame(CAM, fed[3])
    video, _ = encoder.finish_episode()[CAM]
    with av.open(str(video)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 4
    assert [round(psnr_db(image, source)) > 30 for image, source in zip(decoded, fed, strict=True)] == [True] * 4


def test_salvage_turns_the_crash_log_into_pngs_and_drops_a_png_cut_short(tmp_path: Path, held_encoder: Path) -> None:
    """What robovid-watch does with the handoff of a recorder that died (stopped here without finishing)."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=3, handoff=True, segment_frames=2)
    encoder.start_episode([CAM], tmp_path, episode_index=1)
    fed = frames(1, 6)
    feed_with_worker_held(encoder, held_encoder, fed)  # 0 held, 1-3 queued, 4-5 spilled
    stream = encoder._streams[CAM]
    stream.halt()  # the threads stop, every file stays, as after a kill
    stream.release()
    folder, png_dir = stream_dir(tmp_path, CAM, 1), episode_dir(tmp_path, CAM, 1)
    (png_dir / ".frame-000002.png.part").write_bytes(b"\x89PNG cut short")
    for i in (4, 5):
        frame_path(png_dir, i).unlink(missing_ok=True)  # as if the spill thread had not written them yet

    finished = salvage(folder, png_dir)

    assert finished == Finished(6, 0, salvaged=True)
    assert sorted(p.name for p in png_dir.iterdir()) == [f"frame-{i:06d}.png" for i in range(6)]
    assert [read_frame_rgb(frame_path(png_dir, i)).tobytes() for i in range(6)] == [f.tobytes() for f in fed]
    assert not list(folder.glob("raw-*"))


def test_the_spill_writer_docstring_claims_no_speed() -> None:
    """Speed claims live only in benchmarks/ (STYLE): its '~17 ms of CPU a frame' went stale (benchmarks/README.md
    measured feed_frame at 17-48 ms a 1080p frame under load)."""
    assert SpillWriter.__doc__ is not None and "bench_streaming" in SpillWriter.__doc__
    assert re.search(r"\d\s*ms\b", SpillWriter.__doc__) is None
