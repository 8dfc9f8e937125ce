"""Encode a folder of PNG frames into an MP4, with PNG decoding and encoding overlapped.

A reader thread decodes PNGs and converts them to the encoder's pixel format while
the encoder (its own native threads) compresses the previous frames; a small bounded
queue between them keeps memory flat whatever the episode length. The output is
written to a temp file beside the destination, fsynced and renamed into place.
"""

from __future__ import annotations

import logging
import numbers
import os
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias, TypeVar, cast

import av
import numpy as np
import structlog
from av.video.reformatter import VideoReformatter

from robovid._faults import fault_point
from robovid._stop import StopFlag
from robovid.durable import atomic_output
from robovid.encoder_config import VideoEncoderConfig
from robovid.errors import EmptyEpisodeError, FrameSizeError, InvalidEncoderOptionError
from robovid.fingerprint import Fingerprint, fingerprint
from robovid.frames import frame_size, list_episode_frames, read_frame_rgb
from robovid.lerobot_stats import FrameStatsAccumulator
from robovid.settings import EncoderSettings, reference_compatible

log = structlog.get_logger(__name__)

DEMOTE_EVERY_FRAMES = 64
"""How often (in frames) encoder threads are checked for real-time scheduling."""
PREFETCH_FRAMES = 8
"""Decoded frames waiting for the encoder; bounds memory (8 x 2.7 MB at 1280x720)."""
FrameRate: TypeAlias = int | float | Fraction | np.integer[Any] | np.floating[Any]
"""What an ``fps`` argument may be: any real number, numpy scalars included (LeRobot reads fps from dataset
metadata as ``np.int64``); :func:`_frame_rate` checks its value."""


@dataclass
class EncodeResult:
    """What one encode produced and what it cost."""

    video_path: Path | None
    """The published file (None for an encode into a file object)."""
    num_frames: int
    width: int
    height: int
    size_bytes: int
    encode_s: float
    """Wall seconds from the first PNG read to the fsynced file."""
    read_cpu_s: float
    """CPU seconds the reader thread spent decoding and converting PNGs."""
    kept_frames: dict[int, np.ndarray] = field(default_factory=dict)
    """Source frames (RGB) kept for verification, by frame index."""
    fingerprints: list[Fingerprint] = field(default_factory=list)
    """Every source frame's fingerprint, in order (empty unless asked for), for verification."""


Result = TypeVar("Result", bound=EncodeResult)


def encode_video_frames(
    imgs_dir: Path | str,
    video_path: Path | str,
    fps: FrameRate,
    vcodec: str | VideoEncoderConfig | None = "libsvtav1",
    pix_fmt: str | int | None = "yuv420p",
    g: int | None = 2,
    crf: int | float | None = 30,
    fast_decode: int = 0,
    log_level: int | None = av.logging.ERROR,
    overwrite: bool = False,
    preset: int | str | None = None,
    encoder_threads: int | None = None,
    *,
    video_encoder: VideoEncoderConfig | None = None,
) -> None:
    """Encode ``imgs_dir/frame-XXXXXX.png`` into ``video_path``.

    LeRobot's signatures all work: the seed era's separate options (``vcodec``,
    ``pix_fmt``, ``g``, ``crf``, ``fast_decode``, ``preset``), LeRobot 0.4's with
    ``encoder_threads`` after ``preset`` (also positionally), and the current one,
    ``video_encoder=`` a :class:`~robovid.RGBEncoderConfig` (or a :class:`~robovid.DepthEncoderConfig`
    for 16-bit depth frames, PNG or LeRobot's TIFF) and ``encoder_threads=``, also
    positionally (``encode_video_frames(imgs_dir, video_path, fps, config, threads)``).
    Frames must run 0..N-1 with no gap and share one size. Raises
    InvalidEncoderOptionError for an unsupported option (naming the supported values),
    TypeError for a config given together with separate options, and an EpisodeError
    subclass for bad frames; the destination is then untouched. An existing
    ``video_path`` is kept (with a warning) unless ``overwrite``.
    """
    video_path = Path(video_path)
    rate = _frame_rate(fps)
    settings = _call_settings(vcodec, pix_fmt, g, crf, fast_decode, preset, video_encoder, encoder_threads)
    if video_path.exists() and not overwrite:
        log.warning("video_exists_skipping_encode", path=str(video_path))
        return
    if log_level is not None:
        logging.getLogger("libav").setLevel(log_level)  # as the reference: PyAV's logger for FFmpeg messages
    if settings.depth is not None:  # a DepthEncoderConfig: 16-bit depth frames (robovid.depth_encode)
        from robovid.depth_encode import encode_depth_frames, list_depth_frames

        encode_depth_frames(list_depth_frames(Path(imgs_dir)), video_path, rate, settings)
        return
    encode_frames(list_episode_frames(Path(imgs_dir)), video_path, rate, settings)


_SEED_DEFAULTS = {"pix_fmt": "yuv420p", "g": 2, "crf": 30, "fast_decode": 0, "preset": None}


def _call_settings(
    vcodec: str | VideoEncoderConfig | None,
    pix_fmt: str | int | None,
    g: int | None,
    crf: int | float | None,
    fast_decode: int,
    preset: int | str | None,
    video_encoder: VideoEncoderConfig | None,
    encoder_threads: int | None,
) -> EncoderSettings:
    """The settings of an ``encode_video_frames`` call, in either of its two forms."""
    # LeRobot's current order, positional: (imgs_dir, video_path, fps, video_encoder, encoder_threads); its
    # video_encoder=None (the defaults) takes the seed era's vcodec place, where None was never a codec
    if isinstance(vcodec, VideoEncoderConfig) or vcodec is None:
        if video_encoder is not None and vcodec is not None:
            raise TypeError("encode_video_frames() got video_encoder twice (positionally and by keyword).")
        video_encoder, vcodec = video_encoder if vcodec is None else vcodec, "libsvtav1"
        if pix_fmt is None or (isinstance(pix_fmt, int) and not isinstance(pix_fmt, bool)):
            if pix_fmt is not None and encoder_threads is not None:
                raise TypeError("encode_video_frames() got encoder_threads twice (after the config and later).")
            encoder_threads = encoder_threads if pix_fmt is None else pix_fmt
            pix_fmt = "yuv420p"
    if video_encoder is None:
        if not isinstance(pix_fmt, str):
            raise InvalidEncoderOptionError(
                f"Invalid pix_fmt ({pix_fmt!r}): it must be a pixel format name.", "pix_fmt"
            )
        pix_fmt = reference_compatible(vcodec, pix_fmt)
        return EncoderSettings(vcodec, pix_fmt, g, crf, preset, fast_decode, threads=encoder_threads)
    given = {"vcodec": vcodec != "libsvtav1"} | {
        name: value != _SEED_DEFAULTS[name]
        for name, value in (
            ("pix_fmt", pix_fmt),
            ("g", g),
            ("crf", crf),
            ("fast_decode", fast_decode),
            ("preset", preset),
        )
    }
    if any(given.values()):
        raise TypeError(
            f"encode_video_frames() got video_encoder and also {', '.join(n for n, v in given.items() if v)}: "
            "set those in the video_encoder config instead."
        )
    return video_encoder.to_settings(encoder_threads)


def encode_frames(
    frame_paths: Sequence[Path],
    video_path: Path,
    fps: FrameRate,
    settings: EncoderSettings,
    keep: Collection[int] = (),
    stop: StopFlag | None = None,
    fingerprints: bool = False,
) -> EncodeResult:
    """Encode the given frames, in order, into ``video_path`` (published atomically).

    ``keep`` names frame indices whose decoded RGB source is returned for
    verification, so the caller never has to read those PNGs again; with
    ``fingerprints``, every source frame's :class:`~robovid.fingerprint.Fingerprint`
    is returned too. ``stop``, when set, abandons the encode between frames
    (InterruptedError; nothing published).
    """
    return publish_encode(
        video_path, lambda out: encode_frames_into(out, frame_paths, fps, settings, keep, stop, fingerprints)
    )


def publish_encode(video_path: Path, encode_into: Callable[[BinaryIO], Result]) -> Result:
    """Run ``encode_into`` on a temp file beside ``video_path``, then publish it atomically (nothing there on error)."""
    with atomic_output(video_path) as temp, open(temp, "w+b") as out:
        result = encode_into(out)
    result.video_path = video_path
    return result


def encode_frames_into(
    out: BinaryIO,
    frame_paths: Sequence[Path],
    fps: FrameRate,
    settings: EncoderSettings,
    keep: Collection[int] = (),
    stop: StopFlag | None = None,
    fingerprints: bool = False,
    stats: FrameStatsAccumulator | None = None,
) -> EncodeResult:
    """Encode into a seekable binary file object (for example a spooled temp file held in memory).

    The service encodes this way so an episode's bytes are written to disk once, into
    the chunk, instead of twice (temp file, then chunk). ``stats``, when given, is fed
    every decoded frame (LeRobot's statistics are counted from the sampled ones).
    """
    if not frame_paths:
        raise EmptyEpisodeError(f"No frames to encode in {frame_paths!r}.")
    rate = _frame_rate(fps)
    started = time.perf_counter()
    reader = _FrameReader(frame_paths, settings.pix_fmt, set(keep), fingerprints, stats)
    try:
        first = reader.first_frame()
        _check_encodable(first.width, first.height, settings, frame_paths[0])
        encode_stream(out, first, reader, rate, settings, stop)
    finally:
        reader.close()
    return encode_result(
        EncodeResult,
        out,
        first,
        len(frame_paths),
        started,
        reader.cpu_s,
        kept_frames=reader.kept,
        fingerprints=reader.fingerprints,
    )


def encode_result(
    result_type: type[Result],
    out: BinaryIO,
    first: av.VideoFrame,
    num_frames: int,
    started: float,
    read_cpu_s: float,
    **fields: Any,
) -> Result:
    """The result of an encode into ``out`` (flushed here) that began at ``started`` (``time.perf_counter()``)."""
    out.flush()
    return result_type(
        video_path=None,
        num_frames=num_frames,
        width=first.width,
        height=first.height,
        size_bytes=out.seek(0, 2),
        encode_s=time.perf_counter() - started,
        read_cpu_s=read_cpu_s,
        **fields,
    )


def _frame_rate(fps: FrameRate) -> Fraction:
    """fps as an exact rate, a float or numpy float by its shortest decimal (29.97 -> 2997/100); ValueError for a
    bool, NaN, infinity, anything <= 0 or > 1000, or not a real number."""
    if isinstance(fps, (bool, np.bool_)) or not isinstance(fps, numbers.Real) or not 0 < fps <= 1000:
        raise ValueError(f"Invalid fps ({fps!r}). It must be a number from 1 to 1000, such as 30.")
    if isinstance(fps, numbers.Rational):  # int, Fraction, numpy integers
        return Fraction(int(fps.numerator), int(fps.denominator))
    return Fraction(str(fps) if isinstance(fps, np.floating) else repr(float(fps)))


def _check_encodable(width: int, height: int, settings: EncoderSettings, path: Path) -> None:
    if settings.pix_fmt == "yuv420p" and (width % 2 or height % 2):
        raise FrameSizeError(
            f"{path}: frame size {width}x{height} is odd; yuv420p needs an even width and height. "
            "Crop or pad the frames in the recorder, or encode 4:4:4 (library: vcodec='h264', pix_fmt='yuv444p'; "
            "service: ROBOVID_VCODEC=h264 ROBOVID_PIX_FMT=yuv444p)."
        )
    if width < 16 or height < 16:
        raise FrameSizeError(f"{path}: frame size {width}x{height} is too small to encode (16x16 at least).")


def encode_stream(
    out: BinaryIO,
    first: av.VideoFrame,
    frames: Iterable[av.VideoFrame],
    fps: Fraction,
    settings: EncoderSettings,
    stop: StopFlag | None = None,
) -> None:
    """Encode ``frames`` (``first`` is the first of them, already in ``settings.pix_fmt``) as an MP4 into ``out``.

    The MP4 comment tag records ``settings``. An option the encoder did not use (a typo,
    or one meant for another encoder) raises :class:`InvalidEncoderOptionError` as soon as
    the encoder opens, before more frames are read.
    """
    with av.open(out, "w", format="mp4") as container:
        container.metadata["comment"] = settings.to_tag()
        stream = cast(
            av.video.stream.VideoStream,
            container.add_stream(settings.encoder_name, rate=fps, options=settings.codec_options()),
        )
        stream.width, stream.height, stream.pix_fmt = first.width, first.height, settings.pix_fmt
        for index, frame in enumerate(frames):
            if stop is not None and stop.is_set():
                raise InterruptedError("Encoding abandoned: stop requested.")
            container.mux(stream.encode(frame))
            if index == 0:
                _check_options_used(stream, settings)
            if index % DEMOTE_EVERY_FRAMES == 0:
                demote_realtime_threads()
            fault_point("encode:frame", stop)
        container.mux(stream.encode(None))


def _check_options_used(stream: av.video.stream.VideoStream, settings: EncoderSettings) -> None:
    """FFmpeg leaves the options an encoder does not know in the dict it was opened with."""
    unused = sorted(stream.codec_context.options)
    if unused:
        raise InvalidEncoderOptionError(
            f"{settings.encoder_name} did not use the options {', '.join(unused)} (vcodec={settings.vcodec!r}): "
            "they are misspelled or belong to another encoder. Remove them from extra_options, or check the "
            "encoder's options with `ffmpeg -h encoder=" + settings.encoder_name + "`.",
            unused[0],
        )


def demote_realtime_threads() -> int:
    """Move this process's SCHED_FIFO/SCHED_RR threads back to normal scheduling; return how many.

    SVT-AV1 asks for real-time priority for its worker threads, and gets it when the
    process runs as root (or holds CAP_SYS_NICE). Real-time encoder threads on a robot
    would starve its control loop, whatever the service's Nice= or CPUWeight= say.
    """
    demoted = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for task in tasks:
        tid = int(task)
        try:
            if os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR):
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                demoted += 1
        except OSError:
            continue  # the thread ended meanwhile
    return demoted


class _FrameReader:
    """Decodes PNGs on a background thread, a few frames ahead of the encoder."""

    def __init__(
        self,
        paths: Sequence[Path],
        pix_fmt: str,
        keep: set[int],
        fingerprints: bool,
        stats: FrameStatsAccumulator | None = None,
    ) -> None:
        self._paths = paths
        self._pix_fmt = pix_fmt
        self._keep = keep
        self._fingerprints = fingerprints
        self._stats = stats
        self.kept: dict[int, np.ndarray] = {}
        self.fingerprints: list[Fingerprint] = []
        self.cpu_s = 0.0
        self._queue: queue.Queue[av.VideoFrame | BaseException | None] = queue.Queue(PREFETCH_FRAMES)
        self._closed = threading.Event()
        self._first: av.VideoFrame | None = None
        self._thread = threading.Thread(target=self._run, name="robovid-png-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.thread_time()
        try:
            width, height = frame_size(self._paths[0])
            rgb_frame, rgb = _rgb_frame(width, height)
            reformatter = VideoReformatter()
            for index, path in enumerate(self._paths):
                rgb = read_frame_rgb(path, out=rgb)
                if index in self._keep:
                    self.kept[index] = rgb.copy()
                if self._stats is not None:
                    self._stats.add(index, rgb)
                # rgb_frame is None when FFmpeg pads the rows of this width: then copy into a new frame
                source = rgb_frame if rgb_frame is not None else av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = reformatter.reformat(source, format=self._pix_fmt, threads=1)
                if self._fingerprints:  # of the very frame the encoder gets (its YUV planes)
                    self.fingerprints.append(fingerprint(frame))
                if not self._put(frame):
                    return
            self._put(None)
        except BaseException as error:  # handed to the encoder thread, which re-raises it
            self._put(error)
        finally:
            self.cpu_s = time.thread_time() - started

    def _put(self, item: av.VideoFrame | BaseException | None) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self) -> av.VideoFrame | None:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def first_frame(self) -> av.VideoFrame:
        """The first frame (read once, then also yielded by iteration)."""
        if self._first is None:
            first = self._get()
            if first is None:
                raise EmptyEpisodeError(f"No frames could be read from {self._paths[0].parent}.")
            self._first = first
        return self._first

    def __iter__(self) -> Iterator[av.VideoFrame]:
        yield self.first_frame()
        while (frame := self._get()) is not None:
            yield frame

    def close(self) -> None:
        self._closed.set()
        self._thread.join()


def _rgb_frame(width: int, height: int) -> tuple[av.VideoFrame | None, np.ndarray]:
    """A reusable rgb24 frame and a ``(height, width, 3)`` array over its pixels, for decoding in place.

    Each PNG is decoded straight into the frame's buffer, which the colour conversion then reads:
    no copy and no new buffer per frame. When FFmpeg pads the rows (a width whose 3 bytes per
    pixel are not a multiple of its alignment), there is no such view: (None, a plain array).
    """
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    if plane.line_size != width * 3:
        return None, np.empty((height, width, 3), np.uint8)
    return frame, np.frombuffer(memoryview(plane), np.uint8, count=height * width * 3).reshape(height, width, 3)
