"""Joined files report their exact duration, so the next episode starts exactly where LeRobot puts it.

LeRobot's writer and ``aggregate_datasets`` place an episode that joins a file at the file's
duration before the join (``get_video_duration_in_s``), then decode it there with a 1e-4 s
tolerance. robovid used to write the movie and edit-list durations of joined files in
milliseconds, rounded to nearest: FFmpeg's reader then took a 40-frame file at 30 fps for
1.3330078 s, and 16 of 49 episodes started 0.33 ms early (``FrameTimestampError``). Now every
box FFmpeg-based readers use (``mvhd``, ``tkhd``, ``mdhd``, ``elst``) holds the exact duration.

Each case joins episodes of varied lengths (the (episode, frame) index burnt into every
frame), records each one's ``from_timestamp`` the way LeRobot does, and decodes every frame
of every episode at ``from_timestamp + i / fps`` (LeRobot's query) at the reference's default
tolerance: with robovid on both backends, and with the reference reader's own arithmetic
(torchcodec approximate mode, frame ``round(ts * average_fps)``, ``|pts - ts| < tol``).
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from videocheck import require_torchcodec

from robovid import (
    append_video,
    compact_chunk,
    concatenate_video_files,
    decode_video_frames,
    get_video_duration_in_s,
)
from robovid._movie import read_movie, video_trak
from robovid.encode import encode_frames
from robovid.settings import EncoderSettings
from robovid.synthetic import read_index, write_episode

TOLERANCE_S = 1e-4
WIDTH, HEIGHT = 64, 48


def episode_lengths(count: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(7, 31, size=count).tolist()


def encode_episodes(root: Path, fps: float | Fraction, lengths: list[int]) -> list[Path]:
    videos = []
    for episode, frames in enumerate(lengths):
        paths = write_episode(root / f"png-{episode}", episode, frames, WIDTH, HEIGHT, seed=episode % 3)
        video = root / f"episode-{episode}.mp4"
        encode_frames(paths, video, fps, EncoderSettings())
        shutil.rmtree(paths[0].parent)
        videos.append(video)
    return videos


def join_by_concat(chunk: Path, episode: Path) -> None:
    if chunk.exists():
        concatenate_video_files([chunk, episode], chunk)
    else:
        shutil.copyfile(episode, chunk)


def join_by_append(chunk: Path, episode: Path) -> None:
    append_video(chunk, episode)


def join_by_append_then_compact(chunk: Path, episode: Path) -> None:
    append_video(chunk, episode)
    compact_chunk(chunk)


JOINS: dict[str, Callable[[Path, Path], None]] = {
    "concat": join_by_concat,
    "append": join_by_append,
    "append+compact": join_by_append_then_compact,
}


def join_like_lerobot(chunk: Path, videos: list[Path], join: Callable[[Path, Path], None]) -> list[float]:
    """Join every episode; each one's from_timestamp is the file's duration before it joined."""
    starts = []
    for video in videos:
        starts.append(get_video_duration_in_s(chunk) if chunk.exists() else 0.0)
        join(chunk, video)
    return starts


def box_durations(path: Path) -> dict[str, Fraction]:
    """Duration in seconds that each of mvhd, tkhd, mdhd and elst states."""
    movie = read_movie(path)
    trak = video_trak(movie.moov, str(path))
    mdia = trak.need(b"mdia", "")
    movie_scale, media_scale = movie.movie_timescale, movie.media_timescale
    elst = trak.need(b"edts", "").need(b"elst", "").payload
    return {
        "mvhd": Fraction(_duration(movie.moov.need(b"mvhd", "").payload, 16, 24), movie_scale),
        "tkhd": Fraction(_duration(trak.need(b"tkhd", "").payload, 20, 28), movie_scale),
        "mdhd": Fraction(_duration(mdia.need(b"mdhd", "").payload, 16, 24), media_scale),
        "elst": Fraction(_duration(elst, 8, 8), movie_scale),
    }


def _duration(payload: bytes, offset_v0: int, offset_v1: int) -> int:
    if payload[0] == 1:
        return int(struct.unpack_from(">Q", payload, offset_v1)[0])
    return int(struct.unpack_from(">I", payload, offset_v0)[0])


def lerobot_queries(starts: list[float], lengths: list[int], fps: float | Fraction) -> list[float]:
    """Every frame's timestamp as LeRobot queries it: the episode's from_timestamp + frame_index / fps."""
    return [start + i / float(fps) for start, n in zip(starts, lengths, strict=True) for i in range(n)]


def every_frame(lengths: list[int]) -> list[tuple[int, int]]:
    return [(episode, i) for episode, n in enumerate(lengths) for i in range(n)]


def frames_identified(chunk: Path, timestamps: list[float], backend: str) -> list[tuple[int, int]]:
    frames = decode_video_frames(chunk, timestamps, TOLERANCE_S, backend=backend)
    images = np.rint(np.asarray(frames).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return [read_index(image) for image in images]


def reference_arithmetic_misses(chunk: Path, timestamps: list[float]) -> list[tuple[float, float]]:
    """(query, loaded) pairs the reference torchcodec reader would reject at 1e-4 s."""
    decoder = require_torchcodec().VideoDecoder(str(chunk), seek_mode="approximate")
    indices = [round(ts * decoder.metadata.average_fps) for ts in timestamps]
    loaded = decoder.get_frames_at(indices=indices).pts_seconds.tolist()
    return [(ts, pts) for ts, pts in zip(timestamps, loaded, strict=True) if not abs(pts - ts) < TOLERANCE_S]


def check_every_episode_decodes(chunk: Path, starts: list[float], lengths: list[int], fps: float | Fraction) -> None:
    """Both backends return each episode's own frames at LeRobot's queries; the reference's arithmetic agrees."""
    queries = lerobot_queries(starts, lengths, fps)
    assert frames_identified(chunk, queries, "pyav") == every_frame(lengths)
    require_torchcodec()
    assert frames_identified(chunk, queries, "torchcodec") == every_frame(lengths)
    assert reference_arithmetic_misses(chunk, queries) == []


@pytest.fixture(scope="module")
def episodes_30fps(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[int]]:
    lengths = episode_lengths(49, seed=3177)
    return encode_episodes(tmp_path_factory.mktemp("episodes-30fps"), 30, lengths), lengths


@pytest.mark.parametrize("how", list(JOINS))
def test_49_joined_episodes_each_start_at_the_previous_file_duration(
    tmp_path: Path, episodes_30fps: tuple[list[Path], list[int]], how: str
) -> None:
    videos, lengths = episodes_30fps
    chunk = tmp_path / "file-000.mp4"
    starts = join_like_lerobot(chunk, videos, JOINS[how])

    check_every_episode_decodes(chunk, starts, lengths, 30)
    exact = [Fraction(sum(lengths[:i]), 30) for i in range(len(lengths))]
    assert starts == [float(t) for t in exact]
    assert get_video_duration_in_s(chunk) == float(Fraction(sum(lengths), 30))
    assert set(box_durations(chunk).values()) == {Fraction(sum(lengths), 30)}


@pytest.mark.parametrize("how", list(JOINS))
def test_23_and_17_frames_at_30_fps_join_to_exactly_40_thirtieths(tmp_path: Path, how: str) -> None:
    """The issue's case: 1.3333333 s (what the reference's own concat reports), not 1.3330078 s."""
    lengths = [23, 17]
    videos = encode_episodes(tmp_path / "episodes", 30, lengths)
    chunk = tmp_path / "file-000.mp4"
    starts = join_like_lerobot(chunk, videos, JOINS[how])

    assert starts == [0.0, 23 / 30]
    assert get_video_duration_in_s(chunk) == 40 / 30
    assert set(box_durations(chunk).values()) == {Fraction(40, 30)}
    check_every_episode_decodes(chunk, starts, lengths, 30)


@pytest.mark.parametrize("fps", [29.97, 59.94, Fraction(30000, 1001)], ids=["29.97", "59.94", "30000/1001"])
@pytest.mark.parametrize("how", ["concat", "append+compact"])
def test_joined_durations_are_exact_at_fractional_frame_rates(tmp_path: Path, fps: float | Fraction, how: str) -> None:
    lengths = episode_lengths(9, seed=int(float(fps) * 100))
    videos = encode_episodes(tmp_path / "episodes", fps, lengths)
    chunk = tmp_path / "file-000.mp4"
    starts = join_like_lerobot(chunk, videos, JOINS[how])

    check_every_episode_decodes(chunk, starts, lengths, fps)
    rate = Fraction(str(fps)) if isinstance(fps, float) else fps
    assert set(box_durations(chunk).values()) == {sum(lengths) / rate}
    assert starts == [float(sum(lengths[:i]) / rate) for i in range(len(lengths))]


def test_a_single_encoded_episode_already_reports_its_exact_duration(
    episodes_30fps: tuple[list[Path], list[int]],
) -> None:
    """FFmpeg's own muxer rounds the movie duration up, and its reader clamps to the media: exact already."""
    videos, lengths = episodes_30fps
    assert get_video_duration_in_s(videos[0]) == float(Fraction(lengths[0], 30))
    assert box_durations(videos[0])["mdhd"] == Fraction(lengths[0], 30)
