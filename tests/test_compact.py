"""robovid.compact: a finished chunk file rewritten without the dead movie boxes appends left.

Real chunks built by appending real encoded episodes; every decoded frame is identified by
the (episode, frame) index burnt into it, so "the same video" is checked frame by frame.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import EpisodeVideo
from daemon_harness import check_invariants, finish_and_check, png_digest, record, run_daemon
from videocheck import pyav_indices, sha256, temp_leftovers, torchcodec_indices_at

from robovid._movie import read_movie
from robovid.append import VideoSegment, append_video, read_segment
from robovid.compact import chunk_space, compact_chunk
from robovid_watch.chunks import COMPACT_ABOVE

FRAMES = 6
JOIN_TIMEOUT_S = 60


def _chunk(path: Path, episode_video: EpisodeVideo, sources: list[int]) -> list[VideoSegment]:
    return [append_video(path, episode_video(source)) for source in sources]


def _indices(sources: list[int]) -> list[tuple[int, int]]:
    return [(source, frame) for source in sources for frame in range(FRAMES)]


def test_compaction_frees_the_dead_space_and_keeps_every_frame_and_timestamp(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    chunk = tmp_path / "file-000.mp4"
    sources = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    segments = _chunk(chunk, episode_video, sources)
    before = chunk_space(chunk)
    assert before.dead_bytes > 0

    reported = compact_chunk(chunk)

    after = chunk_space(chunk)
    assert reported == before
    assert after.dead_bytes == 0
    assert after.file_bytes <= before.file_bytes - before.dead_bytes
    assert [b.type for b in read_movie(chunk).top] == [b"ftyp", b"mdat", b"moov"]
    assert pyav_indices(chunk) == _indices(sources)
    for k, segment in enumerate(segments):
        assert read_segment(chunk, segment.first_frame, segment.num_frames) == VideoSegment(
            chunk, segment.from_timestamp, segment.to_timestamp, segment.first_frame, segment.num_frames
        ), f"segment {k}"
    header_frames, found = torchcodec_indices_at(chunk, [0, FRAMES * 5, len(sources) * FRAMES - 1])
    assert header_frames == len(sources) * FRAMES
    assert found == [(0, 0), (0, 0), (4, FRAMES - 1)]
    assert temp_leftovers(tmp_path) == []


def test_a_compacted_chunk_takes_further_appends(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = tmp_path / "file-000.mp4"
    _chunk(chunk, episode_video, [0, 1, 2])
    compact_chunk(chunk)
    segment = append_video(chunk, episode_video(3))
    assert segment.first_frame == 3 * FRAMES
    assert pyav_indices(chunk) == _indices([0, 1, 2, 3])


def test_a_kill_before_the_rename_leaves_the_original_untouched(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = tmp_path / "file-000.mp4"
    _chunk(chunk, episode_video, [0, 1, 2])
    digest = sha256(chunk)
    env = {"ROBOVID_FAULT_POINT": "compact:before-rename:1", "PATH": "/usr/bin:/bin"}
    code = f"from robovid.compact import compact_chunk; compact_chunk({str(chunk)!r})"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr
    assert sha256(chunk) == digest
    assert len(temp_leftovers(tmp_path)) == 1  # the daemon removes these at start
    assert pyav_indices(chunk) == _indices([0, 1, 2])


def test_an_append_waiting_while_the_file_is_replaced_lands_in_the_new_file(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    """A compaction renames a new file over the chunk; an appender that opened the old one must not write there."""
    chunk = tmp_path / "file-000.mp4"
    _chunk(chunk, episode_video, [0, 1])
    result: list[VideoSegment] = []
    with open(chunk, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # as compact_chunk does while it copies
        appender = threading.Thread(target=lambda: result.append(append_video(chunk, episode_video(2))))
        appender.start()
        appender.join(timeout=0.5)
        assert appender.is_alive()
        copy = tmp_path / "copy.mp4"
        shutil.copyfile(chunk, copy)
        compact_chunk(copy)
        copy.replace(chunk)  # the compaction's rename, while the appender waits on the old file
    appender.join(timeout=JOIN_TIMEOUT_S)
    assert not appender.is_alive()
    assert result[0].first_frame == 2 * FRAMES
    assert pyav_indices(chunk) == _indices([0, 1, 2])


def test_the_service_compacts_each_file_it_moves_on_from(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["cam"], range(7))
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    # 16 kB files hold about 3 of these episodes as libsvtav1 encodes them (~3 kB of samples and a ~1.5 kB
    # identity record each; h264's are smaller: 7 fit in 2 files): their 2 old movie boxes are > 10% of the file
    settings = {"ROBOVID_VCODEC": "libsvtav1", "ROBOVID_VIDEO_FILE_SIZE_MB": "0.016", "ROBOVID_WORKERS": "1"}
    daemon = finish_and_check(tmp_path, episodes, originals, **settings)
    files = sorted((tmp_path / "videos" / "cam").glob("chunk-*/file-*.mp4"))
    compacted = {Path(e["chunk"]) for e in daemon.events_named("chunk_compacted")}
    assert len(files) >= 3
    assert compacted and compacted <= set(files[:-1]), "finished files only, never the one being appended to"
    assert all(chunk_space(f).dead_bytes == 0 for f in compacted)
    assert all(chunk_space(f).dead_share <= COMPACT_ABOVE for f in files[:-1])


@pytest.mark.parametrize("nothing_to_gain", ["one episode", "no dead space"])
def test_compaction_of_a_file_without_dead_space_changes_nothing_readable(
    tmp_path: Path, episode_video: EpisodeVideo, nothing_to_gain: str
) -> None:
    chunk = tmp_path / "file-000.mp4"
    _chunk(chunk, episode_video, [0] if nothing_to_gain == "one episode" else [0, 1])
    if nothing_to_gain == "no dead space":
        compact_chunk(chunk)
    before = chunk_space(chunk)
    assert compact_chunk(chunk).dead_bytes == 0
    assert chunk_space(chunk) == before
    assert pyav_indices(chunk) == _indices([0] if nothing_to_gain == "one episode" else [0, 1])


def test_the_service_killed_mid_compaction_loses_nothing_and_compacts_after_the_restart(tmp_path: Path) -> None:
    episodes = record(tmp_path, ["cam"], range(7))
    originals = {e: png_digest(tmp_path, e) or "" for e in episodes}
    settings = {"ROBOVID_VIDEO_FILE_SIZE_MB": "0.012", "ROBOVID_WORKERS": "1"}
    killed = run_daemon(tmp_path, timeout=120, ROBOVID_FAULT_POINT="compact:before-rename:1", **settings)
    assert killed.returncode == -9, f"the compaction was never reached: {killed.stderr[-2000:]}"
    assert len(temp_leftovers(next((tmp_path / "videos" / "cam").glob("chunk-*")))) == 1
    check_invariants(tmp_path, episodes, originals, final=False)
    daemon = finish_and_check(tmp_path, episodes, originals, **settings)
    assert daemon.events_named("chunk_compacted")
