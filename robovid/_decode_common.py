"""The rules every decoding backend shares: which frame a timestamp means, and when it is too far.

A query timestamp ``ts`` (seconds from the first frame) means frame ``round(ts * fps)``,
clamped to the frames the file has, so a timestamp at or just past the end gets the last
frame. The frame's own timestamp (also counted from the first frame) must then lie within
``tolerance_s`` of the query, inclusive, or :class:`FrameTimestampError` is raised.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, SupportsFloat, TypeAlias

import fsspec
import numpy as np
import numpy.typing as npt
import structlog

from robovid.errors import FrameTimestampError, InvalidToleranceError, VideoFormatError

if TYPE_CHECKING:
    import torch

    Frames: TypeAlias = torch.Tensor | npt.NDArray[np.float32] | npt.NDArray[np.uint8]

log = structlog.get_logger("robovid.decode")

_MAX_PAIRS_SHOWN = 10


def is_local_path(video_path: Path | str) -> bool:
    """True for a plain file system path, False for a URL fsspec must open (``s3://``, ``file://``, ...)."""
    return isinstance(video_path, Path) or fsspec.core.split_protocol(video_path)[0] is None


def check_request(timestamps: Sequence[float], tolerance_s: float, video_path: Path | str) -> list[float]:
    """Return ``timestamps`` as floats, or raise if the request cannot be served.

    Empty ``timestamps`` raise ``ValueError``, a ``tolerance_s`` that is not a number of seconds >= 0
    :class:`InvalidToleranceError`; a negative, NaN or infinite timestamp raises :class:`FrameTimestampError`.
    """
    query = [float(ts) for ts in timestamps]
    if not query:
        raise ValueError(f"No timestamps given for {video_path}: pass at least one timestamp (seconds).")
    check_tolerance_s(tolerance_s, video_path)
    bad = [ts for ts in query if not (ts >= 0 and math.isfinite(ts))]
    if bad:
        raise FrameTimestampError(
            f"Timestamps {bad[:_MAX_PAIRS_SHOWN]} queried from {video_path} are negative or not finite. "
            "Timestamps are seconds from the first frame of the video, 0 or more; check how they were computed."
        )
    return query


def check_tolerance_s(tolerance_s: object, video_path: Path | str) -> None:
    """:class:`InvalidToleranceError` unless ``tolerance_s`` is a number of seconds >= 0 (None has no meaning: the
    reference compares with it, and LeRobot always passes its dataset's ``tolerance_s``, 1e-4 by default)."""
    seconds = math.nan
    if isinstance(tolerance_s, SupportsFloat) and not isinstance(tolerance_s, bool):
        with contextlib.suppress(TypeError, ValueError):  # a torch tensor of several values, say
            seconds = float(tolerance_s)
    if not seconds >= 0:
        raise InvalidToleranceError(
            f"tolerance_s={tolerance_s!r} for {video_path}: it must be a number of seconds >= 0, how far a frame may "
            "be from its queried timestamp. Pass your dataset's tolerance_s (LeRobot's default is 1e-4); "
            "there is no 'no check' value (None), but any frame is accepted with math.inf."
        )


def refuse_depth_as_colour(pix_fmt: str | None, video_path: Path | str) -> None:
    """VideoFormatError for a depth video decoded without ``is_depth``: its 16-bit samples would come back as
    8-bit RGB of a converted grey, a picture that is not the depth the camera measured."""
    from robovid.depth import DEPTH_PIX_FMTS  # not at import: PyAV loads with it

    if pix_fmt in DEPTH_PIX_FMTS:
        raise VideoFormatError(
            f"{video_path} is a depth video ({pix_fmt}): decoded as colour, its samples would be cut to 8-bit RGB. "
            "Decode it with is_depth=True (uint16 [N, 1, H, W], the samples as stored)."
        )


def frame_indices(query: Sequence[float], fps: float, num_frames: int | None) -> list[int]:
    """Frame ``round(ts * fps)`` for each timestamp, clamped to ``[0, num_frames - 1]`` when the count is known."""
    indices = [round(ts * fps) for ts in query]
    if num_frames:
        indices = [min(index, num_frames - 1) for index in indices]
    return indices


def check_tolerance(
    query: Sequence[float], loaded: Sequence[float], tolerance_s: float, video_path: Path | str, backend: str
) -> None:
    """Raise :class:`FrameTimestampError` unless every loaded timestamp is within ``tolerance_s`` of its query."""
    pairs = [(q, ts) for q, ts in zip(query, loaded, strict=True) if not abs(ts - q) <= tolerance_s]
    if not pairs:
        return
    shown = ", ".join(f"{q:.6f}s -> {ts:.6f}s" for q, ts in pairs[:_MAX_PAIRS_SHOWN])
    raise FrameTimestampError(
        f"{len(pairs)} of {len(query)} queried timestamps have no frame within tolerance_s={tolerance_s} "
        f"in {video_path} (backend {backend}); queried -> nearest frame: {shown}. "
        "The nearest frame is too far away in time: the timestamps may be out of sync with the video "
        "(a recording problem) or point past its end. Skip these items during training, or check the "
        "dataset's timestamps against the video's frame count and fps."
        f"\nqueried timestamps: {list(query)}\nloaded timestamps: {list(loaded)}"
    )


def log_loaded(video_path: Path | str, backend: str, query: Sequence[float], loaded: Sequence[float]) -> None:
    """Log the timestamp each query resolved to (the reference's ``log_loaded_timestamps``)."""
    log.info(
        "frames_loaded",
        video_path=str(video_path),
        backend=backend,
        queried_timestamps=list(query),
        loaded_timestamps=list(loaded),
    )


def to_uint8_frames(rgb: npt.NDArray[np.uint8]) -> Frames:
    """Turn ``[N, H, W, 3]`` uint8 RGB into uint8 ``[N, 3, H, W]``: a ``torch.Tensor`` when torch is installed."""
    frames = np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))
    try:
        import torch
    except ImportError:
        return frames
    return torch.from_numpy(frames)


def to_depth_frames(samples: npt.NDArray[np.generic]) -> Frames:
    """``[N, 1, H, W]`` uint16 depth samples as they are: a ``torch.Tensor`` (uint16) when torch is installed."""
    frames = np.ascontiguousarray(samples)
    try:
        import torch
    except ImportError:
        return frames
    return torch.from_numpy(frames)


def to_float_frames(rgb: npt.NDArray[np.uint8]) -> Frames:
    """Turn ``[N, H, W, 3]`` uint8 RGB into float32 ``[N, 3, H, W]`` in ``[0, 1]``.

    A ``torch.Tensor`` when torch is installed (imported here, at call time, never at
    ``import robovid``), else a numpy array of the same shape and dtype.
    """
    frames = np.ascontiguousarray(rgb.transpose(0, 3, 1, 2), dtype=np.float32)
    frames /= 255
    try:
        import torch
    except ImportError:
        return frames
    return torch.from_numpy(frames)
