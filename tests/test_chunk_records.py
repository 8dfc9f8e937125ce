"""Each append records in the chunk file whose samples it appended; rewrites keep the records; decoders ignore them.

Real encodes with burnt-in indices; the records are read back with robovid._records and the files
decoded with PyAV, torchcodec and ffprobe after every kind of write that touches them.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

from conftest import EpisodeVideo
from videocheck import ffprobe_frame_count, index_of_chw, pyav_indices, torchcodec_indices_played_at

from robovid._movie import read_movie
from robovid._records import read_records, sizes_digest
from robovid.append import append_video, recover_chunk, undo_append
from robovid.compact import compact_chunk
from robovid.concat import concatenate_video_files
from robovid.decode import decode_video_frames
from robovid.encoder_config import RGBEncoderConfig
from robovid.reencode import reencode_video

FRAMES = 6
FPS = 30


def _identity(episode: int) -> dict[str, Any]:
    return {
        "episode_index": episode,
        "video_key": "cam",
        "take": 0,
        "num_frames": FRAMES,
        "fps": FPS,
        "min_psnr_db": float("inf"),  # a lossless encode's: JSON's Infinity
    }


def _chunk(tmp_path: Path, episode_video: EpisodeVideo, episodes: list[int], name: str = "chunk.mp4") -> Path:
    chunk = tmp_path / name
    for episode in episodes:
        append_video(chunk, episode_video(episode, FRAMES), identity=_identity(episode))
    return chunk


def _runs(path: Path) -> list[tuple[int, int, int]]:
    """(first frame, frames, episode) of each record, checked against the samples it fingerprints."""
    movie = read_movie(path)
    out = []
    for entry in read_records(movie):
        first, count = entry["first_frame"], entry["num_frames"]
        assert entry["sizes_sha256"] == sizes_digest(movie.table.sizes[first : first + count]), entry
        assert entry["row"]["min_psnr_db"] == float("inf")
        out.append((first, count, entry["row"]["episode_index"]))
    return out


def _expected(episodes: list[int]) -> list[tuple[int, int]]:
    return [(episode, frame) for episode in episodes for frame in range(FRAMES)]


def _check_decoders(path: Path, episodes: list[int]) -> None:
    assert pyav_indices(path) == _expected(episodes)
    assert ffprobe_frame_count(path) == len(episodes) * FRAMES
    seconds = [i / FPS for i in range(len(episodes) * FRAMES)]
    assert torchcodec_indices_played_at(path, seconds) == _expected(episodes)
    for backend in ("pyav", "torchcodec"):
        frames = decode_video_frames(path, seconds, 1e-4, backend)
        assert [index_of_chw(f) for f in frames] == _expected(episodes), backend


def test_every_append_records_its_episode_and_every_decoder_still_reads_every_frame(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    chunk = _chunk(tmp_path, episode_video, [3, 1, 4])
    assert _runs(chunk) == [(0, FRAMES, 3), (FRAMES, FRAMES, 1), (2 * FRAMES, FRAMES, 4)]
    assert [b.type for b in read_movie(chunk).top].count(b"uuid") == 3
    _check_decoders(chunk, [3, 1, 4])


def test_an_append_without_identity_records_nothing(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = tmp_path / "chunk.mp4"
    append_video(chunk, episode_video(0, FRAMES))
    append_video(chunk, episode_video(1, FRAMES))
    assert _runs(chunk) == []


def test_compaction_keeps_every_record_and_the_frames(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = _chunk(tmp_path, episode_video, [0, 1, 2])
    compact_chunk(chunk)
    assert [b.type for b in read_movie(chunk).top] == [b"ftyp", b"mdat", b"uuid", b"moov"]
    assert _runs(chunk) == [(0, FRAMES, 0), (FRAMES, FRAMES, 1), (2 * FRAMES, FRAMES, 2)]
    _check_decoders(chunk, [0, 1, 2])
    append_video(chunk, episode_video(3, FRAMES), identity=_identity(3))  # appending goes on after a compaction
    assert _runs(chunk)[-1] == (3 * FRAMES, FRAMES, 3)
    _check_decoders(chunk, [0, 1, 2, 3])


def test_concatenation_renumbers_each_input_s_records(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    first = _chunk(tmp_path, episode_video, [0, 1], "a.mp4")
    second = _chunk(tmp_path, episode_video, [2], "b.mp4")
    out = tmp_path / "joined.mp4"
    concatenate_video_files([first, second], out)
    assert _runs(out) == [(0, FRAMES, 0), (FRAMES, FRAMES, 1), (2 * FRAMES, FRAMES, 2)]
    _check_decoders(out, [0, 1, 2])


def test_an_undone_append_takes_its_record_back(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = _chunk(tmp_path, episode_video, [0])
    segment = append_video(chunk, episode_video(1, FRAMES), identity=_identity(1))
    undo_append(segment)
    assert _runs(chunk) == [(0, FRAMES, 0)]
    assert [b.type for b in read_movie(chunk).top][-2:] == [b"uuid", b"moov"]
    _check_decoders(chunk, [0])


def test_the_record_of_an_append_cut_before_its_commit_does_not_count(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    chunk = _chunk(tmp_path, episode_video, [0])
    before = read_movie(chunk).moov_box
    append_video(chunk, episode_video(1, FRAMES), identity=_identity(1))
    with open(chunk, "r+b") as f:  # undo the commit write: the file as a kill just before it leaves it
        f.seek(before.offset + 4)
        f.write(b"moov")
    assert _runs(chunk) == [(0, FRAMES, 0)], "a record in the uncommitted tail was counted"
    assert recover_chunk(chunk)
    assert _runs(chunk) == [(0, FRAMES, 0)]
    append_video(chunk, episode_video(2, FRAMES), identity=_identity(2))
    assert _runs(chunk) == [(0, FRAMES, 0), (FRAMES, FRAMES, 2)]
    _check_decoders(chunk, [0, 2])


def test_a_damaged_record_box_is_left_out_and_the_file_still_reads(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = _chunk(tmp_path, episode_video, [0, 1])
    box = next(b for b in read_movie(chunk).top if b.type == b"uuid")
    with open(chunk, "r+b") as f:
        f.seek(box.offset + box.header_size + 16)
        f.write(b"}}}}")
    assert _runs(chunk) == [(FRAMES, FRAMES, 1)]
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(chunk, copy)
    compact_chunk(copy)
    assert _runs(copy) == [(FRAMES, FRAMES, 1)]
    _check_decoders(copy, [0, 1])
    assert struct.unpack(">I", chunk.read_bytes()[:4])[0] > 0


def test_a_reencode_of_a_whole_chunk_carries_its_records_for_the_new_samples(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    chunk = _chunk(tmp_path, episode_video, [0, 1, 2])
    out = tmp_path / "reencoded.mp4"
    reencode_video(chunk, out, RGBEncoderConfig(vcodec="h264", g=2))
    assert read_movie(out).table.sizes.tolist() != read_movie(chunk).table.sizes.tolist(), "not a new encode"
    assert _runs(out) == [(0, FRAMES, 0), (FRAMES, FRAMES, 1), (2 * FRAMES, FRAMES, 2)]
    _check_decoders(out, [0, 1, 2])
    trimmed = tmp_path / "trimmed.mp4"
    reencode_video(chunk, trimmed, RGBEncoderConfig(vcodec="h264", g=2), start_time_s=FRAMES / FPS)
    assert _runs(trimmed) == []
    assert pyav_indices(trimmed) == _expected([1, 2])
