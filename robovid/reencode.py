"""Re-encode a video with other settings, optionally trimmed: LeRobot's ``reencode_video``, crash-safe.

The output is written to a temp file beside its destination, fsynced and renamed into
place (then the directory fsynced), like every file robovid publishes: a crash leaves the
old output (or none), never half a video. The input may be the output itself
(``overwrite=True``): it is read to the end before the rename replaces it. A whole input's identity
records (:mod:`robovid._records`: which episode each run of frames is) are carried to the output with
fingerprints of the new samples; a trimmed output carries none (its runs no longer match them).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import numpy.typing as npt
import structlog

from robovid import _records
from robovid._movie import Movie, read_movie
from robovid.depth import DEPTH_PIX_FMTS, DepthQuantizer, depth_frame, frame_samples
from robovid.durable import atomic_output
from robovid.encode import encode_stream
from robovid.encoder_config import VideoEncoderConfig, rgb_encoder_defaults
from robovid.errors import FrameTimestampError, VideoFormatError
from robovid.settings import EncoderSettings

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

log = structlog.get_logger(__name__)


def reencode_video(
    input_video_path: Path | str,
    output_video_path: Path | str,
    video_encoder: VideoEncoderConfig | None = None,
    encoder_threads: int | None = None,
    log_level: int | None = av.logging.WARNING,
    overwrite: bool = False,
    start_time_s: float | None = None,
    end_time_s: float | None = None,
) -> None:
    """Decode ``input_video_path`` and encode it with ``video_encoder`` (default: robovid's) into ``output_video_path``.

    With ``start_time_s`` / ``end_time_s``, only the frames whose time lies in
    ``[start_time_s, end_time_s)`` (seconds from the first frame) are kept, and the output
    starts at 0. The frame rate is the input's. An existing output is kept (with a warning)
    unless ``overwrite``. A depth video takes a :class:`~robovid.DepthEncoderConfig` and keeps its depth:
    millimetres (``gray16le``) are quantized to the config's 12-bit codes, and codes whose quantizer the file
    records are turned back into millimetres or into another quantizer's codes. Raises
    :class:`FrameTimestampError` for a negative or empty window, :class:`VideoFormatError` for an input
    without video, a depth video with a colour config, or the reverse.
    """
    settings = (video_encoder or rgb_encoder_defaults()).to_settings(encoder_threads)
    _check_window(start_time_s, end_time_s)
    output = Path(output_video_path)
    if output.exists() and not overwrite:
        log.warning("video_exists_skipping_reencode", path=str(output))
        return
    if log_level is not None:
        logging.getLogger("libav").setLevel(log_level)
    reencode_at_rate(input_video_path, output, settings, None, start_time_s, end_time_s)


def reencode_at_rate(
    input_video_path: Path | str,
    output: Path,
    settings: EncoderSettings,
    fps: Fraction | None,
    start_time_s: float | None = None,
    end_time_s: float | None = None,
) -> None:
    """:func:`reencode_video`'s encode: the decoded frames, in order, shown every ``1 / fps`` s (default: the input's
    average rate), whatever times the input gave them (``robovid convert`` re-times a variable-rate episode)."""
    with av.open(str(input_video_path), "r") as source:
        stream = _video_stream(source, input_video_path)
        fps = fps or Fraction(stream.average_rate or stream.base_rate or 0)
        if not fps:
            raise VideoFormatError(f"{input_video_path}: the video stream declares no frame rate.")
        convert = _converter(stream.pix_fmt, source.metadata.get("comment"), settings, input_video_path)
        frames = _frames_in_window(source, stream, start_time_s, end_time_s, convert, fps)
        first = next(frames, None)
        if first is None:
            raise FrameTimestampError(
                f"{input_video_path}: no frame lies in [{start_time_s}, {end_time_s}) s; "
                "pick a window inside the video (get_video_duration_in_s gives its length)."
            )
        source_movie = _movie_of(Path(input_video_path)) if start_time_s is None and end_time_s is None else None
        with atomic_output(output) as temp, open(temp, "w+b") as out:
            encode_stream(out, first, _chain(first, frames), fps, settings)
            if source_movie is not None:  # a whole chunk file: its identity records, fingerprinting the new samples
                out.flush()
                encoded = read_movie(temp, out)
                _records.write_before_moov(out, encoded, _records.renewed(source_movie, encoded))


def _movie_of(path: Path) -> Movie | None:
    """The input's movie, when it is an MP4 robovid can parse (to carry its identity records), else None."""
    try:
        return read_movie(path)
    except (VideoFormatError, OSError):
        return None


def _check_window(start_s: float | None, end_s: float | None) -> None:
    for name, value in (("start_time_s", start_s), ("end_time_s", end_s)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise FrameTimestampError(
                f"Invalid {name} ({value!r}): trim times are seconds from the first frame, 0 or more."
            )
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise FrameTimestampError(
            f"Invalid trim window: end_time_s ({end_s}) must be greater than start_time_s ({start_s})."
        )


def _video_stream(container: InputContainer, path: Path | str) -> VideoStream:
    if not container.streams.video:
        raise VideoFormatError(f"{path}: has no video stream to re-encode.")
    return container.streams.video[0]


def _frames_in_window(
    container: InputContainer,
    stream: VideoStream,
    start_s: float | None,
    end_s: float | None,
    convert: Callable[[av.VideoFrame], av.VideoFrame],
    fps: Fraction,
) -> Iterator[av.VideoFrame]:
    """The decoded frames in ``[start_s, end_s)``, ``convert``ed, renumbered from 0 at ``fps``."""
    origin = stream.start_time or 0
    time_base = stream.time_base or Fraction(1, 1)
    if start_s:
        container.seek(origin + int(Fraction(start_s) / time_base), stream=stream, backward=True)
    index = 0
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        seconds = float((frame.pts - origin) * time_base)
        if start_s is not None and seconds < start_s:
            continue
        if end_s is not None and seconds >= end_s:
            return
        converted = convert(frame)
        converted.pts, converted.time_base = index, 1 / fps
        index += 1
        yield converted


def _converter(
    pix_fmt: str | None, tag: str | None, settings: EncoderSettings, path: Path | str
) -> Callable[[av.VideoFrame], av.VideoFrame]:
    """How a decoded frame becomes one of ``settings``: colour by pixel format conversion; depth through its
    meaning (millimetres, or the codes of the quantizer the source recorded), never by rescaling samples."""
    source_depth = pix_fmt in DEPTH_PIX_FMTS
    if settings.depth is None:
        if source_depth:
            raise VideoFormatError(
                f"{path} is a depth video ({pix_fmt}): re-encoded as colour, its samples would become 8-bit RGB. "
                "Pass a DepthEncoderConfig (DepthEncoderConfig.exact() keeps millimetres exactly)."
            )
        return lambda frame: frame.reformat(format=settings.pix_fmt)
    if not source_depth:
        raise VideoFormatError(
            f"{path} is not a depth video ({pix_fmt}): a DepthEncoderConfig re-encodes depth videos "
            f"({', '.join(DEPTH_PIX_FMTS)}); use an RGBEncoderConfig."
        )
    recorded = (EncoderSettings.from_tag(tag) or {}).get("depth")
    source = DepthQuantizer(**recorded) if pix_fmt == "gray12le" and isinstance(recorded, dict) else None
    if pix_fmt == "gray12le" and source is None and settings.pix_fmt != "gray12le":
        raise VideoFormatError(
            f"{path} holds 12-bit depth codes without robovid's record of their quantizer: their depth is unknown. "
            "Re-encode it with a gray12le DepthEncoderConfig (its codes are kept as they are)."
        )
    return functools.partial(_depth_frame_of, source=source, target=settings.depth, pix_fmt=settings.pix_fmt)


def _depth_frame_of(
    frame: av.VideoFrame, source: DepthQuantizer | None, target: DepthQuantizer, pix_fmt: str
) -> av.VideoFrame:
    """``frame``'s depth as ``pix_fmt`` holds it: millimetres (gray16le) or ``target``'s codes (gray12le).

    ``source``: the quantizer of a gray12le ``frame``'s codes (None for millimetres, or unrecorded codes)."""
    samples = frame_samples(frame)
    converted: npt.NDArray[np.generic] = samples
    if frame.format.name != "gray12le" or (source is not None and (pix_fmt != "gray12le" or source != target)):
        millimetres = source.dequantize(samples) if source is not None else samples
        converted = target.quantize(millimetres) if pix_fmt == "gray12le" else millimetres
    # else: codes of the target's quantizer, or of an unrecorded one: kept as they are
    return depth_frame(np.array(converted, dtype=np.uint16, order="C"), pix_fmt)


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest
