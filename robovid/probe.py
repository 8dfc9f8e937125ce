"""Probe video files: the reference's info dicts, plus frame counts and encoder settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import av

from robovid.errors import VideoFormatError
from robovid.settings import EncoderSettings

VideoSource = Path | str | BinaryIO
"""A path, or a seekable binary file object holding the video."""


def _open(video_path: VideoSource) -> av.container.InputContainer:
    try:
        if hasattr(video_path, "read"):
            video_path.seek(0)  # type: ignore[union-attr]
            return av.open(video_path, "r")
        return av.open(str(video_path), "r")
    except FileNotFoundError:
        raise
    except av.error.FFmpegError as error:
        raise VideoFormatError(f"{video_path}: cannot be opened as a video ({error}).") from error


def get_audio_info(video_path: VideoSource) -> dict[str, Any]:
    """Audio stream facts with the reference's keys (``has_audio``, ``audio.*``)."""
    with _open(video_path) as container:
        if not container.streams.audio:
            return {"has_audio": False}
        stream = container.streams.audio[0]
        return {
            "audio.channels": stream.channels,
            "audio.codec": stream.codec_context.codec.canonical_name,
            "audio.bit_rate": stream.bit_rate,
            "audio.sample_rate": stream.sample_rate,
            "audio.bit_depth": stream.format.bits,
            "audio.channel_layout": stream.layout.name,
            "has_audio": True,
        }


def get_video_info(video_path: VideoSource) -> dict[str, Any]:
    """Video stream facts with the reference's keys, plus robovid's encoder settings.

    Keys: ``video.height``, ``video.width``, ``video.codec``, ``video.pix_fmt``,
    ``video.is_depth_map``, ``video.fps``, ``video.channels``, ``has_audio`` (and
    ``audio.*``); when robovid wrote the file also ``video.g``, ``video.crf``,
    ``video.preset``, ``video.fast_decode``. ``{}`` for a file without video.
    """
    with _open(video_path) as container:
        if not container.streams.video:
            return {}
        stream = container.streams.video[0]
        info: dict[str, Any] = {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate) if stream.base_rate else None,
            "video.channels": get_video_pixel_channels(stream.pix_fmt or ""),
        }
        settings = EncoderSettings.from_tag(container.metadata.get("comment"))
        if settings:
            for key in ("g", "crf", "preset", "fast_decode"):
                info[f"video.{key}"] = settings.get(key)
    info.update(get_audio_info(video_path))
    return info


def get_video_pixel_channels(pix_fmt: str) -> int:
    """Channels a pixel format carries: 1 (grey/depth), 3 (colour) or 4 (with alpha)."""
    if "gray" in pix_fmt or "depth" in pix_fmt or "monochrome" in pix_fmt:
        return 1
    if "rgba" in pix_fmt or "yuva" in pix_fmt:
        return 4
    if "rgb" in pix_fmt or "yuv" in pix_fmt:
        return 3
    raise ValueError(f"Unknown pixel format {pix_fmt!r}: cannot tell its number of channels.")


def get_video_duration_in_s(video_path: Path | str) -> float:
    """Duration of the first video stream in seconds (the container's if the stream has none)."""
    with _open(video_path) as container:
        if not container.streams.video:
            raise VideoFormatError(f"{video_path}: has no video stream.")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is None:
            raise VideoFormatError(f"{video_path}: has no duration in its header.")
        return float(container.duration / av.time_base)
