"""reencode_video: codec change and trim, every frame identified, and published crash-safely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from videocheck import pyav_indices, sha256, temp_leftovers

from robovid import (
    DepthEncoderConfig,
    FrameTimestampError,
    RGBEncoderConfig,
    VideoFormatError,
    decode_video_frames,
    encode_video_frames,
    get_video_duration_in_s,
    get_video_info,
    reencode_video,
)
from robovid.depth import DepthQuantizer, read_depth_frame
from robovid.synthetic import write_episode
from robovid.synthetic_depth import write_depth_episode

FPS = 30
FRAMES = 24
KILL_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def av1_episode(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source")
    write_episode(root / "episode-000005", 5, FRAMES, 64, 48, seed=5)
    video = root / "episode.mp4"
    encode_video_frames(root / "episode-000005", video, FPS)
    return video


def test_a_codec_change_keeps_every_frame_in_order(tmp_path: Path, av1_episode: Path) -> None:
    out = tmp_path / "h264.mp4"
    config = RGBEncoderConfig(vcodec="h264", g=4, crf=20)

    reencode_video(av1_episode, out, video_encoder=config)

    assert pyav_indices(out) == [(5, n) for n in range(FRAMES)]
    info = get_video_info(out)
    assert (info["video.codec"], info["video.fps"], info["video.g"]) == ("h264", FPS, 4)
    assert RGBEncoderConfig.from_video_info(info) == config
    assert get_video_duration_in_s(out) == pytest.approx(FRAMES / FPS, abs=1e-9)


def test_a_trim_keeps_the_frames_in_the_window_and_starts_at_zero(tmp_path: Path, av1_episode: Path) -> None:
    out = tmp_path / "trimmed.mp4"

    reencode_video(av1_episode, out, start_time_s=5 / FPS + 0.001, end_time_s=12 / FPS)

    assert pyav_indices(out) == [(5, n) for n in range(6, 12)]
    with av.open(str(out)) as container:
        assert next(container.decode(video=0)).time == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        (-0.1, None, "start_time_s"),
        (None, float("nan"), "end_time_s"),
        (0.5, 0.2, "greater than"),
        (5.0, None, "no frame"),
    ],
)
def test_a_bad_or_empty_window_raises_and_writes_nothing(
    tmp_path: Path, av1_episode: Path, start: float | None, end: float | None, match: str
) -> None:
    with pytest.raises(FrameTimestampError, match=match):
        reencode_video(av1_episode, tmp_path / "out.mp4", start_time_s=start, end_time_s=end)
    assert temp_leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_kept_unless_overwrite(tmp_path: Path, av1_episode: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    reencode_video(av1_episode, out)
    assert out.read_bytes() == b"keep me"
    reencode_video(av1_episode, out, overwrite=True)
    assert pyav_indices(out) == [(5, n) for n in range(FRAMES)]


def test_reencoding_a_file_onto_itself_replaces_it_whole(tmp_path: Path, av1_episode: Path) -> None:
    video = tmp_path / "video.mp4"
    video.write_bytes(av1_episode.read_bytes())

    reencode_video(video, video, video_encoder=RGBEncoderConfig(vcodec="h264"), overwrite=True, end_time_s=10 / FPS)

    assert get_video_info(video)["video.codec"] == "h264"
    assert pyav_indices(video) == [(5, n) for n in range(10)]
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("onto_itself", [False, True], ids=["new-output", "onto-itself"])
def test_a_kill_mid_encode_leaves_the_previous_output_whole(
    tmp_path: Path, av1_episode: Path, onto_itself: bool
) -> None:
    video = tmp_path / "video.mp4"
    video.write_bytes(av1_episode.read_bytes())
    before = sha256(video)
    source = video if onto_itself else av1_episode
    script = (
        "import robovid; "
        f"robovid.reencode_video({str(source)!r}, {str(video)!r}, "
        "video_encoder=robovid.RGBEncoderConfig(vcodec='h264'), overwrite=True)"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"ROBOVID_FAULT_POINT": "encode:frame:12", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=KILL_TIMEOUT_S,
        check=False,
    )

    assert result.returncode == -9, result.stderr
    assert sha256(video) == before
    assert pyav_indices(video) == [(5, n) for n in range(FRAMES)]


def depth_samples(video: Path, frames: int) -> np.ndarray:
    return np.asarray(decode_video_frames(video, [i / FPS for i in range(frames)], 1e-4, is_depth=True))[:, 0]


def test_a_depth_video_reencoded_holds_its_depth_as_the_target_config_records_it(tmp_path: Path) -> None:
    """Re-encoding converted depth samples as a pixel format change: millimetres shifted down 4 bits under a
    record of LeRobot's log quantizer, and 12-bit codes shifted up 4 bits as if they were millimetres."""
    folder = tmp_path / "depth"
    write_depth_episode(folder, 0, 6, 64, 48, seed=3, marker=None)
    recorded_mm = np.stack([read_depth_frame(p) for p in sorted(folder.glob("frame-*.png"))])
    exact = tmp_path / "exact.mp4"
    encode_video_frames(folder, exact, FPS, video_encoder=DepthEncoderConfig.exact())
    codes, quantizer = tmp_path / "codes.mp4", DepthQuantizer(depth_max=6.0)
    relog = tmp_path / "relog.mp4"

    reencode_video(exact, codes, video_encoder=DepthEncoderConfig(depth_max=6.0))
    reencode_video(codes, exact, video_encoder=DepthEncoderConfig.exact(), overwrite=True, start_time_s=2 / FPS)
    reencode_video(codes, relog, video_encoder=DepthEncoderConfig(use_log=False))

    np.testing.assert_array_equal(depth_samples(codes, 6), quantizer.quantize(recorded_mm))
    np.testing.assert_array_equal(depth_samples(exact, 4), quantizer.dequantize(quantizer.quantize(recorded_mm[2:])))
    relinear = DepthQuantizer(use_log=False)
    np.testing.assert_array_equal(
        depth_samples(relog, 6), relinear.quantize(quantizer.dequantize(quantizer.quantize(recorded_mm)))
    )


def test_depth_is_not_reencoded_as_colour_nor_colour_as_depth(tmp_path: Path, av1_episode: Path) -> None:
    folder = tmp_path / "depth"
    write_depth_episode(folder, 0, 3, 64, 48, seed=3, marker=None)
    depth = tmp_path / "depth.mp4"
    encode_video_frames(folder, depth, FPS, video_encoder=DepthEncoderConfig.exact())

    with pytest.raises(VideoFormatError, match=r"depth video .*DepthEncoderConfig"):
        reencode_video(depth, tmp_path / "colour.mp4", video_encoder=RGBEncoderConfig(vcodec="h264"))
    with pytest.raises(VideoFormatError, match="not a depth video"):
        reencode_video(av1_episode, tmp_path / "depth-of-colour.mp4", video_encoder=DepthEncoderConfig.exact())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth", "depth.mp4"]
