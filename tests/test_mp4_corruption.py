"""A damaged chunk file is reported as VideoFormatError, never a numpy error or a huge allocation."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from conftest import EpisodeVideo

from robovid._movie import read_movie
from robovid.append import append_video
from robovid.errors import VideoFormatError


def _chunk(tmp_path: Path, episode_video: EpisodeVideo) -> tuple[bytes, int, int]:
    chunk = tmp_path / "chunk.mp4"
    for episode in range(3):
        append_video(chunk, episode_video(episode))
    data = chunk.read_bytes()
    movie = read_movie(chunk)
    return data, movie.moov_box.offset, movie.moov_box.end


def test_every_single_byte_overwrite_of_the_movie_box_reads_or_raises_video_format_error(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    data, start, end = _chunk(tmp_path, episode_video)
    rng = random.Random(7)
    damaged = tmp_path / "damaged.mp4"
    outcomes = {"read": 0, "rejected": 0}
    for _ in range(1500):
        mutated = bytearray(data)
        position = rng.randrange(start, end)
        mutated[position : position + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", rng.randbytes(4)])
        damaged.write_bytes(bytes(mutated))
        try:
            read_movie(damaged)
            outcomes["read"] += 1
        except VideoFormatError:
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 100 and outcomes["read"] > 100, outcomes


@pytest.mark.parametrize("box", [b"stts", b"stsz", b"stco", b"stsc", b"stss"])
def test_an_absurd_entry_count_is_rejected_without_allocating_it(
    tmp_path: Path, episode_video: EpisodeVideo, box: bytes
) -> None:
    data, start, end = _chunk(tmp_path, episode_video)
    position = data.index(box, start, end) + 4  # the full-box payload: version/flags, then the count
    offset = 8 if box == b"stsz" else 4  # stsz: sample_size, then sample_count
    mutated = bytearray(data)
    struct.pack_into(">I", mutated, position + offset, 0xFFFFFFFF)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(mutated))
    with pytest.raises(VideoFormatError):
        read_movie(damaged)
