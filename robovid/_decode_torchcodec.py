"""torchcodec backend: frames by index from a cached ``VideoDecoder`` in approximate seek mode.

Approximate mode reads the frame rate and count from the header instead of scanning the
whole file, so opening is cheap; robovid's files are constant-rate, where index ``i``
is at ``i / fps`` exactly. torch and torchcodec are imported at call time.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from robovid._decode_common import check_request, check_tolerance, frame_indices, log_loaded, refuse_depth_as_colour
from robovid.cache import VideoDecoderCache
from robovid.errors import VideoFormatError

if TYPE_CHECKING:
    import torch

BACKEND = "torchcodec"

_default_cache: list[VideoDecoderCache] = []
_default_cache_lock = threading.Lock()


def default_decoder_cache() -> VideoDecoderCache:
    """The cache shared by calls that pass none, built on first use (its size read from the environment then)."""
    with _default_cache_lock:
        if not _default_cache:
            cache = VideoDecoderCache()
            atexit.register(cache.clear)  # close its files before the interpreter tears down
            _default_cache.append(cache)
        return _default_cache[0]


def decode_video_frames_torchcodec(
    video_path: Path | str,
    timestamps: Sequence[float],
    tolerance_s: float,
    log_loaded_timestamps: bool = False,
    decoder_cache: VideoDecoderCache | None = None,
    return_uint8: bool = False,
) -> torch.Tensor:
    """Decode the frames at ``timestamps`` (seconds) from ``video_path`` with torchcodec.

    Returns a float32 tensor ``[N, 3, H, W]`` in ``[0, 1]`` in query order (duplicates
    allowed), or torchcodec's uint8 frames as they are with ``return_uint8`` (no conversion). Decoders come from ``decoder_cache`` (a module-wide bounded cache if None),
    which reopens a file that changed since it was cached. Raises
    :class:`FrameTimestampError` when a frame is farther than ``tolerance_s`` from its
    query, :class:`BackendUnavailableError` when torchcodec cannot load.
    """
    import torch

    query = check_request(timestamps, tolerance_s, video_path)
    cache = decoder_cache if decoder_cache is not None else default_decoder_cache()
    with cache.borrow_decoder(video_path) as decoder:
        metadata = decoder.metadata
        if not metadata.average_fps:
            raise VideoFormatError(f"{video_path}: the video stream declares no frame rate.")
        refuse_depth_as_colour(metadata.pixel_format, video_path)
        indices = frame_indices(query, metadata.average_fps, metadata.num_frames)
        batch = decoder.get_frames_at(indices=indices)
    begin_s = metadata.begin_stream_seconds or 0.0
    loaded = [pts_s - begin_s for pts_s in batch.pts_seconds.tolist()]
    check_tolerance(query, loaded, tolerance_s, video_path, BACKEND)
    if log_loaded_timestamps:
        log_loaded(video_path, BACKEND, query, loaded)
    if return_uint8:
        return batch.data
    return batch.data.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
