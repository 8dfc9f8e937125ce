"""Encoder settings: validated once (by ``robovid.encoders``), recorded in the MP4 they produce.

Which codecs, pixel formats, crf ranges and presets exist comes from the encoder table,
:mod:`robovid.encoders`; nothing here lists them again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from robovid._encoder_checks import check_settings
from robovid.depth import DepthQuantizer
from robovid.encoders import ENCODERS, SOFTWARE_PIX_FMTS, SOFTWARE_VCODECS, as_strings, codec_options, spec_of
from robovid.hardware import require_working, resolve_vcodec

log = logging.getLogger(__name__)

SUPPORTED_VCODECS = tuple(sorted(SOFTWARE_VCODECS))
"""The encoders ``EncoderSettings`` drives: the software ones of :data:`robovid.encoders.ENCODERS`."""
SUPPORTED_PIX_FMTS = SOFTWARE_PIX_FMTS
CRF_RANGE = {name: (int(ENCODERS[name].crf_range[0]), int(ENCODERS[name].crf_range[1])) for name in SUPPORTED_VCODECS}
"""Whole ``crf`` values accepted per ``vcodec``, from the encoder table."""
DEFAULT_SVTAV1_PRESET = 6
"""The fastest SVT-AV1 4.1 preset that is faithful on the fidelity suite (benchmarks/README.md, bench_presets):
0 stale frames in every clip of :mod:`robovid.fidelity`, where presets 7-10 leave stale content at the edge
of a 720p pan (new content entering the frame) and 11-13 (12 and 13 run as 11) in small blinking patches,
fiducials and moving objects, mostly in the partial bottom row of superblocks. Its scene PSNR is no lower
than that of the reference's encode (no preset: SVT-AV1 picks 8). It costs about twice preset 8's encoder
CPU. The service's verify stage checks every frame of every episode tile by tile (:mod:`robovid.fingerprint`),
whatever the preset, so a faster preset set by hand cannot silently lose content."""
ENCODER_TAG = "robovid-encoder:"
"""Prefix of the MP4 ``comment`` tag in which robovid records the settings it used."""


@dataclass(frozen=True)
class EncoderSettings:
    """How an episode is encoded. Build it once; it validates itself (``robovid.encoders`` holds the rules).

    ``vcodec="auto"`` is resolved here (the hardware encoders are probed, the choice logged), and
    a hardware encoder that cannot encode on this machine is refused here, with its reason.
    """

    vcodec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int | None = 2
    """Keyframe interval in frames (``None``: the codec's default)."""
    crf: int | float | None = 30
    """Quality, lower is better (``None``: the codec's default); mapped to each encoder's own knob."""
    preset: int | str | None = None
    """libsvtav1: 0-13 (``None``: robovid's default, DEFAULT_SVTAV1_PRESET); h264/hevc: an x264 preset name;
    NVENC/QSV: theirs."""
    fast_decode: int = 0
    """libsvtav1: 0-2 (``fast-decode``); h264/hevc: any value > 0 sets ``tune=fastdecode``."""
    threads: int | None = None
    """Encoder threads (libsvtav1 ``lp``, x264/x265 ``threads``); 0 lets the encoder decide; None is
    robovid's choice: ``lp=1`` for libsvtav1 (measured on 2 cores: 0.94x the wall time, 0.89x the CPU and
    0.81x the peak memory of SVT's own choice, benchmarks/README.md), the encoder's own for the others."""
    extra_options: tuple[tuple[str, Any], ...] = ()
    """More FFmpeg options as (name, value) pairs, merged last; they never override robovid's."""
    depth: DepthQuantizer | None = None
    """Set for depth maps (``robovid.depth_config.DepthEncoderConfig``): 16-bit one-channel frames, the
    pixel format one of the encoder's ``depth_pix_fmts``; ``gray12le`` frames hold this quantizer's codes."""

    def __post_init__(self) -> None:
        vcodec, pix_fmt = resolve_vcodec(self.vcodec, self.pix_fmt)
        object.__setattr__(self, "vcodec", vcodec)
        object.__setattr__(self, "pix_fmt", pix_fmt)
        extra = self.extra
        check_settings(
            vcodec,
            pix_fmt,
            self.g,
            self.crf,
            self.preset,
            self.fast_decode,
            self.threads,
            extra,
            self.depth is not None,
        )
        if spec_of(vcodec).is_hardware:
            require_working(vcodec)

    @property
    def extra(self) -> dict[str, Any]:
        """``extra_options`` as a dict."""
        return dict(self.extra_options)

    @property
    def effective_preset(self) -> int | str | None:
        """The preset actually passed to the encoder."""
        if self.preset is None and self.vcodec == "libsvtav1":
            return DEFAULT_SVTAV1_PRESET
        return self.preset

    @property
    def encoder_name(self) -> str:
        """The FFmpeg encoder that implements ``vcodec``."""
        return spec_of(self.vcodec).ffmpeg_name

    def codec_options(self) -> dict[str, str]:
        """FFmpeg options for the encoder (``robovid.encoders.codec_options``: closed GOPs, no B-frames)."""
        options = codec_options(
            spec_of(self.vcodec),
            g=self.g,
            crf=self.crf,
            preset=self.effective_preset,
            fast_decode=self.fast_decode,
            threads=self.threads,
            extra_options=self.extra,
        )
        return as_strings(options)

    def to_tag(self) -> str:
        """The settings as the MP4 comment tag robovid writes."""
        data = asdict(self) | {"preset": self.effective_preset, "extra_options": self.extra}
        if self.depth is None:
            del data["depth"]  # colour encodes record what they did before depth existed
        return ENCODER_TAG + json.dumps(data, sort_keys=True)

    @staticmethod
    def from_tag(tag: str | None) -> dict[str, object] | None:
        """Settings read back from a comment tag, or None when robovid did not write it."""
        if not tag or not tag.startswith(ENCODER_TAG):
            return None
        try:
            data = json.loads(tag[len(ENCODER_TAG) :])
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None


def reference_compatible(vcodec: str, pix_fmt: str) -> str:
    """The reference silently switched yuv444p to yuv420p for libsvtav1/hevc; do it, but say so.

    Any pixel format robovid encodes with another software encoder but not with ``vcodec``
    becomes ``vcodec``'s default (today: yuv444p with libsvtav1 or hevc).
    """
    spec = ENCODERS.get(vcodec)
    if spec is None or spec.is_hardware or pix_fmt not in SUPPORTED_PIX_FMTS or pix_fmt in spec.pix_fmts:
        return pix_fmt
    log.warning("Pixel format %r is not supported with %s; encoding as %r.", pix_fmt, vcodec, spec.pix_fmts[0])
    return spec.pix_fmts[0]
