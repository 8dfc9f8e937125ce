"""Which hardware encoders open on this machine, and what ``vcodec="auto"`` picks.

A hardware encoder compiled into PyAV's FFmpeg may still be unusable: no GPU, no driver,
no device node. So a probe does what an encode would: it opens the encoder with the
options robovid would give it (closed GOPs, no B-frames, ``crf`` mapped to its quality
knob), encodes a few frames of a small test pattern into memory and checks that the
stream has no reordered frames and a keyframe every ``g`` frames. FFmpeg's own error
message is kept as the reason when it fails. Results are cached for the process.

``vcodec="auto"`` tries :data:`robovid.encoders.HW_VIDEO_CODECS` in order and falls back
to libsvtav1, logging what it chose and why (every encoder it tried, with its reason).
"""

from __future__ import annotations

import functools
import io
import itertools
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import av.logging
import numpy as np
import structlog

from robovid.encoders import AUTO, HW_VIDEO_CODECS, as_strings, canonical_vcodec, codec_options, in_this_build, spec_of
from robovid.errors import InvalidEncoderOptionError

log = structlog.get_logger(__name__)

FALLBACK_VCODEC = "libsvtav1"
PROBE_SIZE = (256, 256)
"""Test frame width and height: above every hardware encoder's minimum size."""
PROBE_FRAMES = 6
PROBE_G = 2
PROBE_CRF = 30


@dataclass(frozen=True)
class EncoderProbe:
    """Whether one encoder can encode on this machine, and why (not)."""

    vcodec: str
    available: bool
    reason: str
    """What happened: the encoder's own error, or what the test encode showed."""


_lock = threading.Lock()


@functools.cache
def probe_encoder(vcodec: str) -> EncoderProbe:
    """Try ``vcodec`` on a small test encode (cached per process)."""
    spec = spec_of(vcodec)
    if not in_this_build(spec.ffmpeg_name):
        return EncoderProbe(vcodec, False, f"PyAV {av.__version__}'s FFmpeg has no {spec.ffmpeg_name} encoder")
    with _lock, _captured_ffmpeg_errors() as messages:
        try:
            packets = _test_encode(vcodec)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            detail = "; ".join(message.strip() for _, _, message in messages) or str(error)
            return EncoderProbe(vcodec, False, f"{spec.ffmpeg_name} did not open or encode: {detail}")
    problem = random_access_problem(packets, PROBE_G)
    if problem:
        return EncoderProbe(vcodec, False, f"{spec.ffmpeg_name} encoded, but {problem}")
    return EncoderProbe(vcodec, True, f"{spec.ffmpeg_name} encoded {PROBE_FRAMES} test frames with exact random access")


def probe_hardware_encoders(candidates: Sequence[str] = HW_VIDEO_CODECS) -> list[EncoderProbe]:
    """Probe every candidate hardware encoder, in order."""
    return [probe_encoder(vcodec) for vcodec in candidates]


def resolve_auto(candidates: Sequence[str] = HW_VIDEO_CODECS) -> str:
    """The first candidate that probes available, else ``libsvtav1``; logs the choice and every reason."""
    tried: dict[str, str] = {}
    for vcodec in candidates:
        probe = probe_encoder(vcodec)
        if probe.available:
            log.info("vcodec_auto_selected", vcodec=vcodec, reason=probe.reason, tried=tried)
            return vcodec
        tried[vcodec] = probe.reason
    log.warning(
        "vcodec_auto_fallback",
        vcodec=FALLBACK_VCODEC,
        reason="no hardware encoder opened here; encoding in software",
        tried=tried,
    )
    return FALLBACK_VCODEC


def resolve_vcodec(vcodec: object, pix_fmt: str) -> tuple[str, str]:
    """``vcodec`` with aliases and ``"auto"`` resolved, and the pixel format the chosen encoder takes.

    A hardware encoder that takes ``nv12`` but not ``yuv420p`` (QSV) gets ``nv12``, the same
    4:2:0 sampling, when ``yuv420p`` was asked. InvalidEncoderOptionError for an unknown ``vcodec``.
    """
    name = canonical_vcodec(vcodec)
    if name == AUTO:
        name = resolve_auto()
    spec = spec_of(name)
    if spec.is_hardware and pix_fmt == "yuv420p" and "yuv420p" not in spec.pix_fmts:
        pix_fmt = spec.pix_fmts[0]
    return name, pix_fmt


def require_working(vcodec: str) -> None:
    """Raise InvalidEncoderOptionError, with the probe's reason, unless ``vcodec`` encodes on this machine."""
    probe = probe_encoder(vcodec)
    if not probe.available:
        raise InvalidEncoderOptionError(
            f"Invalid vcodec ({vcodec!r}): it cannot encode on this machine ({probe.reason}). "
            "Use vcodec='auto' to take a hardware encoder only where one works (else libsvtav1), "
            "or a software encoder (libsvtav1, h264, hevc).",
            "vcodec",
        )


def _test_encode(vcodec: str) -> list[tuple[int, int, bool]]:
    """Encode a moving test pattern; (pts, dts, keyframe) of each packet in decode order."""
    spec = spec_of(vcodec)
    pix_fmt = spec.pix_fmts[0]
    options = codec_options(spec, g=PROBE_G, crf=PROBE_CRF, preset=None, fast_decode=0, threads=None, extra_options={})
    width, height = PROBE_SIZE
    packets: list[tuple[int, int, bool]] = []
    with av.open(io.BytesIO(), "w", format="mp4") as container:
        stream = cast(
            av.video.stream.VideoStream,
            container.add_stream(spec.ffmpeg_name, rate=30, options=as_strings(options)),
        )
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index in range(PROBE_FRAMES):
            rgb = np.zeros((height, width, 3), np.uint8)
            rgb[:, index * 16 : index * 16 + 64] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            frame.pts, frame.time_base = index, Fraction(1, 30)
            packets += _record(container, stream.encode(frame))
        packets += _record(container, stream.encode(None))
        unused = sorted(stream.codec_context.options)
    if unused:
        raise ValueError(f"it ignored the options {', '.join(unused)}")
    return packets


def _record(container: av.container.OutputContainer, packets: list[av.Packet]) -> list[tuple[int, int, bool]]:
    container.mux(packets)
    return [(int(p.pts or 0), int(p.dts or 0), bool(p.is_keyframe)) for p in packets]


def random_access_problem(packets: Sequence[tuple[int, int, bool]], g: int) -> str | None:
    """Why an encoded stream would not give exact random access, or None.

    Frames must come out in presentation order (no B-frames: each packet's pts above the
    previous one) and there must be a keyframe at least every ``g`` frames.
    """
    if not packets:
        return "it produced no packets"
    pts = [p[0] for p in packets]
    if any(b <= a for a, b in itertools.pairwise(pts)):
        return f"it reorders frames (B-frames): packet timestamps in decode order are {pts}"
    since_key = 0
    for _, _, key in packets:
        since_key = 0 if key else since_key + 1
        if since_key >= g:
            return f"it left more than {g} frames between keyframes (g={g} asked)"
    return None


@contextmanager
def _captured_ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's error messages from this thread while the block runs (logging restored after)."""
    previous = av.logging.get_level()
    if previous is None or previous < av.logging.ERROR:
        av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as messages:
            yield messages
    finally:
        av.logging.set_level(previous)
