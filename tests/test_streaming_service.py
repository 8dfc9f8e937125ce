"""Streamed episodes through the real robovid-watch: every frame fed ends in exactly one committed segment.

The recorder side is robovid.StreamingVideoEncoder(handoff=True), in this process or (for the
kill) in its own process (tests/stream_recorder.py); its encoder thread is held at its test hook
(``stream:before-encode``) so that its queue is full for certain and frames spill to PNGs, with no
timing involved. The frame oracle (tests/frame_oracle.py) then decodes every committed segment
and identifies each frame by the index burnt into it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import Daemon, PointHooks, rows_by_key, start_daemon, wait_for
from frame_oracle import FrameId, Ledger, check_frames

import robovid._faults as faults
from robovid import RGBEncoderConfig, StreamingError, StreamingVideoEncoder
from robovid.frames import read_frame_rgb
from robovid.layout import episode_dir, frame_path, segments_dir, stream_dir, streams_dir
from robovid.synthetic import render_frame, scene

H264 = RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast")
"""robovid-watch's default settings: a streamed episode joins the same chunk file as PNG episodes."""
RECORDER = Path(__file__).with_name("stream_recorder.py")
WIDTH, HEIGHT = 64, 48


def fed_frames(ledger: Ledger, camera: str, episode: int, count: int) -> list[object]:
    background = scene(WIDTH, HEIGHT, 0)
    ledger.attempted |= {FrameId(camera, episode, i) for i in range(count)}
    return [render_frame(background, WIDTH, HEIGHT, episode, i) for i in range(count)]


@pytest.fixture
def daemon_stopper() -> Iterator[list[Daemon]]:
    daemons: list[Daemon] = []
    yield daemons
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.stop()


def committed(root: Path, keys: list[tuple[str, int]]) -> bool:
    rows = rows_by_key(root)
    return all(key in rows for key in keys)


def test_streamed_episodes_spilled_or_not_are_committed_whole_beside_png_episodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon_stopper: list[Daemon]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    points = tmp_path / "points"
    points.mkdir()
    monkeypatch.setattr(faults, "_POINTS_DIR", str(points))
    ledger = Ledger(root)
    ledger.write_episode("front", 0, 6)  # a PNG episode of the same camera
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=2, handoff=True, segment_frames=4)
    for episode, spill in ((1, False), (2, True)):
        encoder.queue_maxsize = 2 if spill else 64  # 64: the 11 frames cannot fill it, whatever the load
        encoder.start_episode(["front", "wrist"], root, episode_index=episode)
        front, wrist = fed_frames(ledger, "front", episode, 11), fed_frames(ledger, "wrist", episode, 11)
        hold = points / "stream:before-encode.hold"
        if spill:  # both encoders held at their first frame: queues of 2 fill, frames 3..10 spill
            passed = points / "stream:before-encode.passed"
            before = passed.stat().st_size if passed.exists() else 0
            hold.touch()
            encoder.feed_frame("front", front[0])
            encoder.feed_frame("wrist", wrist[0])
            wait_for(lambda p=passed, n=before: p.exists() and p.stat().st_size >= n + 2, "both encoders held")
        for f, w in list(zip(front, wrist, strict=True))[1 if spill else 0 :]:
            encoder.feed_frame("front", f)
            encoder.feed_frame("wrist", w)
        assert encoder.spilled_frames == ({"front": 8, "wrist": 8} if spill else {})
        hold.unlink(missing_ok=True)
        encoder.finish_episode()
    assert len(list(episode_dir(root, "front", 2).glob("frame-*.png"))) == 8

    daemon = start_daemon(root)
    daemon_stopper.append(daemon)
    keys = [("front", 0), ("front", 1), ("front", 2), ("wrist", 1), ("wrist", 2)]
    wait_for(lambda: committed(root, keys), "all five episodes committed", daemon=daemon)
    wait_for(lambda: not any(streams_dir(root).rglob("*.mp4")), "the handoffs removed", daemon=daemon)
    wait_for(lambda: not any(root.glob("images/*/episode-*")), "every episode folder cleaned", daemon=daemon)
    assert daemon.stop() == 0

    verdict = check_frames(root, ledger, final=True)
    assert len(verdict.in_segment) == 6 + 4 * 11 and not verdict.as_png
    rows = rows_by_key(root)
    assert {r["chunk_index"] for key in keys for r in rows[key]} == {0}
    assert len({(r["chunk_index"], r["file_index"]) for key in keys if key[0] == "front" for r in rows[key]}) == 1
    assert all(rows[key][0]["lerobot_stats"] for key in keys)


def test_a_recorder_killed_mid_episode_loses_no_frame_and_the_service_finishes_it(
    tmp_path: Path, daemon_stopper: list[Daemon]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    points = tmp_path / "points"
    points.mkdir()
    hooks = PointHooks(tmp_path / "daemon-points")
    hooks.directory.mkdir()
    daemon = start_daemon(root, **hooks.env)
    daemon_stopper.append(daemon)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")} | {"ROBOVID_TEST_POINTS": str(points)}
    recorder = subprocess.Popen(
        [sys.executable, str(RECORDER), str(root), "cam", "4", str(points)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert recorder.stdout is not None
        lines = iter(recorder.stdout.readline, "")
        assert next((line.strip() for line in lines if line.startswith("ready")), None) == "ready 20"
        folder = stream_dir(root, "cam", 4)
        # what a kill finds: frames 0-7 in segments, 8-12 only in memory and the crash log, 13-19 PNGs
        assert sorted(p.name for p in folder.glob("seg-*.mp4")) == ["seg-000000.mp4", "seg-000001.mp4"]
        assert sorted(p.name for p in folder.glob("raw-*")) == ["raw-000002.rgb", "raw-000003.rgb"]
        pngs = sorted(p.name for p in episode_dir(root, "cam", 4).glob("frame-*.png"))
        assert pngs == [f"frame-{i:06d}.png" for i in range(13, 20)]
        rescans = hooks.passes("service:rescan")
        hooks.wait_passes("service:rescan", rescans + 2, daemon)  # two full rescans with the recorder alive
        assert not (folder / "finished.json").exists() and not rows_by_key(root)  # a live stream is left alone
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
        if recorder.stdout is not None:
            recorder.stdout.close()

    wait_for(lambda: committed(root, [("cam", 4)]), "the killed stream's episode committed", daemon=daemon)
    wait_for(lambda: not folder.exists() and not episode_dir(root, "cam", 4).exists(), "handoff and PNGs cleaned")
    assert daemon.stop() == 0
    assert [e["frames"] for e in daemon.events_named("stream_salvaged")] == [20]
    ledger = Ledger(root)
    ledger.attempted = {FrameId("cam", 4, i) for i in range(20)}
    assert len(check_frames(root, ledger, final=True).in_segment) == 20


@pytest.mark.parametrize(
    "point",
    [
        "streamed:before-assemble",
        "stage:after-intent",
        "streamed:after-append",
        "streamed:after-handoff-removed",
        "streamed:after-commit",
    ],
)
def test_robovid_watch_killed_while_it_takes_a_streamed_episode_commits_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, daemon_stopper: list[Daemon]
) -> None:
    """SIGKILL of the service at each step of a streamed episode (a spilled one), then a restart."""
    root = tmp_path / "root"
    root.mkdir()
    points = tmp_path / "points"
    points.mkdir()
    monkeypatch.setattr(faults, "_POINTS_DIR", str(points))
    ledger = Ledger(root)
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=2, handoff=True, segment_frames=4)
    encoder.start_episode(["cam"], root, episode_index=0)
    frames = fed_frames(ledger, "cam", 0, 12)
    (points / "stream:before-encode.hold").touch()
    encoder.feed_frame("cam", frames[0])
    wait_for(lambda: (points / "stream:before-encode.passed").exists(), "the encoder held")
    for image in frames[1:]:
        encoder.feed_frame("cam", image)
    assert encoder.spilled_frames == {"cam": 9}
    (points / "stream:before-encode.hold").unlink()
    encoder.finish_episode()

    killed = start_daemon(root, ROBOVID_FAULT_POINT=f"{point}:1")
    assert killed.process.wait(timeout=120) == -signal.SIGKILL
    killed.stop()

    daemon = start_daemon(root)
    daemon_stopper.append(daemon)
    wait_for(lambda: committed(root, [("cam", 0)]), "the episode committed after the restart", daemon=daemon)
    wait_for(lambda: not stream_dir(root, "cam", 0).exists(), "the handoff removed", daemon=daemon)
    wait_for(lambda: not episode_dir(root, "cam", 0).exists(), "the PNG tail cleaned", daemon=daemon)
    assert daemon.stop() == 0
    assert len(rows_by_key(root)[("cam", 0)]) == 1
    assert len(check_frames(root, ledger, final=True).in_segment) == 12


def test_prepare_removes_only_the_staging_folders_of_recorders_that_died_starting(tmp_path: Path) -> None:
    """A recorder killed between creating its locked staging folder and renaming it leaves ``.episode-N.*``."""
    from robovid.stream_files import lock_writer
    from robovid_watch.streamed import STAGING_STALE_S, prepare

    camera_dir = streams_dir(tmp_path) / "cam"
    stale, fresh, held = (camera_dir / f".episode-000003.{name}" for name in ("stale", "fresh", "held"))
    for folder in (stale, fresh, held):
        folder.mkdir(parents=True)
        (folder / "writer.lock").touch()
    old = time.time() - STAGING_STALE_S - 5
    for folder in (stale, held):
        os.utime(folder, (old, old))
    fd = lock_writer(held)
    assert fd is not None
    try:
        prepare(tmp_path, ".complete", set())
    finally:
        os.close(fd)
    assert sorted(p.name for p in camera_dir.iterdir()) == sorted([held.name, fresh.name])


def test_salvage_keeps_a_handoff_that_holds_frames_without_its_stream_record(tmp_path: Path) -> None:
    """A handoff without stream.json was taken for one no frame was fed to and deleted with its crash log; an older
    robovid left such handoffs when a full disk failed the stream.json write (tests/test_stream_misuse.py)."""
    from structlog.testing import capture_logs

    from robovid_watch.streamed import prepare

    folder = stream_dir(tmp_path, "cam", 2)
    folder.mkdir(parents=True)
    (folder / "writer.lock").touch()
    (folder / "raw-000000.rgb").write_bytes(bytes(WIDTH * HEIGHT * 3 + 8))
    empty = stream_dir(tmp_path, "cam", 3)  # started, never fed: removed
    empty.mkdir()
    (empty / "writer.lock").touch()

    with capture_logs() as logs:
        prepare(tmp_path, ".complete", set())

    assert sorted(p.name for p in folder.iterdir()) == ["raw-000000.rgb", "writer.lock"]
    assert not empty.exists()
    failed = [e for e in logs if e["event"] == "stream_salvage_failed"]
    assert len(failed) == 1 and "no stream.json" in failed[0]["detail"] and failed[0]["episode"] == 2


def test_a_streamed_episode_is_taken_and_cleaned_with_another_completion_marker(
    tmp_path: Path, daemon_stopper: list[Daemon]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ledger = Ledger(root)
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=64, handoff=True)
    encoder.start_episode(["cam"], root, episode_index=0)
    for image in fed_frames(ledger, "cam", 0, 5):
        encoder.feed_frame("cam", image)
    encoder.finish_episode()
    daemon = start_daemon(root, ROBOVID_COMPLETE_MARKER="DONE")
    daemon_stopper.append(daemon)
    wait_for(lambda: committed(root, [("cam", 0)]), "the episode committed", daemon=daemon)
    wait_for(
        lambda: not episode_dir(root, "cam", 0).exists(), "its folder removed, both markers with it", daemon=daemon
    )
    assert daemon.stop() == 0
    assert not daemon.events_named("episode_failed") and not daemon.events_named("clean_unfinished")
    assert len(check_frames(root, ledger, final=True).in_segment) == 5


RECORD_AND_FINISH = """
import sys
from pathlib import Path
from robovid import RGBEncoderConfig, StreamingVideoEncoder
from robovid.synthetic import render_frame, scene
root, frames = Path(sys.argv[1]), int(sys.argv[2])
encoder = StreamingVideoEncoder(
    fps=30, rgb_encoder=RGBEncoderConfig(vcodec="h264", crf=22, preset="veryfast"), handoff=True, segment_frames=2
)
encoder.start_episode(["cam"], root, episode_index=0)
background = scene(64, 48, 0)
for i in range(frames):
    encoder.feed_frame("cam", render_frame(background, 64, 48, 0, i))
encoder.finish_episode()
"""


def test_a_recorder_killed_in_finish_episode_after_its_short_last_segment_loses_no_frame(
    tmp_path: Path, daemon_stopper: list[Daemon]
) -> None:
    """5 frames in segments of 2: finish_episode publishes the short segment 2 (frame 4), then writes finished.json.
    Killed in between, the handoff's salvage counted 3 full segments (6 frames) and the episode failed for good."""
    root = tmp_path / "root"
    root.mkdir()
    ledger = Ledger(root)
    fed_frames(ledger, "cam", 0, 5)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOVID_")}
    env["ROBOVID_FAULT_POINT"] = "stream:after-publish:3"
    recorder = subprocess.run(
        [sys.executable, "-c", RECORD_AND_FINISH, str(root), "5"], env=env, capture_output=True, text=True, timeout=120
    )
    assert recorder.returncode == -signal.SIGKILL, recorder.stderr[-2000:]
    folder = stream_dir(root, "cam", 0)
    assert [p.name for p in sorted(folder.glob("seg-*.mp4"))] == [f"seg-00000{n}.mp4" for n in range(3)]
    assert not (folder / "finished.json").exists()
    daemon = start_daemon(root)
    daemon_stopper.append(daemon)
    wait_for(
        lambda: committed(root, [("cam", 0)]) or daemon.events_named("episode_failed"),
        "the killed recorder's episode committed (or failed)",
        daemon=daemon,
    )
    assert not daemon.events_named("episode_failed"), daemon.events_named("episode_failed")
    wait_for(lambda: not folder.exists(), "the handoff removed", daemon=daemon)
    assert daemon.stop() == 0
    assert [e["frames"] for e in daemon.events_named("stream_salvaged")] == [5]
    assert len(check_frames(root, ledger, final=True).in_segment) == 5


def test_a_streamed_episode_whose_commit_fails_keeps_its_handoff_until_it_is_committed(
    tmp_path: Path, daemon_stopper: list[Daemon]
) -> None:
    """The handoff was deleted before the commit: a commit that failed (the segment table's folder unusable) and
    stayed failing at the next start, whose recovery takes an uncommitted append back, lost every streamed frame."""
    root = tmp_path / "root"
    root.mkdir()
    ledger = Ledger(root)
    ledger.write_episode("cam", 0)
    daemon = start_daemon(root, ROBOVID_WORKERS="1")
    daemon_stopper.append(daemon)
    wait_for(lambda: committed(root, [("cam", 0)]), "the PNG episode committed", daemon=daemon)
    table = segments_dir(root)
    aside = tmp_path / "segments-aside"
    shutil.move(table, aside)
    table.write_bytes(b"not a folder")  # every commit fails (NotADirectoryError)
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, queue_maxsize=64, handoff=True, segment_frames=4)
    encoder.start_episode(["cam"], root, episode_index=1)
    for image in fed_frames(ledger, "cam", 1, 6):
        encoder.feed_frame("cam", image)
    encoder.finish_episode()
    wait_for(lambda: daemon.events_named("episode_failed"), "the streamed episode's commit failed", daemon=daemon)
    assert daemon.stop() == 0
    restarted = start_daemon(root, ROBOVID_WORKERS="1")  # its recovery cannot commit either
    daemon_stopper.append(restarted)
    wait_for(lambda: restarted.events_named("started"), "the restart started", daemon=restarted)
    assert restarted.stop() == 0
    assert stream_dir(root, "cam", 1).is_dir(), "the streamed frames are gone: handoff deleted, append taken back"
    table.unlink()
    shutil.move(aside, table)
    (episode_dir(root, "cam", 1) / ".complete").touch()  # as for any failed episode: a change retries it
    daemon = start_daemon(root)
    daemon_stopper.append(daemon)
    wait_for(lambda: committed(root, [("cam", 1)]), "the streamed episode committed once retried", daemon=daemon)
    wait_for(lambda: not stream_dir(root, "cam", 1).exists(), "its handoff removed", daemon=daemon)
    assert daemon.stop() == 0
    assert len(check_frames(root, ledger, final=True).in_segment) == 8 + 6


@pytest.mark.parametrize(("name", "content"), [("finished.json", "{}"), ("stream.json", "[]")])
def test_a_handoff_with_a_damaged_record_is_reported_and_the_service_goes_on(
    tmp_path: Path, name: str, content: str, daemon_stopper: list[Daemon]
) -> None:
    """A handoff record that is JSON but not what this version writes (another version's, or damaged): the
    service crashed at every start (KeyError/TypeError in its rescan) and no camera was served."""
    ledger = Ledger(tmp_path)
    ledger.write_episode("cam", 0)
    folder = stream_dir(tmp_path, "cam", 5)
    folder.mkdir(parents=True)
    (folder / name).write_text(content)
    daemon = start_daemon(tmp_path)
    daemon_stopper.append(daemon)
    wait_for(lambda: committed(tmp_path, [("cam", 0)]), "the PNG episode committed", daemon=daemon)
    wait_for(lambda: daemon.events_named("stream_salvage_failed"), "the damaged handoff reported", daemon=daemon)
    assert daemon.stop() == 0
    assert name in daemon.events_named("stream_salvage_failed")[0]["detail"]
    assert (folder / name).read_text() == content  # kept for a person to look at


def test_a_streamed_episode_finished_with_no_frame_is_cleaned_not_retried_forever(
    tmp_path: Path, daemon_stopper: list[Daemon]
) -> None:
    """An episode started and finished with no frame fed (a recorder that aborted a take) has finished.json but no
    stream.json (written at the first frame): robovid-watch retried it every rescan as 'still being streamed'."""
    root = tmp_path / "root"
    root.mkdir()
    ledger = Ledger(root)
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True, segment_frames=4)
    for episode, count in ((0, 0), (1, 1)):
        encoder.start_episode(["front"], root, episode_index=episode)
        for image in fed_frames(ledger, "front", episode, count):
            encoder.feed_frame("front", image)
        encoder.finish_episode()

    daemon = start_daemon(root)
    daemon_stopper.append(daemon)
    wait_for(lambda: committed(root, [("front", 1)]), "the one-frame episode committed", daemon=daemon)
    wait_for(lambda: not stream_dir(root, "front", 0).exists(), "the empty episode's handoff removed", daemon=daemon)
    wait_for(lambda: not episode_dir(root, "front", 0).exists(), "the empty episode's folder removed", daemon=daemon)
    assert daemon.stop() == 0

    assert ("front", 0) not in rows_by_key(root)
    assert not daemon.events_named("episode_changed")
    verdict = check_frames(root, ledger, final=True)
    assert len(verdict.in_segment) == 1 and not verdict.as_png


def test_the_frames_fed_before_the_encoder_thread_failed_are_where_its_error_says_and_robovid_watch_keeps_them(
    tmp_path: Path, daemon_stopper: list[Daemon]
) -> None:
    """An encoder thread that failed (8x8 frames: too small to encode) was reported as 'Encoder thread for front
    crashed: FrameSizeError ...', saying nothing of the frames already fed: they were in the handoff's crash log,
    and robovid-watch salvaged them as PNGs and kept them when it could not encode them either."""
    root = tmp_path / "root"
    root.mkdir()
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True, segment_frames=4)
    encoder.start_episode(["front"], root, episode_index=0)
    tiny = [np.full((8, 8, 3), 40 * i, np.uint8) for i in range(3)]
    encoder.feed_frame("front", tiny[0])
    encoder.feed_frame("front", tiny[1])
    encoder._streams["front"].thread.join(timeout=60)  # it fails at its first frame
    folder, png_dir = stream_dir(root, "front", 0), episode_dir(root, "front", 0)

    with pytest.raises(StreamingError) as crashed:
        encoder.feed_frame("front", tiny[2])
    with pytest.raises(StreamingError) as failed:
        encoder.finish_episode()

    message = str(crashed.value)
    assert "FrameSizeError" in message and "Frame 2 was not fed" in message
    assert f"The 2 frames fed to episode 0 of 'front' are kept in {folder}" in message
    assert "robovid-watch takes them over once finish_episode() has ended the episode" in message
    assert f"PNGs to {png_dir}" in message and "cancel_episode() to delete them" in message
    assert f"kept in {folder}" in str(failed.value) and "robovid-watch takes them over now" in str(failed.value)
    daemon = start_daemon(root)
    daemon_stopper.append(daemon)
    wait_for(lambda: daemon.events_named("episode_failed"), "the salvaged episode reported", daemon=daemon)
    assert daemon.stop() == 0
    assert daemon.events_named("stream_salvaged")[0]["frames"] == 2
    assert daemon.events_named("episode_failed")[0]["error_type"] == "FrameSizeError"
    assert [read_frame_rgb(frame_path(png_dir, i)).tobytes() for i in range(2)] == [f.tobytes() for f in tiny[:2]]


def test_close_with_a_handoff_episode_open_leaves_its_frames_for_robovid_watch_to_commit(
    tmp_path: Path, daemon_stopper: list[Daemon]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ledger = Ledger(root)
    encoder = StreamingVideoEncoder(fps=30, rgb_encoder=H264, handoff=True, segment_frames=4)
    encoder.start_episode(["front", "wrist"], root, episode_index=3)
    for front, wrist in zip(fed_frames(ledger, "front", 3, 10), fed_frames(ledger, "wrist", 3, 10), strict=True):
        encoder.feed_frame("front", front)
        encoder.feed_frame("wrist", wrist)
    encoder.close()  # the recorder shuts down without finishing the episode (LeRobot's close() cancels it)
    encoder.close()  # safe to call again
    for camera in ("front", "wrist"):  # its frames are still on disk, unlocked, not marked finished
        assert (
            any(stream_dir(root, camera, 3).iterdir()) and not (stream_dir(root, camera, 3) / "finished.json").exists()
        )

    daemon = start_daemon(root)
    daemon_stopper.append(daemon)
    wait_for(lambda: committed(root, [("front", 3), ("wrist", 3)]), "the closed episode committed", daemon=daemon)
    wait_for(lambda: not any(streams_dir(root).rglob("*.mp4")), "the handoffs removed", daemon=daemon)
    assert daemon.stop() == 0
    assert sorted(e["frames"] for e in daemon.events_named("stream_salvaged")) == [10, 10]
    verdict = check_frames(root, ledger, final=True)
    assert len(verdict.in_segment) == 2 * 10 and not verdict.as_png
