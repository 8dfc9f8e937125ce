"""`robovid convert SRC DEST`: a LeRobot v2.1 archive of per-episode MP4s into chunked files.

Episodes robovid can append are stream-copied (byte for byte: their samples are found
unchanged in DEST); one with another codec setup starts a new DEST file; one with an audio
track is re-encoded and verified. Each row is checked frame by frame (burnt indices).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from daemon_harness import daemon_env
from lerobot_v21 import KEYS, check_converted, video_path, write_archive, write_mp4

from robovid._movie import read_movie
from robovid.decode import decode_video_frames
from robovid.layout import chunk_path
from robovid.metadata import read_segments

FRAMES = 8
FRONT, WRIST = KEYS


def make_archive(root: Path) -> Path:
    """Episodes 0-3; episode 2 of front is h264 (another setup), of wrist has audio; 3 is AV1 again."""
    write_archive(root, {e: FRAMES for e in range(4)})
    for episode in range(4):
        for key in KEYS:
            codec = "libx264" if (episode, key) == (2, FRONT) else "libsvtav1"
            write_mp4(video_path(root, episode, key), episode, FRAMES, codec, audio=(episode, key) == (2, WRIST))
    return root


def convert(src: Path, dest: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "robovid_watch.cli", "convert", str(src), str(dest), *extra]
    return subprocess.run(command, env=daemon_env(dest, **env), capture_output=True, text=True, timeout=300)


def digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_convert_copies_what_it_can_and_reencodes_the_rest(tmp_path: Path) -> None:
    src, dest = make_archive(tmp_path / "src"), tmp_path / "dest"
    before = digests(src)
    done = convert(src, dest)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "7 episode(s) copied, 1 re-encoded, 0 already" in done.stdout
    check_converted(dest, range(4), FRAMES)
    assert digests(src) == before, "SRC was changed"
    rows = {(r["video_key"], r["episode_index"]): r for r in read_segments(dest).to_pylist()}
    assert (
        rows[(FRONT, 2)]["video.codec"] == "h264" and rows[(FRONT, 2)]["file_index"] != rows[(FRONT, 0)]["file_index"]
    )
    # re-encoded with DEST's settings: the service's default codec (ROBOVID_VCODEC, h264), verified
    assert rows[(WRIST, 2)]["video.codec"] == "h264" and rows[(WRIST, 2)]["min_psnr_db"] > 20
    # A copy is byte for byte: episode 1's samples are in DEST unchanged.
    episode = read_movie(video_path(src, 1, FRONT))
    offset, length = episode.sample_runs()[0]
    source_bytes = video_path(src, 1, FRONT).read_bytes()[offset : offset + length]
    chunk = chunk_path(dest, FRONT, rows[(FRONT, 1)]["chunk_index"], rows[(FRONT, 1)]["file_index"])
    assert source_bytes in chunk.read_bytes()

    again = convert(src, dest)
    assert again.returncode == 0 and "0 episode(s) copied, 0 re-encoded, 8 already" in again.stdout
    check_converted(dest, range(4), FRAMES)


def test_an_episode_whose_length_disagrees_is_not_taken(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_archive(src, {0: FRAMES, 1: FRAMES})
    for key in KEYS:
        write_mp4(video_path(src, 0, key), 0, FRAMES)
        write_mp4(video_path(src, 1, key), 1, FRAMES - 2 if key == FRONT else FRAMES)
    done = convert(src, dest)
    assert done.returncode == 1
    assert "NOT CONVERTED" in done.stdout and "holds 6 frames, meta/episodes.jsonl says 8" in done.stdout
    keys = sorted((r["video_key"], r["episode_index"]) for r in read_segments(dest).to_pylist())
    assert keys == [(FRONT, 0), (WRIST, 0), (WRIST, 1)]


@pytest.mark.parametrize("point", ["stage:after-intent:2", "append:before-flip:2", "commit:before-rename:5"])
def test_convert_killed_then_rerun_has_every_episode_once(tmp_path: Path, point: str) -> None:
    src, dest = make_archive(tmp_path / "src"), tmp_path / "dest"
    killed = convert(src, dest, "--workers", "1", ROBOVID_FAULT_POINT=point)
    assert killed.returncode == -signal.SIGKILL, f"{point} never reached: {killed.stderr[-2000:]}"
    again = convert(src, dest)
    assert again.returncode == 0, again.stderr[-3000:]
    check_converted(dest, range(4), FRAMES)


def test_episodes_not_evenly_timed_at_the_archives_fps_land_at_their_rows_timestamps(tmp_path: Path) -> None:
    """A camera that dropped frames (gaps in its MP4's timestamps) and one written at another rate: copied as they
    were, their frames sat off the rows' ``i / fps`` timestamps (FrameTimestampError at LeRobot's 1e-4 s), and the
    gaps changed the chunk file's average rate, so the pyav backend missed frames of the *other* episodes in it."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_archive(src, {0: FRAMES, 1: FRAMES, 2: FRAMES})
    for key in KEYS:
        write_mp4(video_path(src, 0, key), 0, FRAMES, "libx264")
        write_mp4(video_path(src, 1, key), 1, FRAMES, "libx264", pts=[0, 1, 2, 4, 5, 6, 8, 9])
        write_mp4(video_path(src, 2, key), 2, FRAMES, "libx264", rate=15)
    before = digests(src)
    done = convert(src, dest)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "2 episode(s) copied, 4 re-encoded" in done.stdout
    check_converted(dest, range(3), FRAMES)  # every frame at i / fps, on both backends' first and last
    for row in read_segments(dest).to_pylist():
        path = chunk_path(dest, row["video_key"], row["chunk_index"], row["file_index"])
        for backend in ("pyav", "torchcodec"):
            timestamps = [row["from_timestamp"] + i / 30 for i in range(FRAMES)]
            decoded = decode_video_frames(path, timestamps, 1e-4, backend)
            assert decoded.shape[0] == FRAMES, (row["video_key"], row["episode_index"], backend)
    assert digests(src) == before, "SRC was changed"


def test_convert_keeps_only_a_few_reencoded_episodes_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every re-encoded episode's bytes stayed referenced until the whole archive was landed: an archive of
    re-encoded episodes (audio tracks, dropped frames) needed memory for all of them at once."""
    from robovid_watch.config import load_settings
    from robovid_watch.convert import convert_archive

    src, dest = tmp_path / "src", tmp_path / "dest"
    episodes = 8
    write_archive(src, {e: FRAMES for e in range(episodes)})
    for episode in range(episodes):
        for key in KEYS:
            write_mp4(video_path(src, episode, key), episode, FRAMES, "libx264", audio=True)
    for name in [n for n in os.environ if n.startswith("ROBOVID_")]:
        monkeypatch.delenv(name)
    results: list[weakref.ref[object]] = []
    most_alive = 0

    def run_here(fn: Callable[..., object], *args: object) -> object:  # what --ray's runner does, in this process
        nonlocal most_alive
        result = fn(*args)
        results.append(weakref.ref(result))
        most_alive = max(most_alive, sum(ref() is not None for ref in results))
        return result

    dest.mkdir()
    report = convert_archive(src, load_settings(root=dest, workers=2), run_here)
    assert (report.reencoded, report.failed) == (2 * episodes, [])
    check_converted(dest, range(episodes), FRAMES)
    assert most_alive <= 2 * 2 + 2, f"{most_alive} re-encoded episodes held in memory at once"


def test_an_episode_mp4_cut_short_is_named_and_the_others_are_converted(tmp_path: Path) -> None:
    """An MP4 whose movie box is at its start (faststart) survives a partial copy with its sample table whole:
    robovid copied it, read past its end, and convert stopped with an EOFError traceback at that episode (every
    rerun too), leaving the rest of the archive unconverted."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_archive(src, {0: FRAMES, 1: FRAMES, 2: FRAMES})
    for episode in range(3):
        for key in KEYS:
            path = write_mp4(video_path(src, episode, key), episode, FRAMES, "libx264")
            if (episode, key) == (1, FRONT):
                with av.open(str(path)) as source:
                    packets = [p for p in source.demux(video=0) if p.dts is not None]
                    moved = path.with_name("faststart.mp4")
                    with av.open(str(moved), "w", options={"movflags": "faststart"}) as out:
                        stream = out.add_stream_from_template(source.streams.video[0])
                        for packet in packets:
                            packet.stream = stream
                            out.mux(packet)
                data = moved.read_bytes()
                moved.unlink()
                assert data.index(b"moov") < data.index(b"mdat")
                path.write_bytes(data[:-300])  # the last samples are missing, the movie box says they are there
    done = convert(src, dest)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "NOT CONVERTED" in done.stdout and "episode_000001.mp4" in done.stdout and "cut short" in done.stdout
    keys = sorted((r["video_key"], r["episode_index"]) for r in read_segments(dest).to_pylist())
    assert keys == sorted([(k, e) for k in KEYS for e in range(3) if (e, k) != (1, FRONT)])
