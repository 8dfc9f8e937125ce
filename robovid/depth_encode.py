"""Encode a folder of 16-bit depth frames, and verify a depth encode sample for sample.

The same MP4 pipeline as colour frames (:func:`robovid.encode.encode_stream`: the settings tag,
the unused-option check, publishing atomically), with frames read by
:func:`robovid.depth.read_depth_frame` and put into ``gray16le`` (millimetres as they are) or
``gray12le`` (LeRobot's 12-bit codes) planes unscaled. Every source frame's
:class:`~robovid.depth_fingerprint.DepthFingerprint` (a CRC-32 of its stored samples plus tile
means) is kept, so :func:`verify_depth_video` can check each decoded frame against its own source:
for robovid's exact FFV1 path (and a lossless ``gray12le`` one) the bound is 0 codes, per frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from robovid._stop import StopFlag
from robovid.depth import depth_frame, frame_samples, read_depth_frame
from robovid.depth_fingerprint import DepthFingerprint, compare_depth, depth_fingerprint
from robovid.encode import EncodeResult, _check_encodable, _frame_rate, encode_result, encode_stream, publish_encode
from robovid.errors import EmptyEpisodeError, FrameMismatchError, FrameSizeError, VerificationError
from robovid.frames import list_episode_frames
from robovid.layout import FRAME_RE
from robovid.lerobot_stats import FrameStatsAccumulator
from robovid.settings import EncoderSettings
from robovid.verify import DECODER_THREADS, VerifyReport

_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class DepthEncodeResult(EncodeResult):
    """An :class:`~robovid.encode.EncodeResult` with every source frame's depth fingerprint (if asked for)."""

    depth_fingerprints: list[DepthFingerprint] = field(default_factory=list)


def list_depth_frames(imgs_dir: Path) -> list[Path]:
    """``frame-NNNNNN.png`` files (robovid's rules, :func:`robovid.frames.list_episode_frames`), else LeRobot's
    ``frame-NNNNNN.tiff`` depth frames, in index order."""
    try:
        return list_episode_frames(imgs_dir)
    except EmptyEpisodeError as no_png:
        tiffs = {}
        for path in Path(imgs_dir).glob("frame-*"):
            match = FRAME_RE.fullmatch(path.stem + ".png")
            if match is not None and path.suffix.lower() in _TIFF_SUFFIXES:
                tiffs[int(match.group(1))] = path
        if not tiffs:
            raise
        if sorted(tiffs) != list(range(len(tiffs))):
            message = f"{imgs_dir}: the TIFF frames do not run 0..{len(tiffs) - 1} without a gap."
            raise EmptyEpisodeError(message) from no_png
        return [tiffs[i] for i in range(len(tiffs))]


def encode_depth_frames(
    frame_paths: Sequence[Path], video_path: Path, fps: float | Fraction, settings: EncoderSettings
) -> DepthEncodeResult:
    """Encode depth frames into ``video_path``, published atomically (nothing there on error)."""
    return publish_encode(video_path, lambda out: encode_depth_frames_into(out, frame_paths, fps, settings))


def encode_depth_frames_into(
    out: BinaryIO,
    frame_paths: Sequence[Path],
    fps: float | Fraction,
    settings: EncoderSettings,
    stop: StopFlag | None = None,
    fingerprints: bool = False,
    stats: FrameStatsAccumulator | None = None,
) -> DepthEncodeResult:
    """Encode depth frames, in order, as an MP4 into a seekable file object (``settings.depth`` must be set).

    With ``fingerprints``, each source frame's depth fingerprint (of the samples the encoder gets)
    is returned for :func:`verify_depth_video`. ``stats`` (a depth accumulator) counts LeRobot's
    statistics of the source depth. ``stop`` abandons the encode between frames.
    """
    if settings.depth is None:
        raise ValueError("encode_depth_frames_into needs depth settings (DepthEncoderConfig().to_settings()).")
    if not frame_paths:
        raise EmptyEpisodeError(f"No depth frames to encode in {frame_paths!r}.")
    started = time.perf_counter()
    reader = _DepthFrames(frame_paths, settings, fingerprints, stats)
    frames = iter(reader)
    first = next(frames)
    _check_encodable(first.width, first.height, settings, frame_paths[0])
    encode_stream(out, first, _chain(first, frames), _frame_rate(fps), settings, stop)
    return encode_result(
        DepthEncodeResult, out, first, len(frame_paths), started, reader.cpu_s, depth_fingerprints=reader.fingerprints
    )


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest


class _DepthFrames:
    """Reads depth frames one by one into frames of the settings' pixel format, checking they keep one size."""

    def __init__(
        self, paths: Sequence[Path], settings: EncoderSettings, fingerprints: bool, stats: FrameStatsAccumulator | None
    ) -> None:
        self._paths = paths
        self._stats = stats
        self._settings = settings
        self._fingerprints = fingerprints
        self.fingerprints: list[DepthFingerprint] = []
        self.cpu_s = 0.0

    def __iter__(self) -> Iterator[av.VideoFrame]:
        quantizer = self._settings.depth
        shape: tuple[int, ...] | None = None
        for index, path in enumerate(self._paths):
            started = time.thread_time()
            mm = read_depth_frame(path)
            if shape is None:
                shape = mm.shape
            elif mm.shape != shape:
                raise FrameSizeError(
                    f"Depth frame {path} is {mm.shape[1]}x{mm.shape[0]}, but the episode's first frame is "
                    f"{shape[1]}x{shape[0]}: one episode must keep one size. Split the episode."
                )
            samples = mm if self._settings.pix_fmt == "gray16le" or quantizer is None else quantizer.quantize(mm)
            if self._fingerprints:
                self.fingerprints.append(depth_fingerprint(samples))
            if self._stats is not None:
                self._stats.add(index, mm)
            frame = depth_frame(np.ascontiguousarray(samples), self._settings.pix_fmt)
            self.cpu_s += time.thread_time() - started
            yield frame


def verify_depth_video(
    video: Path | BinaryIO, expected_frames: int, fingerprints: Sequence[DepthFingerprint]
) -> VerifyReport:
    """Decode every frame; each must equal its source sample for sample (the CRC of the samples), and the count.

    FrameMismatchError names the first frame that differs and its worst tile (``stale``: it shows the
    previous frame's depth there); VerificationError for a wrong count or a stream that stops
    decoding. The report's ``min_psnr_db`` is inf (every frame exact).
    """
    if not isinstance(video, Path):
        video.seek(0)
    name = str(video) if isinstance(video, Path) else "the encoded depth episode"
    count = 0
    try:
        with av.open(str(video) if isinstance(video, Path) else video, "r") as container:
            stream = container.streams.video[0]
            stream.thread_count = DECODER_THREADS
            for index, frame in enumerate(container.decode(stream)):
                count += 1
                if index < len(fingerprints):
                    _check_depth_frame(name, index, frame, fingerprints)
    except av.error.FFmpegError as error:
        raise VerificationError(f"{name}: does not decode after frame {count} ({error}).") from error
    if count != expected_frames:
        raise VerificationError(f"{name}: holds {count} frames, expected {expected_frames}. The PNGs were kept.")
    return VerifyReport(count, math.inf)


def _check_depth_frame(name: str, index: int, frame: av.VideoFrame, fingerprints: Sequence[DepthFingerprint]) -> None:
    try:
        decoded = depth_fingerprint(frame_samples(frame))
    except ValueError as error:
        raise VerificationError(f"{name}: frame {index} is not a depth frame ({error}). The PNGs were kept.") from error
    previous = fingerprints[index - 1] if index else None
    mismatch = compare_depth(index, decoded, fingerprints[index], previous)
    if mismatch is not None:
        raise FrameMismatchError(
            f"{name}: {mismatch.describe()}. The decoded depth differs from the recorded depth (robovid keeps depth "
            "exactly); the PNGs were kept.",
            mismatch.frame,
            mismatch.rect(),
            mismatch.kind,
        )
