"""PyAV backend: seek to the keyframe before each wanted frame, decode forward, match by pts.

Frame ``i`` has the presentation timestamp ``start + i / fps`` (in the stream's time
base). For each wanted frame the reader seeks to the keyframe at or before that pts,
decodes forward and keeps the frame whose pts is the target's (within half a frame, to
absorb time-base rounding). It never counts decoded frames: with B-frames or open GOPs
the decoder's output order after a seek is not the index order, and counting is how
the wrong frame comes back. Requests are served in ascending order, and a target a
short way ahead of the last decoded frame is reached by decoding on instead of seeking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import av
import numpy as np
import numpy.typing as npt

from robovid._decode_common import (
    check_request,
    check_tolerance,
    frame_indices,
    is_local_path,
    log_loaded,
    refuse_depth_as_colour,
    to_depth_frames,
    to_float_frames,
    to_uint8_frames,
)
from robovid.depth import DEPTH_PIX_FMTS, frame_samples
from robovid.errors import VideoFormatError
from robovid.remote import open_video_file

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

    from robovid._decode_common import Frames

BACKEND = "pyav"
MIN_FORWARD_FRAMES = 4
"""Decode on (rather than seek) to a target at most this many frames ahead, or one GOP if longer."""


def decode_video_frames_pyav(
    video_path: Path | str,
    timestamps: Sequence[float],
    tolerance_s: float,
    log_loaded_timestamps: bool = False,
    return_uint8: bool = False,
    is_depth: bool = False,
) -> Frames:
    """Decode the frames at ``timestamps`` (seconds) from ``video_path`` with PyAV.

    Returns float32 ``[N, 3, H, W]`` in ``[0, 1]`` in query order (duplicates allowed), or
    uint8 ``[N, 3, H, W]`` with ``return_uint8``: a ``torch.Tensor`` when torch is installed,
    else a numpy array. With ``is_depth`` (a depth video, :mod:`robovid.depth`), uint16
    ``[N, 1, H, W]``, the samples as stored: millimetres for robovid's exact ``gray16le``,
    12-bit codes for LeRobot's ``gray12le`` (``robovid.depth.dequantize_depth``). ``video_path`` may
    be a local path or any fsspec URL. Raises :class:`FrameTimestampError` when a frame
    is farther than ``tolerance_s`` from its query, ``VideoFormatError`` when the file
    is not a readable video.
    """
    query = check_request(timestamps, tolerance_s, video_path)
    with _open_video(video_path) as container:
        stream = _video_stream(container, video_path)
        clock = _StreamClock.of(stream, video_path)
        indices = frame_indices(query, float(clock.fps), clock.num_frames)
        if is_depth and stream.pix_fmt not in DEPTH_PIX_FMTS:
            raise VideoFormatError(
                f"{video_path}: is_depth=True, but the stream's pixel format is {stream.pix_fmt}, not a depth format "
                f"({', '.join(DEPTH_PIX_FMTS)}). Decode it without is_depth."
            )
        if not is_depth:
            refuse_depth_as_colour(stream.pix_fmt, video_path)
        reader = _ForwardReader(container, stream, clock, video_path)
        decoded = _decode_indices(reader, clock, sorted(set(indices)), depth_planes if is_depth else rgb_pixels)
    loaded = [decoded[i][1] for i in indices]
    check_tolerance(query, loaded, tolerance_s, video_path, BACKEND)
    if log_loaded_timestamps:
        log_loaded(video_path, BACKEND, query, loaded)
    if is_depth:
        return to_depth_frames(np.stack([decoded[i][0] for i in indices]))
    rgb = np.stack([decoded[i][0] for i in indices])
    return to_uint8_frames(rgb) if return_uint8 else to_float_frames(rgb)


@contextmanager
def _open_video(video_path: Path | str) -> Iterator[InputContainer]:
    """Open a local path directly, or a URL through fsspec; raise ``VideoFormatError`` for a non-video."""
    with ExitStack() as stack:
        if is_local_path(video_path):
            source: str | IO[bytes] = str(video_path)
        else:
            source = stack.enter_context(open_video_file(str(video_path))[0])  # range reads (robovid.remote)
        try:
            container = av.open(source, "r")
        except FileNotFoundError:
            raise
        except av.error.FFmpegError as error:
            raise VideoFormatError(f"{video_path}: PyAV cannot open it as a video ({error}).") from error
        yield stack.enter_context(container)


def _video_stream(container: InputContainer, video_path: Path | str) -> VideoStream:
    """The first video stream, set to decode on one thread (as torchcodec does by default).

    A few frames per call do not repay starting a thread pool: one thread measured twice
    as fast for a random frame, at 160x120 as at 1280x720. Parallelism belongs to the
    data loader's workers.
    """
    if not container.streams.video:
        raise VideoFormatError(f"{video_path}: the file has no video stream.")
    stream = container.streams.video[0]
    stream.thread_count = 1
    return stream


@dataclass(frozen=True)
class _StreamClock:
    """Where frame ``i`` of a constant-rate stream sits, in the stream's time base."""

    time_base: Fraction
    start_pts: int
    fps: Fraction
    num_frames: int | None
    """From the container header; None when the header does not say."""

    @classmethod
    def of(cls, stream: VideoStream, video_path: Path | str) -> _StreamClock:
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps or stream.time_base is None:
            raise VideoFormatError(f"{video_path}: the video stream declares no frame rate or time base.")
        return cls(stream.time_base, stream.start_time or 0, Fraction(fps), stream.frames or None)

    @property
    def frame_pts(self) -> int:
        """One frame's duration in pts units (at least 1)."""
        return max(1, round(1 / (self.fps * self.time_base)))

    def pts_of(self, index: int) -> int:
        return self.start_pts + round(index / (self.fps * self.time_base))

    def seconds_of(self, pts: int) -> float:
        """Seconds from the first frame, as query timestamps count them."""
        return float((pts - self.start_pts) * self.time_base)


def rgb_pixels(frame: av.VideoFrame) -> npt.NDArray[np.generic]:
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def depth_planes(frame: av.VideoFrame) -> npt.NDArray[np.generic]:
    """``(1, H, W)`` uint16: the samples as stored, unscaled (``to_ndarray`` would convert gray16le to 12 bits)."""
    return frame_samples(frame)[None].copy()


def _decode_indices(
    reader: _ForwardReader,
    clock: _StreamClock,
    wanted: Sequence[int],
    pixels: Callable[[av.VideoFrame], npt.NDArray[np.generic]] = rgb_pixels,
) -> dict[int, tuple[npt.NDArray[np.generic], float]]:
    """Pixels (``pixels`` of the frame: RGB by default) and loaded timestamp (seconds) of each index in ``wanted``."""
    decoded: dict[int, tuple[npt.NDArray[np.generic], float]] = {}
    for index in wanted:
        frame = reader.frame_at(clock.pts_of(index))
        decoded[index] = (pixels(frame), clock.seconds_of(_pts(frame)))
    return decoded


def _pts(frame: av.VideoFrame) -> int:
    """The frame's pts, never None here: ``_ForwardReader._decode`` drops frames without one."""
    return cast(int, frame.pts)


class _ForwardReader:
    """Decodes one stream forward from its last seek, so near targets need no new seek."""

    def __init__(
        self, container: InputContainer, stream: VideoStream, clock: _StreamClock, video_path: Path | str
    ) -> None:
        self._video_path = video_path
        self._container = container
        self._stream = stream
        self._clock = clock
        self._half = clock.frame_pts // 2
        self._frames: Iterator[av.VideoFrame] = iter(())
        self._pending: av.VideoFrame | None = None  # read past a target; may be the next one
        self._last: av.VideoFrame | None = None  # the latest frame consumed since the seek
        self._last_key_pts: int | None = None
        self._gop_pts = 0  # spacing of the last two keyframes seen

    def frame_at(self, target: int) -> av.VideoFrame:
        """The decoded frame whose pts is ``target`` (or the nearest one, if none is)."""
        if not self._can_decode_on_to(target):
            self._seek_before(target)
        return self._advance_to(target)

    def _can_decode_on_to(self, target: int) -> bool:
        if self._last is None:
            return False
        distance = target - _pts(self._last)
        forward_limit = max(self._gop_pts, MIN_FORWARD_FRAMES * self._clock.frame_pts)
        return self._half < distance <= forward_limit

    def _seek_before(self, target: int) -> None:
        """Seek so that decoding starts at or before ``target``, going further back if needed.

        Seeking uses the container's index, which (in MP4) holds decode timestamps: with
        B-frames a keyframe found by dts may already be past ``target`` in pts. Then the
        seek is repeated from earlier and earlier points, down to the start of the stream.
        """
        seek_pts, step = target, self._clock.frame_pts
        while True:
            self._container.seek(seek_pts, stream=self._stream, backward=True)
            self._frames, self._last, self._last_key_pts = self._decode(), None, None
            self._pending = next(self._frames, None)
            if self._pending is None or _pts(self._pending) <= target + self._half:
                return
            if seek_pts <= self._clock.start_pts:
                return
            seek_pts, step = max(self._clock.start_pts, seek_pts - step), step * 2

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Frames with a pts from the current position, noting keyframe spacing on the way."""
        for frame in self._container.decode(self._stream):
            if frame.pts is None:
                continue
            if frame.key_frame:
                if self._last_key_pts is not None and frame.pts > self._last_key_pts:
                    self._gop_pts = frame.pts - self._last_key_pts
                self._last_key_pts = frame.pts
            yield frame

    def _next(self) -> av.VideoFrame | None:
        frame, self._pending = self._pending, None
        return frame if frame is not None else next(self._frames, None)

    def _advance_to(self, target: int) -> av.VideoFrame:
        """Consume frames up to ``target``; return the match, the nearer neighbour, or the last frame."""
        while (frame := self._next()) is not None:
            pts = _pts(frame)
            if pts < target - self._half:
                self._last = frame
                continue
            if pts <= target + self._half:
                self._last = frame
                return frame
            self._pending = frame  # passed the target: there is no frame at it
            if self._last is not None and target - _pts(self._last) <= pts - target:
                return self._last
            return frame
        if self._last is None:
            raise VideoFormatError(f"{self._video_path}: no frame could be decoded at or after pts {target}.")
        return self._last
