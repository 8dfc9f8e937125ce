"""Encoder settings: validated once, turned into codec options in one place.

Which codecs, pixel formats, crf ranges and presets exist comes from the encoder table,
:mod:`robovid.encoders` (its software encoders); nothing here lists them again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from robovid.encoders import ENCODERS, SOFTWARE_PIX_FMTS, SOFTWARE_VCODECS, X26X_PRESETS
from robovid.errors import InvalidEncoderOptionError

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
    """How an episode is encoded. Build it once; it validates itself."""

    vcodec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int | None = 2
    """Keyframe interval in frames (``None``: the codec's default)."""
    crf: int | None = 30
    """Constant rate factor (``None``: the codec's default)."""
    preset: int | str | None = None
    """libsvtav1: 0-13 (``None``: robovid's default, DEFAULT_SVTAV1_PRESET); h264/hevc: an x264 preset name."""
    fast_decode: int = 0
    """libsvtav1: 0-2 (``fast-decode``); h264/hevc: any value > 0 sets ``tune=fastdecode``."""
    threads: int | None = None
    """Encoder threads (libsvtav1 ``lp``, x264/x265 ``threads``); 0 lets the encoder decide; None is
    robovid's choice: ``lp=1`` for libsvtav1 (measured on 2 cores: 0.94x the wall time, 0.89x the CPU and
    0.81x the peak memory of SVT's own choice, benchmarks/README.md), the encoder's own for the others."""

    def __post_init__(self) -> None:
        _check_choice("vcodec", self.vcodec, SUPPORTED_VCODECS)
        _check_choice("pix_fmt", self.pix_fmt, SUPPORTED_PIX_FMTS)
        pix_fmts = ENCODERS[self.vcodec].pix_fmts
        if self.pix_fmt not in pix_fmts:
            takers = " or ".join(f"vcodec={v!r}" for v in SUPPORTED_VCODECS if self.pix_fmt in ENCODERS[v].pix_fmts)
            raise InvalidEncoderOptionError(
                f"Invalid pix_fmt ({self.pix_fmt!r}) for vcodec {self.vcodec!r}: robovid encodes {self.vcodec} "
                f"as {', '.join(pix_fmts)} only. Use pix_fmt={pix_fmts[0]!r}, or {takers} for {self.pix_fmt}.",
                "pix_fmt",
            )
        if self.g is not None and (not _is_int(self.g) or self.g < 1):
            raise InvalidEncoderOptionError(f"Invalid g ({self.g!r}). It must be a whole number >= 1, or None.", "g")
        low, high = CRF_RANGE[self.vcodec]
        if self.crf is not None and (not _is_int(self.crf) or not low <= self.crf <= high):
            raise InvalidEncoderOptionError(
                f"Invalid crf ({self.crf!r}) for {self.vcodec}. It must be a whole number from {low} to {high}.",
                "crf",
            )
        self._check_preset()
        if not _is_int(self.fast_decode) or not 0 <= self.fast_decode <= 2:
            raise InvalidEncoderOptionError(
                f"Invalid fast_decode ({self.fast_decode!r}). Supported values are 0, 1, 2.", "fast_decode"
            )
        if self.threads is not None and (not _is_int(self.threads) or self.threads < 0):
            raise InvalidEncoderOptionError(
                f"Invalid threads ({self.threads!r}). It must be 0 (auto) or more.", "threads"
            )

    def _check_preset(self) -> None:
        if self.preset is None:
            return
        if self.vcodec == "libsvtav1":
            low, high = ENCODERS["libsvtav1"].preset_range or (0, 13)
            if not _is_int(self.preset) or not low <= int(self.preset) <= high:
                raise InvalidEncoderOptionError(
                    f"Invalid preset ({self.preset!r}) for libsvtav1. It must be a whole number from {low} to {high}.",
                    "preset",
                )
        elif self.preset not in X26X_PRESETS:
            raise InvalidEncoderOptionError(
                f"Invalid preset ({self.preset!r}) for {self.vcodec}. Supported values are {', '.join(X26X_PRESETS)}.",
                "preset",
            )

    @property
    def effective_preset(self) -> int | str | None:
        """The preset actually passed to the encoder."""
        if self.preset is None and self.vcodec == "libsvtav1":
            return DEFAULT_SVTAV1_PRESET
        return self.preset

    @property
    def encoder_name(self) -> str:
        """The FFmpeg encoder that implements ``vcodec``."""
        return ENCODERS[self.vcodec].ffmpeg_name

    def codec_options(self) -> dict[str, str]:
        """FFmpeg options for the encoder.

        h264/hevc are encoded without B-frames and with closed GOPs: every keyframe
        is a clean random-access point and presentation order equals decode order,
        so a seek to any frame returns that frame (libx265's default open GOPs
        returned frames 1-2 late) and episodes can be appended by stream copy.
        """
        options: dict[str, str] = {}
        if self.g is not None:
            options["g"] = str(self.g)
        if self.crf is not None:
            options["crf"] = str(self.crf)
        preset = self.effective_preset
        if preset is not None:
            options["preset"] = str(preset)
        if self.vcodec == "libsvtav1":
            params = [f"fast-decode={self.fast_decode}"] if self.fast_decode else []
            threads = 1 if self.threads is None else self.threads
            if threads:
                params.append(f"lp={threads}")
            if params:
                options["svtav1-params"] = ":".join(params)
            return options
        options["bf"] = "0"
        if self.fast_decode:
            options["tune"] = "fastdecode"
        if self.threads:
            options["threads"] = str(self.threads)
        if self.vcodec == "hevc":
            options["x265-params"] = "log-level=error:no-open-gop=1:bframes=0"
        return options

    def to_tag(self) -> str:
        """The settings as the MP4 comment tag robovid writes."""
        data = asdict(self) | {"preset": self.effective_preset}
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


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidEncoderOptionError(f"Invalid {name} ({value!r}). Supported values are {', '.join(allowed)}.", name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
