"""robovid: robot-learning PNG episodes to chunked video, crash-safely, and back.

The public API keeps the names, signatures and defaults of LeRobot's video utilities
(so code written against them runs unchanged) and adds in-place appends
(:func:`append_video`) and the segments metadata the ``robovid-watch`` service writes.
Importing robovid never imports torch: only the torchcodec backend does, when called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from robovid import errors as _errors

_PUBLIC: dict[str, tuple[str, ...]] = {
    "robovid.errors": (
        "BackendUnavailableError",
        "CorruptFrameError",
        "EmptyEpisodeError",
        "EpisodeError",
        "FrameFormatError",
        "FrameMismatchError",
        "FrameSequenceError",
        "FrameSizeError",
        "FrameTimestampError",
        "InfoJsonError",
        "InvalidEncoderOptionError",
        "InvalidToleranceError",
        "LeRobotMetadataError",
        "MergeError",
        "MergeMismatchError",
        "MetadataError",
        "MismatchedVideosError",
        "RemoteError",
        "RepairError",
        "RobovidError",
        "StreamingError",
        "TruncatedVideoError",
        "UnevenFrameTimingError",
        "UnknownCameraError",
        "UnreadableFrameError",
        "UnsafePathError",
        "VerificationError",
        "VideoFormatError",
    ),
    "robovid._decode_pyav": ("decode_video_frames_pyav",),
    "robovid._decode_torchcodec": ("decode_video_frames_torchcodec",),
    "robovid.append": ("VideoSegment", "append_video", "count_frames", "read_segment", "recover_chunk", "undo_append"),
    "robovid.cache": ("VideoDecoderCache",),
    "robovid.compact": ("ChunkSpace", "chunk_space", "compact_chunk"),
    "robovid.concat": ("concatenate_video_files",),
    "robovid.decode": (
        "decode_episode_frames",
        "decode_video_frames",
        "decode_video_frames_npu",
        "decode_video_frames_torchvision",
        "get_safe_default_codec",
    ),
    "robovid.depth_config": ("DepthEncoderConfig", "depth_encoder_defaults"),
    "robovid.encode": ("encode_video_frames",),
    "robovid.encoder_config": ("RGBEncoderConfig", "VideoEncoderConfig", "rgb_encoder_defaults"),
    "robovid.encoders": ("HW_VIDEO_CODECS", "VALID_VIDEO_CODECS"),
    "robovid.features": ("VideoFrame",),
    "robovid.merge": ("MergeReport", "merge_roots"),
    "robovid.metadata": ("read_lerobot_episodes", "read_segments"),
    "robovid.hardware": ("EncoderProbe", "probe_hardware_encoders"),
    "robovid.probe": ("get_audio_info", "get_video_duration_in_s", "get_video_info", "get_video_pixel_channels"),
    "robovid.reencode": ("reencode_video",),
    "robovid.repair": ("RepairReport", "repair_root"),
    "robovid.settings": ("EncoderSettings",),
    "robovid.streaming": ("StreamingVideoEncoder",),
}
"""The one list of robovid's public names, by the module that defines them. The errors load with
``import robovid``; every other name on first use (PEP 562), so ``import robovid`` stays light.
``__all__`` is made from it; tests/test_public_api.py ties it to the imports below (for type
checkers) and to the names the README uses."""

if TYPE_CHECKING:  # the same names, for type checkers (``X as X``: re-exported)
    from robovid._decode_pyav import decode_video_frames_pyav as decode_video_frames_pyav
    from robovid._decode_torchcodec import decode_video_frames_torchcodec as decode_video_frames_torchcodec
    from robovid.append import VideoSegment as VideoSegment
    from robovid.append import append_video as append_video
    from robovid.append import count_frames as count_frames
    from robovid.append import read_segment as read_segment
    from robovid.append import recover_chunk as recover_chunk
    from robovid.append import undo_append as undo_append
    from robovid.cache import VideoDecoderCache as VideoDecoderCache
    from robovid.compact import ChunkSpace as ChunkSpace
    from robovid.compact import chunk_space as chunk_space
    from robovid.compact import compact_chunk as compact_chunk
    from robovid.concat import concatenate_video_files as concatenate_video_files
    from robovid.decode import decode_episode_frames as decode_episode_frames
    from robovid.decode import decode_video_frames as decode_video_frames
    from robovid.decode import decode_video_frames_npu as decode_video_frames_npu
    from robovid.decode import decode_video_frames_torchvision as decode_video_frames_torchvision
    from robovid.decode import get_safe_default_codec as get_safe_default_codec
    from robovid.depth_config import DepthEncoderConfig as DepthEncoderConfig
    from robovid.depth_config import depth_encoder_defaults as depth_encoder_defaults
    from robovid.encode import encode_video_frames as encode_video_frames
    from robovid.encoder_config import RGBEncoderConfig as RGBEncoderConfig
    from robovid.encoder_config import VideoEncoderConfig as VideoEncoderConfig
    from robovid.encoder_config import rgb_encoder_defaults as rgb_encoder_defaults
    from robovid.encoders import HW_VIDEO_CODECS as HW_VIDEO_CODECS
    from robovid.encoders import VALID_VIDEO_CODECS as VALID_VIDEO_CODECS
    from robovid.errors import BackendUnavailableError as BackendUnavailableError
    from robovid.errors import CorruptFrameError as CorruptFrameError
    from robovid.errors import EmptyEpisodeError as EmptyEpisodeError
    from robovid.errors import EpisodeError as EpisodeError
    from robovid.errors import FrameFormatError as FrameFormatError
    from robovid.errors import FrameMismatchError as FrameMismatchError
    from robovid.errors import FrameSequenceError as FrameSequenceError
    from robovid.errors import FrameSizeError as FrameSizeError
    from robovid.errors import FrameTimestampError as FrameTimestampError
    from robovid.errors import InfoJsonError as InfoJsonError
    from robovid.errors import InvalidEncoderOptionError as InvalidEncoderOptionError
    from robovid.errors import InvalidToleranceError as InvalidToleranceError
    from robovid.errors import LeRobotMetadataError as LeRobotMetadataError
    from robovid.errors import MergeError as MergeError
    from robovid.errors import MergeMismatchError as MergeMismatchError
    from robovid.errors import MetadataError as MetadataError
    from robovid.errors import MismatchedVideosError as MismatchedVideosError
    from robovid.errors import RemoteError as RemoteError
    from robovid.errors import RepairError as RepairError
    from robovid.errors import RobovidError as RobovidError
    from robovid.errors import StreamingError as StreamingError
    from robovid.errors import TruncatedVideoError as TruncatedVideoError
    from robovid.errors import UnevenFrameTimingError as UnevenFrameTimingError
    from robovid.errors import UnknownCameraError as UnknownCameraError
    from robovid.errors import UnreadableFrameError as UnreadableFrameError
    from robovid.errors import UnsafePathError as UnsafePathError
    from robovid.errors import VerificationError as VerificationError
    from robovid.errors import VideoFormatError as VideoFormatError
    from robovid.features import VideoFrame as VideoFrame
    from robovid.hardware import EncoderProbe as EncoderProbe
    from robovid.hardware import probe_hardware_encoders as probe_hardware_encoders
    from robovid.merge import MergeReport as MergeReport
    from robovid.merge import merge_roots as merge_roots
    from robovid.metadata import read_lerobot_episodes as read_lerobot_episodes
    from robovid.metadata import read_segments as read_segments
    from robovid.probe import get_audio_info as get_audio_info
    from robovid.probe import get_video_duration_in_s as get_video_duration_in_s
    from robovid.probe import get_video_info as get_video_info
    from robovid.probe import get_video_pixel_channels as get_video_pixel_channels
    from robovid.reencode import reencode_video as reencode_video
    from robovid.repair import RepairReport as RepairReport
    from robovid.repair import repair_root as repair_root
    from robovid.settings import EncoderSettings as EncoderSettings
    from robovid.streaming import StreamingVideoEncoder as StreamingVideoEncoder

__version__ = "0.1.0"

_LAZY = {name: module for module, names in _PUBLIC.items() if module != "robovid.errors" for name in names}
globals().update({name: getattr(_errors, name) for name in _PUBLIC["robovid.errors"]})
__all__ = sorted(name for names in _PUBLIC.values() for name in names)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'robovid' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
