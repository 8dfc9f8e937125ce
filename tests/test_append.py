"""robovid.append: episodes appended in place to a chunk MP4, readable by every decoder after each append.

Every chunk here is built from real encoded episodes; every decoded frame is identified
by the (episode, frame) index burnt into it. Crashes are simulated with the bytes
append_video really wrote: the commit (old ``moov`` renamed to ``free``) is undone, or
the file is cut inside the new data, as a power cut would leave it.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import struct
import subprocess
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import EpisodeVideo
from videocheck import (
    ffprobe_frame_count,
    index_of_chw,
    pyav_frames,
    pyav_indices,
    pyav_packet_dts,
    require_torchcodec,
    sha256,
    temp_leftovers,
    torchcodec_indices_at,
    torchcodec_indices_played_at,
)

from robovid._movie import read_movie
from robovid.append import (
    VideoSegment,
    _live_movies,
    append_video,
    count_frames,
    read_segment,
    recover_chunk,
    undo_append,
)
from robovid.errors import (
    MismatchedVideosError,
    TruncatedVideoError,
    UnevenFrameTimingError,
    VideoFormatError,
)
from robovid.probe import get_video_info
from robovid.reencode import reencode_video
from robovid.settings import EncoderSettings
from robovid.synthetic import read_index

FPS = 30
FRAMES = 6
SOURCES = 5  # episodes cycled into long chunks; neighbours always come from different sources
TOLERANCE_S = 1e-4
JOIN_TIMEOUT_S = 60


def expected_indices(sources: list[int], num_frames: int = FRAMES) -> list[tuple[int, int]]:
    return [(source, frame) for source in sources for frame in range(num_frames)]


def assert_consecutive(segments: list[VideoSegment], num_frames: int = FRAMES) -> None:
    """Segment k spans exactly [k * frames / fps, (k + 1) * frames / fps): no float drift."""
    for k, segment in enumerate(segments):
        assert segment.from_timestamp == k * num_frames / FPS, f"segment {k}"
        assert segment.to_timestamp == (k + 1) * num_frames / FPS, f"segment {k}"
        assert segment.first_frame == k * num_frames
        assert segment.num_frames == num_frames
        if k:
            assert segment.from_timestamp == segments[k - 1].to_timestamp


def assert_every_reader_sees(chunk: Path, sources: list[int], num_frames: int = FRAMES) -> None:
    """PyAV (full decode), ffprobe -count_frames and torchcodec (approximate) agree on the chunk."""
    expected = expected_indices(sources, num_frames)
    assert count_frames(chunk) == len(expected)
    assert pyav_indices(chunk) == expected
    assert ffprobe_frame_count(chunk) == len(expected)
    boundaries = sorted({i for k in range(len(sources)) for i in (k * num_frames, (k + 1) * num_frames - 1)})
    header_frames, found = torchcodec_indices_at(chunk, boundaries)
    assert header_frames == len(expected)
    assert found == [expected[i] for i in boundaries]
    starts = [k * num_frames / FPS for k in range(len(sources))]
    assert torchcodec_indices_played_at(chunk, starts) == [(s, 0) for s in sources]


def build_chunk(chunk: Path, episode_video: EpisodeVideo, sources: list[int]) -> list[VideoSegment]:
    return [append_video(chunk, episode_video(source)) for source in sources]


def test_first_append_creates_the_chunk_starting_at_zero(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    episode = episode_video(0)
    chunk = tmp_path / "chunks" / "file-000.mp4"

    segment = append_video(chunk, episode)

    assert segment == VideoSegment(chunk, 0.0, FRAMES / FPS, 0, FRAMES, chunk.stat().st_size)
    assert_every_reader_sees(chunk, [0])
    assert temp_leftovers(chunk.parent) == []


def test_each_append_lands_right_after_the_previous_one_and_every_reader_sees_it(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    chunk = tmp_path / "chunk.mp4"
    sources: list[int] = []
    segments: list[VideoSegment] = []
    for k in range(5):
        source = k % 3
        episode = episode_video(source)
        # str and Path are both accepted
        segments.append(append_video(str(chunk), str(episode)) if k % 2 else append_video(chunk, episode))
        sources.append(source)
        assert_consecutive(segments)
        assert_every_reader_sees(chunk, sources)
    for segment in segments:
        assert read_segment(chunk, segment.first_frame, segment.num_frames) == VideoSegment(
            Path(chunk), segment.from_timestamp, segment.to_timestamp, segment.first_frame, segment.num_frames
        )


def decode_with_robovid(chunk: Path, timestamps: list[float], backend: str) -> list[tuple[int, int]]:
    from robovid.decode import decode_video_frames

    frames = decode_video_frames(chunk, timestamps, TOLERANCE_S, backend=backend)
    assert tuple(frames.shape) == (len(timestamps), 3, 48, 64)
    return [index_of_chw(frame) for frame in frames]


def pyav_frames_at(chunk: Path, timestamps: list[float]) -> list[tuple[int, int]]:
    """PyAV, directly: the frame whose presentation time is within the tolerance of each timestamp."""
    import av

    with av.open(str(chunk)) as container:
        decoded = [(float(f.time), read_index(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)]
    found = []
    for ts in timestamps:
        time_s, index = min(decoded, key=lambda item: abs(item[0] - ts))
        assert abs(time_s - ts) <= TOLERANCE_S, f"no frame within {TOLERANCE_S} s of {ts}"
        found.append(index)
    return found


def torchcodec_frames_at(chunk: Path, timestamps: list[float]) -> list[tuple[int, int]]:
    """torchcodec, directly (approximate mode), as the reference queries it: frame round(ts * fps), pts within tolerance."""
    decoders = require_torchcodec()
    decoder = decoders.VideoDecoder(str(chunk), seek_mode="approximate")
    batch = decoder.get_frames_at([round(ts * decoder.metadata.average_fps) for ts in timestamps])
    for ts, pts in zip(timestamps, batch.pts_seconds.tolist(), strict=True):
        assert abs(pts - ts) <= TOLERANCE_S, f"frame at {pts} s returned for {ts} s"
    return [index_of_chw(frame) for frame in batch.data]


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_200_appended_episodes_each_decode_exactly_at_their_first_and_last_frame(
    tmp_path: Path, episode_video: EpisodeVideo, backend: str
) -> None:
    if backend == "torchcodec":
        require_torchcodec()
    chunk = tmp_path / "chunk.mp4"
    sources = [k % SOURCES for k in range(205)]
    segments = build_chunk(chunk, episode_video, sources)

    assert_consecutive(segments)
    assert count_frames(chunk) == len(sources) * FRAMES
    timestamps = [t for s in segments for t in (s.from_timestamp, s.from_timestamp + (FRAMES - 1) / FPS)]
    expected = [index for source in sources for index in ((source, 0), (source, FRAMES - 1))]
    direct = torchcodec_frames_at if backend == "torchcodec" else pyav_frames_at
    assert direct(chunk, timestamps) == expected
    found = [
        index
        for s in segments
        for index in decode_with_robovid(chunk, [s.from_timestamp, s.from_timestamp + (FRAMES - 1) / FPS], backend)
    ]
    assert found == expected
    if backend == "pyav":
        assert ffprobe_frame_count(chunk) == len(sources) * FRAMES


def test_an_append_writes_only_the_episode_samples_and_one_moov(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    episodes = [episode_video(e, num_frames=30, width=128, height=96) for e in range(2)]
    chunk = tmp_path / "chunk.mp4"
    append_video(chunk, episodes[0])
    for k in range(1, 50):
        episode = episodes[k % 2]
        before = chunk.read_bytes()
        old_moov = read_movie(chunk).moov_box

        segment = append_video(chunk, episode)

        after = chunk.read_bytes()
        assert segment.bytes_written <= 2 * episode.stat().st_size, f"append {k + 1}"
        assert len(after) == len(before) + segment.bytes_written - 4  # the commit rewrites 4 bytes in place
        flip = slice(old_moov.offset + 4, old_moov.offset + 8)
        assert after[flip] == b"free"
        assert after[: flip.start] == before[: flip.start]  # old samples untouched
        assert after[flip.stop : len(before)] == before[flip.stop :]
    samples_bytes = int(read_movie(episodes[1]).table.sizes.sum())
    moov_bytes = read_movie(chunk).moov_box.size
    mdat_header_and_commit_bytes = 8 + 4
    assert segment.bytes_written <= samples_bytes + moov_bytes + mdat_header_and_commit_bytes
    assert count_frames(chunk) == 50 * 30


def append_without_commit(chunk: Path, episode: Path) -> tuple[bytes, bytes]:
    """Leave ``chunk`` as a crash just before the commit would: new mdat and moov written, old moov live.

    Runs the real append, then undoes its commit (the old moov's type, renamed to
    ``free``, is set back to ``moov``). Returns the bytes before and the torn file.
    """
    before = chunk.read_bytes()
    old_moov = read_movie(chunk).moov_box
    append_video(chunk, episode)
    torn = bytearray(chunk.read_bytes())
    flip = slice(old_moov.offset + 4, old_moov.offset + 8)
    assert torn[flip] == b"free"
    torn[flip] = b"moov"
    assert torn[: len(before)] == before
    chunk.write_bytes(torn)
    return before, bytes(torn)


def cut_points(before: bytes, torn: bytes) -> dict[str, int]:
    """Where a power cut may leave the file: inside the new mdat's header, its data, or the new moov."""
    new_moov_offset = torn.index(b"moov", len(before)) - 4
    return {
        "in the mdat header": len(before) + 4,
        "in the sample data": (len(before) + new_moov_offset) // 2,
        "in the new moov": new_moov_offset + 40,
        "before the commit": len(torn),
    }


@pytest.mark.parametrize("cut", ["in the mdat header", "in the sample data", "in the new moov", "before the commit"])
def test_a_crash_mid_append_leaves_the_old_content_for_every_reader_and_is_dropped(
    tmp_path: Path, episode_video: EpisodeVideo, cut: str
) -> None:
    chunk = tmp_path / "chunk.mp4"
    build_chunk(chunk, episode_video, [0, 1])
    before, torn = append_without_commit(chunk, episode_video(2))
    with open(chunk, "r+b") as f:
        f.truncate(cut_points(before, torn)[cut])
    assert chunk.stat().st_size > len(before)

    assert_every_reader_sees(chunk, [0, 1])
    assert recover_chunk(chunk) is True
    assert chunk.read_bytes() == before
    assert recover_chunk(chunk) is False
    assert chunk.read_bytes() == before


@pytest.mark.parametrize("cut", ["in the sample data", "before the commit"])
def test_the_next_append_after_a_crash_drops_the_tail_and_lands_right(
    tmp_path: Path, episode_video: EpisodeVideo, cut: str
) -> None:
    chunk = tmp_path / "chunk.mp4"
    segments = build_chunk(chunk, episode_video, [0, 1])
    before, torn = append_without_commit(chunk, episode_video(2))
    with open(chunk, "r+b") as f:
        f.truncate(cut_points(before, torn)[cut])

    segments.append(append_video(chunk, episode_video(3)))

    assert_consecutive(segments)
    assert chunk.stat().st_size == len(before) + segments[-1].bytes_written - 4
    assert_every_reader_sees(chunk, [0, 1, 3])


def test_recover_on_a_clean_chunk_changes_nothing(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = tmp_path / "chunk.mp4"
    build_chunk(chunk, episode_video, [0, 1])
    digest = sha256(chunk)
    assert recover_chunk(chunk) is False
    assert sha256(chunk) == digest


MISMATCHES = {
    "codec": {"vcodec": "h264"},
    "size": {"width": 96, "height": 64},
    "fps": {"fps": 15},
}


@pytest.mark.parametrize("differs_in", list(MISMATCHES))
def test_appending_a_mismatched_episode_raises_and_leaves_the_chunk_byte_identical(
    tmp_path: Path, episode_video: EpisodeVideo, differs_in: str
) -> None:
    chunk = tmp_path / "chunk.mp4"
    build_chunk(chunk, episode_video, [0, 1])
    digest = sha256(chunk)
    other = episode_video(2, **MISMATCHES[differs_in])

    with pytest.raises(MismatchedVideosError) as error:
        append_video(chunk, other)

    assert str(other) in str(error.value)
    assert sha256(chunk) == digest
    assert temp_leftovers(tmp_path) == []


def remux(source: Path, target: Path, faststart: bool = False, frame_slots: list[int] | None = None) -> Path:
    """``source``'s packets (same codec setup) into ``target`` with PyAV: moov first (``faststart``), and/or frame
    ``i`` at time ``frame_slots[i]`` frame periods (its pts and dts set per frame, so durations can differ)."""
    with (
        av.open(str(source)) as src,
        av.open(str(target), "w", options={"movflags": "faststart"} if faststart else {}) as out,
    ):
        stream = out.add_stream_from_template(src.streams.video[0])
        packets = [p for p in src.demux(video=0) if p.dts is not None]
        period = int(packets[1].pts - packets[0].pts)
        for i, packet in enumerate(packets):
            if frame_slots is not None:
                packet.pts = packet.dts = frame_slots[i] * period
                packet.duration = period
            packet.stream = stream
            out.mux(packet)
    return target


def test_appending_an_episode_with_uneven_frame_timing_is_refused_before_anything_is_written(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    """Frame 2 lasts two frame periods (frame 3 comes late): the same codec setup, frame size and typical frame
    duration as the chunk, so nothing else tells it apart; appended, it broke every later frame's timestamps."""
    chunk = tmp_path / "chunk.mp4"
    for source in (0, 1):
        append_video(chunk, episode_video(source, vcodec="h264"))
    digest = sha256(chunk)
    uneven = remux(episode_video(2, vcodec="h264"), tmp_path / "uneven.mp4", frame_slots=[0, 1, 2, 4, 5, 6])
    assert len(set(np.diff(pyav_packet_dts(uneven)).tolist())) == 2, "the test file is not uneven"

    with pytest.raises(UnevenFrameTimingError) as error:
        append_video(chunk, uneven)
    with pytest.raises(UnevenFrameTimingError):
        append_video(tmp_path / "new-chunk.mp4", uneven)  # nor does it start a chunk file

    message = str(error.value)
    assert str(uneven) in message and "constant frame rate" in message and "reencode_video" in message
    assert sha256(chunk) == digest and not (tmp_path / "new-chunk.mp4").exists()
    assert temp_leftovers(tmp_path) == []
    fixed = tmp_path / "fixed.mp4"
    reencode_video(uneven, fixed)  # what the message says to do: then the episode appends
    assert append_video(tmp_path / "fixed-chunk.mp4", fixed).num_frames == FRAMES


def test_appending_an_episode_cut_short_names_it_and_the_chunk_takes_the_next_episode(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    """Its movie box first (faststart), a partial copy keeps the whole sample table: the samples it points at run
    past the end of the file. A named error (an EOFError before, which the service logged as unexpected)."""
    chunk = tmp_path / "chunk.mp4"
    for source in (0, 1):
        append_video(chunk, episode_video(source, vcodec="h264"))
    whole = remux(episode_video(2, vcodec="h264"), tmp_path / "faststart.mp4", faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:-50])

    with pytest.raises(TruncatedVideoError) as error:
        append_video(chunk, cut)

    assert isinstance(error.value, VideoFormatError) and isinstance(error.value, EOFError)
    assert str(cut) in str(error.value) and "cut short" in str(error.value)
    assert_every_reader_sees(chunk, [0, 1])
    append_video(chunk, episode_video(3, vcodec="h264"))
    assert_every_reader_sees(chunk, [0, 1, 3])


def test_appending_an_episode_with_another_pixel_format_raises(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = tmp_path / "chunk.mp4"
    append_video(chunk, episode_video(0, vcodec="h264"))
    digest = sha256(chunk)
    with pytest.raises(MismatchedVideosError):
        append_video(chunk, episode_video(1, vcodec="h264", pix_fmt="yuv444p"))
    assert sha256(chunk) == digest


@pytest.mark.parametrize("vcodec", ["h264", "hevc", "libsvtav1"])
def test_chunks_of_every_codec_append_and_decode_frame_exact(
    tmp_path: Path, episode_video: EpisodeVideo, vcodec: str
) -> None:
    chunk = tmp_path / "chunk.mp4"
    sources = [0, 1, 2, 0]
    segments = [append_video(chunk, episode_video(s, vcodec=vcodec)) for s in sources]

    assert_consecutive(segments)
    assert_every_reader_sees(chunk, sources)
    all_frames = list(range(len(sources) * FRAMES))
    assert torchcodec_indices_at(chunk, all_frames)[1] == expected_indices(sources)


@pytest.mark.parametrize("vcodec", ["h264", "hevc", "libsvtav1"])
def test_the_chunk_reports_the_encoder_settings_of_its_episodes(
    tmp_path: Path, episode_video: EpisodeVideo, vcodec: str
) -> None:
    chunk = tmp_path / "chunk.mp4"
    for source in (0, 1):
        append_video(chunk, episode_video(source, vcodec=vcodec))
    settings = EncoderSettings(vcodec=vcodec)

    info = get_video_info(chunk)

    assert info["video.width"] == 64
    assert info["video.height"] == 48
    assert info["video.fps"] == FPS
    assert info["video.pix_fmt"] == "yuv420p"
    assert info["video.codec"] == {"h264": "h264", "hevc": "hevc", "libsvtav1": "av1"}[vcodec]
    assert info["video.g"] == settings.g
    assert info["video.crf"] == settings.crf
    assert info["video.preset"] == settings.effective_preset
    assert info["video.fast_decode"] == settings.fast_decode


def test_appending_a_missing_episode_raises_naming_it(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    missing = tmp_path / "episode-000007.mp4"
    chunk = tmp_path / "chunk.mp4"
    with pytest.raises(FileNotFoundError, match=r"episode-000007\.mp4"):
        append_video(chunk, missing)
    assert not chunk.exists()

    append_video(chunk, episode_video(0))
    digest = sha256(chunk)
    with pytest.raises(FileNotFoundError, match=r"episode-000007\.mp4"):
        append_video(chunk, missing)
    assert sha256(chunk) == digest


def test_a_second_appender_waits_for_the_lock_then_lands_after(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = tmp_path / "chunk.mp4"
    first = append_video(chunk, episode_video(0))
    result: list[VideoSegment] = []
    with open(chunk, "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # another appender, mid-append
        appender = threading.Thread(target=lambda: result.append(append_video(chunk, episode_video(1))))
        appender.start()
        appender.join(timeout=0.5)
        assert appender.is_alive(), "append_video did not wait for the chunk's lock"
        assert count_frames(chunk) == FRAMES
        fcntl.flock(holder.fileno(), fcntl.LOCK_UN)
    appender.join(timeout=JOIN_TIMEOUT_S)
    assert not appender.is_alive()
    assert_consecutive([first, result[0]])
    assert_every_reader_sees(chunk, [0, 1])


def _append_at_barrier(chunk: str, episode: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait(JOIN_TIMEOUT_S)
    append_video(chunk, episode)


def test_two_processes_creating_the_same_chunk_keep_both_episodes(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    episodes = [str(episode_video(e)) for e in (0, 1)]
    context = multiprocessing.get_context("spawn")
    for attempt in range(3):
        chunk = tmp_path / f"chunk-{attempt}.mp4"
        barrier = context.Barrier(2)
        workers = [context.Process(target=_append_at_barrier, args=(str(chunk), e, barrier)) for e in episodes]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(JOIN_TIMEOUT_S)
            assert worker.exitcode == 0
        assert count_frames(chunk) == 2 * FRAMES, f"attempt {attempt}: an episode was lost"
        assert sorted({index[0] for index in pyav_indices(chunk)}) == [0, 1]


def test_decoded_chunk_frames_match_the_episode_frames(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    """Stream copy: the chunk's pixels are exactly the episode's, no re-encoding."""
    chunk = tmp_path / "chunk.mp4"
    build_chunk(chunk, episode_video, [0, 1])
    chunk_frames = pyav_frames(chunk)
    for k, source in enumerate([0, 1]):
        for i, frame in enumerate(pyav_frames(episode_video(source))):
            assert (chunk_frames[k * FRAMES + i] == frame).all()


def test_appending_to_a_faststart_chunk_written_by_ffmpeg_works(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    """Chunks written by the reference (ffmpeg, movflags=faststart: moov before mdat) accept appends too."""
    chunk = tmp_path / "faststart.mp4"
    remux = ["ffmpeg", "-v", "error", "-i", str(episode_video(0, vcodec="h264")), "-c", "copy"]
    subprocess.run([*remux, "-movflags", "faststart", str(chunk)], check=True, timeout=JOIN_TIMEOUT_S)
    assert read_movie(chunk).moov_box.offset < read_movie(chunk).data_extent()[0]

    segments = [read_segment(chunk, 0, FRAMES)]
    segments += [append_video(chunk, episode_video(s, vcodec="h264")) for s in (1, 2)]

    assert_consecutive(segments)
    assert_every_reader_sees(chunk, [0, 1, 2])


@pytest.mark.parametrize("backend", ["torchcodec", "pyav"])
def test_a_decoder_used_before_an_append_sees_the_new_episode(
    tmp_path: Path, episode_video: EpisodeVideo, backend: str
) -> None:
    if backend == "torchcodec":
        require_torchcodec()
    chunk = tmp_path / "chunk.mp4"
    build_chunk(chunk, episode_video, [0, 1])
    assert decode_with_robovid(chunk, [FRAMES / FPS], backend) == [(1, 0)]

    segment = append_video(chunk, episode_video(2))

    last = segment.from_timestamp + (FRAMES - 1) / FPS
    assert decode_with_robovid(chunk, [segment.from_timestamp, last], backend) == [(2, 0), (2, FRAMES - 1)]


def pad_before_moov(chunk: Path, pad_bytes: int) -> None:
    """Insert a top-level ``free`` box of ``pad_bytes`` (64-bit size, sparse on disk) before the moov.

    The sample data stays where it was, so the file stays valid, and the next append lands
    past ``pad_bytes``: a cheap way to reach offsets that need 64-bit ``co64`` entries.
    """
    moov = read_movie(chunk).moov_box
    with open(chunk, "r+b") as f:
        f.seek(moov.offset)
        moov_bytes = f.read(moov.size)
        f.seek(moov.offset)
        f.write(struct.pack(">I4sQ", 1, b"free", pad_bytes))
        f.seek(moov.offset + pad_bytes)
        f.write(moov_bytes)


def test_a_chunk_past_4_gib_gets_64_bit_offsets_and_stays_readable(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    chunk = tmp_path / "chunk.mp4"
    segments = [append_video(chunk, episode_video(0))]
    pad_before_moov(chunk, 2**32 + 4096)
    if chunk.stat().st_blocks * 512 > 2**24:
        chunk.unlink()
        pytest.skip("this filesystem does not keep files sparse; a 4 GiB test file would really be written")
    assert_every_reader_sees(chunk, [0])

    segments += [append_video(chunk, episode_video(s)) for s in (1, 2)]

    stbl = read_movie(chunk).stbl
    assert stbl.child(b"co64") is not None
    assert stbl.child(b"stco") is None
    assert int(read_movie(chunk).table.chunk_offsets.max()) > 2**32
    assert_consecutive(segments)
    assert_every_reader_sees(chunk, [0, 1, 2])


def test_undo_append_restores_the_chunk_byte_for_byte_and_removes_a_chunk_it_created(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    chunk = tmp_path / "chunk.mp4"
    first = append_video(chunk, episode_video(0))
    before = chunk.read_bytes()
    second = append_video(chunk, episode_video(1))
    undo_append(second)
    assert chunk.read_bytes() == before
    assert count_frames(chunk) == first.num_frames
    third = append_video(chunk, episode_video(2))
    assert third.first_frame == first.num_frames
    with pytest.raises(VideoFormatError):
        undo_append(first)  # not the last append
    undo_append(third)
    undo_append(first)
    assert not chunk.exists()


def test_the_movie_kept_after_an_append_is_the_one_a_fresh_read_finds(
    tmp_path: Path, episode_video: EpisodeVideo
) -> None:
    """The next append starts from the movie the last one left (no re-scan): it must equal the file's."""
    chunk = tmp_path / "chunk.mp4"
    build_chunk(chunk, episode_video, [0, 1, 2, 3])
    with open(chunk, "r+b") as f:
        kept = _live_movies.take(f)
        fresh = read_movie(chunk, f)
    assert kept is not None
    assert kept.top == fresh.top and kept.moov_box == fresh.moov_box
    assert kept.moov.serialize() == chunk.read_bytes()[fresh.moov_box.offset :]
    for name in ("durations", "sizes", "chunk_offsets", "chunk_sample_counts", "sync_samples"):
        assert np.array_equal(getattr(kept.table, name), getattr(fresh.table, name)), name


@pytest.mark.parametrize("change", ["another process appended", "the commit was undone", "a byte was rewritten"])
def test_a_chunk_changed_since_this_process_appended_is_read_again(
    tmp_path: Path, episode_video: EpisodeVideo, change: str
) -> None:
    chunk = tmp_path / "chunk.mp4"
    segments = build_chunk(chunk, episode_video, [0, 1])
    if change == "another process appended":
        context = multiprocessing.get_context("spawn")
        other = context.Process(target=append_video, args=(str(chunk), str(episode_video(2))))
        other.start()
        other.join(JOIN_TIMEOUT_S)
        assert other.exitcode == 0
        expected = [0, 1, 2, 3]
    elif change == "the commit was undone":
        undo_append(segments[-1])
        expected = [0, 3]
    else:
        # Same size, same box headers: only the times tell, so the edit must come after the
        # file system's timestamp tick (a jiffy, <= 10 ms); an edit within it would go unseen.
        time.sleep(0.05)
        with open(chunk, "r+b") as f:
            f.seek(0)
            f.write(f.read(1))
        expected = [0, 1, 3]
    with open(chunk, "rb") as f:
        assert _live_movies.take(f) is None
    append_video(chunk, episode_video(3))
    assert_every_reader_sees(chunk, expected)


def test_the_kept_movies_are_bounded(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    for n in range(_live_movies.capacity + 4):
        build_chunk(tmp_path / f"chunk-{n}.mp4", episode_video, [0, 1])
    assert len(_live_movies._entries) == _live_movies.capacity
