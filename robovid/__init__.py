"""robovid: robot-learning PNG episodes to chunked video, crash-safely, and back.

The public API keeps the names, signatures and defaults of LeRobot's video utilities
(so code written against them runs unchanged) and adds in-place appends
(:func:`append_video`) and the segments metadata the ``robovid-watch`` service writes.
Importing robovid never imports torch: only the torchcodec backend does, when called.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from robovid.errors import (
    BackendUnavailableError,
    CorruptFrameError,
    EmptyEpisodeError,
    EpisodeError,
    FrameFormatError,
    FrameMismatchError,
    FrameSequenceError,
    FrameSizeError,
    FrameTimestampError,
    InfoJsonError,
    InvalidEncoderOptionError,
    MetadataError,
    MismatchedVideosError,
    RobovidError,
    UnreadableFrameError,
    UnsafePathError,
    VerificationError,
    VideoFormatError,
)

if TYPE_CHECKING:  # the names below load on first use (PEP 562): `import robovid` stays light
    from robovid._decode_pyav import decode_video_frames_pyav
    from robovid._decode_torchcodec import decode_video_frames_torchcodec
    from robovid.append import VideoSegment, append_video, count_frames, read_segment, recover_chunk, undo_append
    from robovid.cache import VideoDecoderCache
    from robovid.compact import ChunkSpace, chunk_space, compact_chunk
    from robovid.concat import concatenate_video_files
    from robovid.decode import (
        decode_episode_frames,
        decode_video_frames,
        decode_video_frames_npu,
        decode_video_frames_torchvision,
        get_safe_default_codec,
    )
    from robovid.encode import encode_video_frames
    from robovid.features import VideoFrame
    from robovid.metadata import read_lerobot_episodes, read_segments
    from robovid.probe import get_audio_info, get_video_duration_in_s, get_video_info, get_video_pixel_channels
    from robovid.settings import EncoderSettings

__version__ = "0.1.0"

_LAZY = {
    "decode_video_frames_pyav": "robovid._decode_pyav",
    "decode_video_frames_torchcodec": "robovid._decode_torchcodec",
    "VideoSegment": "robovid.append",
    "append_video": "robovid.append",
    "count_frames": "robovid.append",
    "read_segment": "robovid.append",
    "recover_chunk": "robovid.append",
    "undo_append": "robovid.append",
    "ChunkSpace": "robovid.compact",
    "chunk_space": "robovid.compact",
    "compact_chunk": "robovid.compact",
    "VideoDecoderCache": "robovid.cache",
    "concatenate_video_files": "robovid.concat",
    "decode_video_frames": "robovid.decode",
    "decode_video_frames_npu": "robovid.decode",
    "decode_video_frames_torchvision": "robovid.decode",
    "get_safe_default_codec": "robovid.decode",
    "encode_video_frames": "robovid.encode",
    "VideoFrame": "robovid.features",
    "decode_episode_frames": "robovid.decode",
    "read_lerobot_episodes": "robovid.metadata",
    "read_segments": "robovid.metadata",
    "get_audio_info": "robovid.probe",
    "get_video_duration_in_s": "robovid.probe",
    "get_video_info": "robovid.probe",
    "get_video_pixel_channels": "robovid.probe",
    "EncoderSettings": "robovid.settings",
}

__all__ = [
    "BackendUnavailableError",
    "ChunkSpace",
    "CorruptFrameError",
    "EmptyEpisodeError",
    "EncoderSettings",
    "EpisodeError",
    "FrameFormatError",
    "FrameMismatchError",
    "FrameSequenceError",
    "FrameSizeError",
    "FrameTimestampError",
    "InfoJsonError",
    "InvalidEncoderOptionError",
    "MetadataError",
    "MismatchedVideosError",
    "RobovidError",
    "UnreadableFrameError",
    "UnsafePathError",
    "VerificationError",
    "VideoDecoderCache",
    "VideoFormatError",
    "VideoFrame",
    "VideoSegment",
    "append_video",
    "chunk_space",
    "compact_chunk",
    "concatenate_video_files",
    "count_frames",
    "decode_episode_frames",
    "decode_video_frames",
    "decode_video_frames_npu",
    "decode_video_frames_pyav",
    "decode_video_frames_torchcodec",
    "decode_video_frames_torchvision",
    "encode_video_frames",
    "get_audio_info",
    "get_safe_default_codec",
    "get_video_duration_in_s",
    "get_video_info",
    "get_video_pixel_channels",
    "read_lerobot_episodes",
    "read_segment",
    "read_segments",
    "recover_chunk",
    "undo_append",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'robovid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if importlib.util.find_spec("datasets") is not None:  # the reference registered VideoFrame at import
    from robovid.features import register_with_datasets as _register

    _register()
