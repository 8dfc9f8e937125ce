"""Probe video files: the reference's info dicts, plus frame counts and encoder settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import av

from robovid.errors import VideoFormatError
from robovid.settings import EncoderSettings

if TYPE_CHECKING:
    from robovid.encoder_config import VideoEncoderConfig

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


def get_video_info(video_path: VideoSource, video_encoder: VideoEncoderConfig | None = None) -> dict[str, Any]:
    """Video stream facts with the reference's keys, plus the encoder settings.

    Keys: ``video.height``, ``video.width``, ``video.codec``, ``video.pix_fmt``,
    ``video.is_depth_map``, ``is_depth_map``, ``video.fps``, ``video.channels``,
    ``has_audio`` (and ``audio.*``). The encoder settings (``video.g``, ``video.crf``,
    ``video.preset``, ``video.fast_decode``, ``video.extra_options``, ``video.video_backend``)
    come from the file when robovid wrote it (the settings it records in the MP4 comment
    tag), else from ``video_encoder`` when one is given, as LeRobot records the config it
    encoded with: what the file says wins. A depth encode (``DepthEncoderConfig``) also gives
    ``video.depth_min``, ``video.depth_max``, ``video.shift``, ``video.use_log`` and
    ``is_depth_map`` True. ``{}`` for a file without video.
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
        recorded = _recorded_settings(container.metadata.get("comment"))
        info.update(recorded)
    info.update(get_audio_info(video_path))
    if video_encoder is not None:
        for key, value in video_encoder.video_info().items():
            info.setdefault(key, value)
        if not recorded and video_encoder.is_depth:  # no robovid tag: as LeRobot: the config it was encoded with says
            info["video.is_depth_map"] = True
    info["is_depth_map"] = info["video.is_depth_map"]
    return info


def _recorded_settings(tag: str | None) -> dict[str, Any]:
    """The ``video.*`` encoder entries of the settings robovid recorded, or {} for a file it did not write."""
    settings = EncoderSettings.from_tag(tag)
    if settings is None:
        return {}
    recorded = {f"video.{key}": settings.get(key) for key in ("g", "crf", "preset", "fast_decode")}
    depth = settings.get("depth")
    if isinstance(depth, dict):  # a depth encode: its quantizer, as DepthEncoderConfig names the fields
        recorded |= {"video.is_depth_map": True} | {f"video.{key}": value for key, value in depth.items()}
    return recorded | {"video.extra_options": settings.get("extra_options", {}), "video.video_backend": "pyav"}


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
