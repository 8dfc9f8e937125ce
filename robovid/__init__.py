"""robovid: robot-learning PNG episodes to chunked video, crash-safely, and back.

The public API keeps the names, signatures and defaults of LeRobot's video utilities
(so code written against them runs unchanged) and adds in-place appends
(:func:`append_video`) and the segments metadata the ``robovid-watch`` service writes.
Importing robovid never imports torch: only the torchcodec backend does, when called.
"""

from robovid._decode_pyav import decode_video_frames_pyav
from robovid._decode_torchcodec import decode_video_frames_torchcodec
from robovid.append import VideoSegment, append_video, count_frames, read_segment, recover_chunk
from robovid.cache import VideoDecoderCache
from robovid.concat import concatenate_video_files
from robovid.decode import (
    decode_video_frames,
    decode_video_frames_npu,
    decode_video_frames_torchvision,
    get_safe_default_codec,
)
from robovid.encode import encode_video_frames
from robovid.errors import (
    BackendUnavailableError,
    CorruptFrameError,
    EmptyEpisodeError,
    EpisodeError,
    FrameFormatError,
    FrameSequenceError,
    FrameSizeError,
    FrameTimestampError,
    InvalidEncoderOptionError,
    MismatchedVideosError,
    RobovidError,
    UnsafePathError,
    VerificationError,
    VideoFormatError,
)
from robovid.features import VideoFrame, register_with_datasets
from robovid.metadata import decode_episode_frames, read_lerobot_episodes, read_segments
from robovid.probe import get_audio_info, get_video_duration_in_s, get_video_info, get_video_pixel_channels
from robovid.settings import EncoderSettings

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "CorruptFrameError",
    "EmptyEpisodeError",
    "EncoderSettings",
    "EpisodeError",
    "FrameFormatError",
    "FrameSequenceError",
    "FrameSizeError",
    "FrameTimestampError",
    "InvalidEncoderOptionError",
    "MismatchedVideosError",
    "RobovidError",
    "UnsafePathError",
    "VerificationError",
    "VideoDecoderCache",
    "VideoFormatError",
    "VideoFrame",
    "VideoSegment",
    "append_video",
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
]

register_with_datasets()
