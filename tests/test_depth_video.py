"""Depth video, library side: exact 16-bit depth through FFV1, LeRobot's 12-bit path within its bound, appends."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from videocheck import require_torchcodec

from robovid import (
    DepthEncoderConfig,
    InvalidEncoderOptionError,
    RGBEncoderConfig,
    VideoFormatError,
    append_video,
    concatenate_video_files,
    decode_video_frames,
    encode_video_frames,
    get_video_info,
)
from robovid.depth import dequantize_depth, quantization_error_mm, quantize_depth, read_depth_frame
from robovid.errors import FrameFormatError
from robovid.synthetic import write_episode
from robovid.synthetic_depth import depth_scene, read_depth_index, render_depth, write_depth_episode

FPS = 30
W, H = 96, 64


def depth_episode(tmp_path: Path, episode: int, num_frames: int, name: str | None = None) -> tuple[Path, np.ndarray]:
    """A folder of 16-bit depth PNGs (noise, edges, holes) and the frames it holds, (N, H, W) uint16."""
    folder = tmp_path / (name or f"episode-{episode:06d}")
    write_depth_episode(folder, episode, num_frames, W, H, seed=3, marker=None)
    return folder, np.stack([read_depth_frame(p) for p in sorted(folder.glob("frame-*.png"))])


def every_frame(path: Path, num_frames: int, backend: str | None = "pyav") -> np.ndarray:
    frames = decode_video_frames(path, [i / FPS for i in range(num_frames)], 1e-4, backend, is_depth=True)
    return np.asarray(frames)


def test_exact_depth_decodes_to_every_source_millimetre_holes_included(tmp_path: Path) -> None:
    folder, source = depth_episode(tmp_path, 0, 12)
    assert (source == 0).any() and source.max() > 1000  # holes and real depth: not a trivial clip
    video = tmp_path / "depth.mp4"
    encode_video_frames(folder, video, FPS, video_encoder=DepthEncoderConfig.exact())

    decoded = every_frame(video, 12)
    assert decoded.dtype == np.uint16 and decoded.shape == (12, 1, H, W)
    np.testing.assert_array_equal(decoded[:, 0], source)
    # random access: single frames out of order, with torchcodec asked for (depth decodes with PyAV)
    picked = np.asarray(decode_video_frames(video, [11 / FPS, 3 / FPS], 1e-4, "torchcodec", is_depth=True))
    np.testing.assert_array_equal(picked[:, 0], source[[11, 3]])
    info = get_video_info(video)
    assert (info["video.codec"], info["video.pix_fmt"], info["is_depth_map"]) == ("ffv1", "gray16le", True)
    assert DepthEncoderConfig.from_video_info(info) == DepthEncoderConfig.exact()


def test_depth_pngs_that_mark_holes_transparent_are_kept_exactly(tmp_path: Path) -> None:
    """A 16-bit greyscale PNG may name one sample value transparent (tRNS; Pillow's ``transparency=0`` marks the
    holes): it decoded as grey + alpha, and the encode failed with an unexpected ValueError."""
    folder, source = depth_episode(tmp_path, 0, 4)
    for path, depth in zip(sorted(folder.glob("frame-*.png")), source, strict=True):
        Image.fromarray(depth).save(path, transparency=0)
        assert b"tRNS" in path.read_bytes()
        np.testing.assert_array_equal(read_depth_frame(path), depth)
    video = tmp_path / "depth.mp4"
    encode_video_frames(folder, video, FPS, video_encoder=DepthEncoderConfig.exact())
    np.testing.assert_array_equal(every_frame(video, 4)[:, 0], source)


def test_lerobots_12_bit_path_keeps_the_codes_and_stays_within_half_a_step(tmp_path: Path) -> None:
    folder, source = depth_episode(tmp_path, 0, 6)
    video = tmp_path / "depth12.mp4"
    config = DepthEncoderConfig()  # LeRobot's defaults: HEVC Main 12, lossless, log quantizer
    encode_video_frames(folder, video, FPS, video_encoder=config)

    codes = every_frame(video, 6)[:, 0]
    np.testing.assert_array_equal(codes, quantize_depth(source))  # the 12-bit codes are exact
    depth = dequantize_depth(codes).astype(np.int64)
    measured = source > 0
    error = np.abs(depth - source)[measured]
    bound = quantization_error_mm(float(source.max()))
    assert 0 < error.max() <= bound < 2  # off by up to half a code step (room-scale depth: < 2 mm)
    assert (depth[~measured] == 10).all()  # holes come back as depth_min, not 0


def test_exact_depth_episodes_append_in_place_and_join_sample_exact(tmp_path: Path) -> None:
    config = DepthEncoderConfig.exact()
    sources, videos = [], []
    for episode, length in enumerate((7, 5, 9)):
        folder, source = depth_episode(tmp_path, episode, length)
        video = tmp_path / f"ep{episode}.mp4"
        encode_video_frames(folder, video, FPS, video_encoder=config)
        sources.append(source)
        videos.append(video)
    chunk = tmp_path / "chunk.mp4"
    shutil.copyfile(videos[0], chunk)
    segments = [append_video(chunk, video) for video in videos[1:]]
    joined = tmp_path / "joined.mp4"
    concatenate_video_files(videos, joined)

    everything = np.concatenate(sources)
    for path in (chunk, joined):
        np.testing.assert_array_equal(every_frame(path, len(everything))[:, 0], everything)
    last = segments[-1]
    first_of_last = np.asarray(decode_video_frames(chunk, [last.from_timestamp], 1e-4, "pyav", is_depth=True))
    np.testing.assert_array_equal(first_of_last[0, 0], sources[2][0])
    assert read_depth_index(first_of_last[0, 0]) == (2, 0)


def test_colour_and_depth_do_not_mix(tmp_path: Path) -> None:
    rgb_dir = tmp_path / "rgb"
    write_episode(rgb_dir, 0, 3, W, H)
    rgb_video = tmp_path / "rgb.mp4"
    encode_video_frames(rgb_dir, rgb_video, FPS, video_encoder=RGBEncoderConfig(vcodec="h264"))
    with pytest.raises(VideoFormatError, match="not a depth format"):
        decode_video_frames(rgb_video, [0.0], 1e-4, "pyav", is_depth=True)
    with pytest.raises(FrameFormatError, match="16-bit greyscale"):  # 8-bit RGB PNGs are not depth
        encode_video_frames(rgb_dir, tmp_path / "d.mp4", FPS, video_encoder=DepthEncoderConfig.exact())
    assert not (tmp_path / "d.mp4").exists()
    with pytest.raises(InvalidEncoderOptionError, match="depth maps only"):
        RGBEncoderConfig(vcodec="ffv1")
    with pytest.raises(InvalidEncoderOptionError, match="lossless"):
        DepthEncoderConfig(vcodec="ffv1", pix_fmt="gray16le")  # FFV1 has no crf to set
    with pytest.raises(InvalidEncoderOptionError, match="for depth"):
        DepthEncoderConfig(vcodec="h264", pix_fmt="yuv420p")
    with pytest.raises(InvalidEncoderOptionError, match="depth_min \\+ shift"):
        DepthEncoderConfig(depth_min=0.5, shift=-1.0)


@pytest.mark.parametrize("backend", ["pyav", "torchcodec", None])
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "lerobot-12-bit"])
def test_a_depth_video_decoded_as_colour_is_refused_naming_is_depth(
    tmp_path: Path, backend: str | None, exact: bool
) -> None:
    """Without is_depth, 16-bit depth came back as 8-bit RGB: three channels of a converted grey, not the depth."""
    if backend != "pyav":
        require_torchcodec()
    folder, _ = depth_episode(tmp_path, 0, 3)
    video = tmp_path / "depth.mp4"
    encode_video_frames(folder, video, FPS, video_encoder=DepthEncoderConfig.exact() if exact else DepthEncoderConfig())
    for return_uint8 in (False, True):
        with pytest.raises(VideoFormatError, match=r"depth video .*is_depth=True"):
            decode_video_frames(video, [0.0], 1e-4, backend, return_uint8=return_uint8)
    assert every_frame(video, 3, backend).shape == (3, 1, H, W)  # the way to read it


def test_a_frame_of_another_size_fails_the_encode_and_publishes_nothing(tmp_path: Path) -> None:
    folder, _ = depth_episode(tmp_path, 0, 3)
    from robovid.synthetic_depth import write_depth_png

    write_depth_png(folder / "frame-000003.png", render_depth(depth_scene(0), W + 16, H, 0, 3))
    with pytest.raises(Exception, match="one size"):
        encode_video_frames(folder, tmp_path / "out.mp4", FPS, video_encoder=DepthEncoderConfig.exact())
    assert not (tmp_path / "out.mp4").exists()


def test_lerobots_reader_conversion_would_lose_exact_depth_so_robovid_reads_the_plane(tmp_path: Path) -> None:
    """Why robovid's chunks need robovid's reader: LeRobot's PyAV path calls ``to_ndarray(format="gray12le")``."""
    import av

    folder, source = depth_episode(tmp_path, 0, 2)
    video = tmp_path / "depth.mp4"
    encode_video_frames(folder, video, FPS, video_encoder=DepthEncoderConfig.exact())
    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
        as_lerobot_reads = frame.to_ndarray(format="gray12le")
    assert not np.array_equal(as_lerobot_reads, source[0])
    rescaled = np.abs(as_lerobot_reads.astype(np.int64) - (source[0].astype(np.int64) >> 4))
    assert rescaled.max() <= 1  # the 16-bit samples rescaled to 12 bits: 1000 mm reads as 62
    np.testing.assert_array_equal(every_frame(video, 2)[0, 0], source[0])
