"""A recorder's mistakes with robovid.StreamingVideoEncoder: each refused with a named error, and nothing fed is lost.

Each test drives the real encoder on real files the way a careless recorder would (an episode
started twice, a camera name misspelt, a disk that fails mid-frame) and checks what is left on disk.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tmpfs import small_tmpfs

from robovid import RGBEncoderConfig, StreamingError, StreamingVideoEncoder
from robovid.frames import read_frame_rgb
from robovid.layout import episode_dir, frame_path, stream_dir
from robovid.stream_files import Finished, StreamInfo
from robovid.stream_log import salvage
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


@contextlib.contextmanager
def files_limited_to(size_bytes: int) -> Iterator[None]:
    """A real short write: the kernel writes a file up to RLIMIT_FSIZE, then fails with EFBIG (as a full disk does)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_frame_the_crash_log_could_not_hold_is_refused_and_fed_again_without_shifting_later_frames(
    tmp_path: Path, held_encoder: Path
) -> None:
    """A crash-log write cut short (disk full) left a partial record, and the raw OSError said nothing; the frame
    fed again after it landed behind that partial record, but log records are read at fixed offsets: the spilled
    PNG of frame 3 was made of frame 3's half and frame 3's retry, and finish_episode handed it off as frame 3."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=1, handoff=True, segment_frames=100)
    encoder.start_episode(["cam"], tmp_path, episode_index=0)
    fed = frames(0, 8)
    encoder.feed_frame("cam", fed[0])
    deadline = time.monotonic() + 60
    while not (held_encoder / "stream:before-encode.passed").exists():
        assert time.monotonic() < deadline, "timed out waiting for the encoder thread to take frame 0"
        time.sleep(0.01)
    encoder.feed_frame("cam", fed[1])  # queued
    encoder.feed_frame("cam", fed[2])  # spilled: the log holds records 0, 1, 2
    record_bytes = WIDTH * HEIGHT * 3 + 8

    with files_limited_to(3 * record_bytes + 1000), pytest.raises((OSError, StreamingError)) as refused:
        encoder.feed_frame("cam", fed[3])

    for image in fed[3:]:
        encoder.feed_frame("cam", image)
    (held_encoder / "stream:before-encode.hold").unlink()
    encoder.finish_episode()
    png_dir = episode_dir(tmp_path, "cam", 0)
    assert [read_frame_rgb(frame_path(png_dir, i)).tobytes() for i in range(2, 8)] == [f.tobytes() for f in fed[2:]]
    assert refused.type is StreamingError and "Frame 3 could not be written" in str(refused.value)
    assert "feed it again" in str(refused.value)


def fill(path: Path) -> None:
    """Write ``path`` until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, bytes(4096))
    finally:
        os.close(fd)


def test_a_first_frame_refused_for_a_full_disk_is_fed_again_with_the_stream_record_that_lets_it_be_salvaged(
    tmp_path: Path, held_encoder: Path
) -> None:
    """The first frame noted its size before it wrote stream.json; when that write failed (a full disk) the frame fed
    again skipped it, so the episode had frames but no stream.json: robovid-watch's salvage of it found 'no frame'
    and deleted the handoff with every frame in its crash log (finished, robovid-watch never took it)."""
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        root = disk / "root"
        encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True, segment_frames=4)
        encoder.start_episode(["cam"], root, episode_index=0)
        fed = frames(0, 6)
        fill(disk / "filler")
        with pytest.raises((OSError, StreamingError)) as refused:
            encoder.feed_frame("cam", fed[0])
        (disk / "filler").unlink()
        for image in fed:  # the encoder is held: every frame waits in the crash log
            encoder.feed_frame("cam", image)
        stream = encoder._streams["cam"]
        stream.halt()  # the threads stop, every file stays, as after a kill
        stream.release()
        folder, png_dir = stream_dir(root, "cam", 0), episode_dir(root, "cam", 0)

        assert StreamInfo.read(folder) is not None
        assert salvage(folder, png_dir) == Finished(6, 0, salvaged=True)
        assert [read_frame_rgb(frame_path(png_dir, i)).tobytes() for i in range(6)] == [f.tobytes() for f in fed]
        assert refused.type is StreamingError and "Frame 0 of 'cam' could not be fed" in str(refused.value)
        assert "feed it again" in str(refused.value)


@pytest.mark.parametrize(
    ("keys", "episode", "named"),
    [
        (["cam"], -1, "episode_index"),  # an episode-0000-1 folder: never taken
        (["cam"], 1.5, "episode_index"),
        (["wrist/left"], 0, "'wrist/left'"),  # a camera 'wrist' with a folder 'left': never taken
        (["../cam"], 0, "'../cam'"),  # a folder beside streams/
        (["cam", "cam"], 0, "'cam'"),  # one camera's stream overwritten by the other's
    ],
)
def test_an_episode_index_or_camera_key_robovid_watch_could_never_take_is_refused_at_start(
    tmp_path: Path, keys: list[str], episode: object, named: str
) -> None:
    """start_episode took them: the episode's frames went to folders robovid-watch never takes (or overwrote another
    camera's stream), so finish_episode handed off an episode that was never committed."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True)
    encoder.start_episode(["front"], tmp_path, episode_index=9)  # a refused start leaves the episode open as it was

    with pytest.raises(StreamingError, match=named):
        encoder.start_episode(keys, tmp_path, episode_index=episode)  # type: ignore[arg-type]

    encoder.feed_frame("front", frames(9, 1)[0])
    assert encoder.finish_episode()["front"][0] == stream_dir(tmp_path, "front", 9)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["front"]
    assert sorted(p.name for p in stream_dir(tmp_path, "front", 9).parent.parent.iterdir()) == ["front"]


def test_start_episode_refuses_to_discard_an_open_handoff_episode_with_frames_fed(tmp_path: Path) -> None:
    """start_episode while a handoff episode was open cancelled it (LeRobot's semantics) and deleted its handoff
    folders: every frame fed, durable in the crash log and promised to robovid-watch, was lost without a word."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True)
    encoder.start_episode(["front", "wrist"], tmp_path, episode_index=4)
    fed = frames(4, 4)
    for image in fed[:3]:
        encoder.feed_frame("front", image)
    encoder.feed_frame("wrist", fed[0])

    with pytest.raises(StreamingError) as refused:
        encoder.start_episode(["front", "wrist"], tmp_path, episode_index=5)

    message = str(refused.value)
    assert "episode 4 is still open" in message
    assert "'front' (3 frames fed)" in message and "'wrist' (1 frames fed)" in message
    assert "finish_episode()" in message and "cancel_episode()" in message
    assert not stream_dir(tmp_path, "front", 5).exists()
    encoder.feed_frame("front", fed[3])  # the open episode is still usable
    folders = {key: result[0] for key, result in encoder.finish_episode().items()}
    assert folders == {"front": stream_dir(tmp_path, "front", 4), "wrist": stream_dir(tmp_path, "wrist", 4)}
    assert Finished.read(folders["front"]) == Finished(4, 4)
    assert Finished.read(folders["wrist"]) == Finished(1, 1)
    encoder.start_episode(["front", "wrist"], tmp_path, episode_index=5)  # after finish_episode: the next one starts
    encoder.close()


@pytest.mark.parametrize("handoff", [False, True])
def test_start_episode_still_cancels_an_open_episode_where_nothing_durable_is_lost(
    tmp_path: Path, handoff: bool
) -> None:
    """LeRobot's semantics stay where cancelling loses nothing robovid promised to keep: without handoff (LeRobot's
    own use: its episode is discarded as LeRobot's encoder does), or a handoff episode no frame was fed to."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=handoff)
    encoder.start_episode(["front"], tmp_path, episode_index=1)
    if not handoff:
        encoder.feed_frame("front", frames(1, 1)[0])

    encoder.start_episode(["front"], tmp_path, episode_index=2)

    assert not stream_dir(tmp_path, "front", 1).exists()
    encoder.feed_frame("front", frames(2, 1)[0])
    video = encoder.finish_episode()["front"][0]
    assert video.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "images") == (
        [".cache"] if handoff else [video.parent.name]
    )


def test_without_handoff_an_encoder_thread_failure_names_the_folder_that_keeps_the_frames_fed(tmp_path: Path) -> None:
    """Without handoff the failed encoder's error ('Encoder thread for cam crashed: FrameSizeError ...') did not say
    that the frames fed stay in a temp folder of the root's that nothing takes over, nor what to do with them."""
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264)
    encoder.start_episode(["cam"], tmp_path, episode_index=0)
    tiny = np.zeros((8, 8, 3), np.uint8)  # too small to encode: the thread fails at its first frame
    encoder.feed_frame("cam", tiny)
    encoder._streams["cam"].thread.join(timeout=60)
    (workdir,) = [p for p in tmp_path.iterdir() if p.name != "images"]

    with pytest.raises(StreamingError) as crashed:
        encoder.feed_frame("cam", tiny)
    with pytest.raises(StreamingError) as failed:
        encoder.finish_episode()

    assert f"The 1 frames fed to episode 0 of 'cam' are kept in {workdir}" in str(crashed.value)
    assert "nothing turns them into video" in str(crashed.value) and "cancel_episode()" in str(crashed.value)
    assert f"Delete {workdir} once you no longer need them" in str(failed.value)
    assert sorted(p.name for p in workdir.iterdir()) == ["raw-000000.rgb", "stream.json"]
