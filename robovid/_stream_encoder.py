"""The encoder thread of :class:`robovid.StreamingVideoEncoder`: one camera episode's frames into closed segments.

LeRobot's ``_CameraEncoderThread`` signature; robovid's thread writes closed MP4 segments
(:mod:`robovid.stream_files`) and, unless asked to leave them, joins them into the one video.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import structlog
from av.video.reformatter import VideoReformatter

from robovid._faults import fault_point
from robovid._movie import check_compatible, read_movie, write_movie
from robovid.durable import atomic_output
from robovid.encode import FrameRate, _check_encodable, _frame_rate
from robovid.encoder_config import VideoEncoderConfig
from robovid.errors import FrameFormatError
from robovid.fingerprint import fingerprint
from robovid.lerobot_stats import FeatureStats, image_stats_from_counts
from robovid.settings import EncoderSettings
from robovid.stream_files import SegmentWriter, channel_counts, raw_path, segment_data_path

log = structlog.get_logger(__name__)

SEGMENT_FRAMES = 30
"""Frames per closed MP4 segment: with ``handoff`` the crash log holds at most this plus the queue."""


def as_rgb_frame(image: Any) -> npt.NDArray[np.uint8]:
    """A contiguous ``H x W x 3`` uint8 copy of a fed frame (``3 x H x W`` is transposed).

    uint8 values, and integers of any dtype in 0..255, are taken as they are; floats are LeRobot's
    ``[0, 1]`` (scaled by 255, rounded). FrameFormatError for anything else (integers past 255,
    floats past 1 or not finite): scaling them would store another picture than the camera's.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim != 3 or array.shape[2] != 3:
        raise FrameFormatError(
            f"A streamed frame must be H x W x 3 or 3 x H x W (RGB); got shape {array.shape}. "
            "Convert grey or RGBA frames to RGB before feeding them."
        )
    if array.dtype != np.uint8:
        array = _to_uint8(array)
    return np.array(array, dtype=np.uint8, order="C", copy=True)


def _to_uint8(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    if np.issubdtype(array.dtype, np.integer) and (array.size == 0 or (array.min() >= 0 and array.max() <= 255)):
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32) * np.float32(255.0)
        if array.size == 0 or (np.isfinite(scaled).all() and scaled.min() >= -0.5 and scaled.max() <= 255.5):
            return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    low, high = (array.min(), array.max()) if array.size else (None, None)
    raise FrameFormatError(
        f"A streamed frame of dtype {array.dtype} holds values {low}..{high}: frames are uint8 RGB (integers 0..255 "
        "of another dtype are taken as they are) or floats in [0, 1]. Convert it to uint8 before feeding it."
    )


def lerobot_shaped(stats: FeatureStats) -> dict[str, Any]:
    """Statistics as LeRobot's streaming encoder returns them: per channel, shape ``(3,)``, in 0..255.

    (LeRobot's dataset writer divides them by 255 and reshapes them to ``(3, 1, 1)``.) ``count`` is
    the number of frames counted: robovid counts every frame, downsampled as LeRobot does.
    """
    return {key: value if key == "count" else value.reshape(-1) * 255.0 for key, value in stats.items()}


class _CameraEncoderThread(threading.Thread):
    """Encodes one camera episode's frames from ``frame_queue`` into segments, then (by default) one MP4.

    LeRobot's signature: put arrays on ``frame_queue``, then ``None``; the thread writes ``video_path``
    and puts ``("ok", stats)`` (``stats`` None below 2 frames) or ``("error", message)`` on
    ``result_queue``. ``stop_event`` abandons the episode (nothing is published). robovid's own use
    passes ``workdir`` (where segments go) and ``join=False`` (the segments are the result).
    """

    def __init__(
        self,
        video_path: Path,
        fps: FrameRate,
        video_encoder: VideoEncoderConfig,
        frame_queue: queue.Queue[Any],
        result_queue: queue.Queue[Any],
        stop_event: threading.Event,
        encoder_threads: int | None = None,
        *,
        workdir: Path | None = None,
        segment_frames: int = SEGMENT_FRAMES,
        join: bool = True,
    ) -> None:
        super().__init__(daemon=True, name="robovid-stream-encoder")
        self.video_path = Path(video_path)
        self.fps = fps
        self.video_encoder = video_encoder
        self.frame_queue = frame_queue
        self.result_queue = result_queue
        self.stop_event = stop_event
        self.encoder_threads = encoder_threads
        self.workdir = workdir
        self.segment_frames = segment_frames
        self.join_segments = join
        self.settings: EncoderSettings = video_encoder.to_settings(encoder_threads)
        self.frames = 0
        self.counts = np.zeros((3, 256), np.int64)
        self.segments: list[Path] = []

    def run(self) -> None:
        writer: SegmentWriter | None = None
        try:
            self.video_path.parent.mkdir(parents=True, exist_ok=True)
            workdir = self.workdir or Path(tempfile.mkdtemp(dir=self.video_path.parent, prefix=".segments-"))
            workdir.mkdir(parents=True, exist_ok=True)
            reformatter = VideoReformatter()
            rate = _frame_rate(self.fps)
            while True:
                item = self._next()
                if item is None:
                    break
                if item is _STOP:
                    if writer is not None:
                        writer.abandon()
                    self.result_queue.put(("error", "stopped"))
                    return
                fault_point("stream:before-encode", self.stop_event)
                rgb = as_rgb_frame(item)
                if writer is None:
                    height, width = rgb.shape[:2]
                    _check_encodable(width, height, self.settings, self.video_path)
                    writer = SegmentWriter(workdir, len(self.segments), rate, self.settings, width, height)
                source = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = reformatter.reformat(source, format=self.settings.pix_fmt, threads=1)
                counts = channel_counts(rgb)
                writer.encode(frame, fingerprint(frame), counts)
                self.counts += counts
                self.frames += 1
                if writer.frames == self.segment_frames:
                    self._publish(writer)
                    writer = None
            if writer is not None:
                self._publish(writer)
                writer = None
            if self.join_segments and self.segments:
                join_videos(self.segments, self.video_path)
                for path in self.segments:
                    path.unlink()
                    segment_data_path(path.parent, int(path.stem[4:])).unlink(missing_ok=True)
                if self.workdir is None:
                    shutil.rmtree(workdir, ignore_errors=True)
            stats = lerobot_shaped(image_stats_from_counts(self.counts, self.frames)) if self.frames >= 2 else None
            self.result_queue.put(("ok", stats))
        except Exception as error:  # reported to the feeding thread, as LeRobot's thread does
            log.error("stream_encoder_failed", path=str(self.video_path), detail=str(error))
            if writer is not None:
                writer.abandon()
            self.result_queue.put(("error", f"{type(error).__name__}: {error}"))

    def _next(self) -> Any:
        while True:
            if self.stop_event.is_set():
                return _STOP
            try:
                return self.frame_queue.get(timeout=0.1)
            except queue.Empty:
                continue

    def _publish(self, writer: SegmentWriter) -> None:
        self.segments.append(writer.publish())
        fault_point("stream:after-publish")
        if self.workdir is not None:  # the crash log of these frames is no longer needed
            raw_path(self.workdir, writer.number).unlink(missing_ok=True)


_STOP = object()
"""What :meth:`_CameraEncoderThread._next` returns once the stop event is set."""


def join_videos(paths: list[Path], destination: Path) -> None:
    """Join closed MP4s of one encode (segments, a tail) into ``destination``, atomically."""
    movies = [read_movie(p) for p in paths]
    for movie in movies[1:]:
        check_compatible(movies[0], movie)
    with atomic_output(destination) as temp, open(temp, "wb") as out:
        write_movie(out, movies)
