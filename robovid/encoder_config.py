"""Encoder configuration objects with the API of LeRobot's current ``VideoEncoderConfig``.

``RGBEncoderConfig(vcodec="h264", crf=23)`` validates itself when built (and again on
:meth:`VideoEncoderConfig.validate`, after a field was changed): the codec against robovid's
whitelist (:mod:`robovid.encoders`), every structured field against robovid's ranges, and
``extra_options`` against the encoder's published FFmpeg options (types, ranges, choices).
``vcodec="auto"`` is resolved when the object is built (:func:`robovid.hardware.resolve_auto`).

A config goes into ``encode_video_frames(..., video_encoder=config)`` and
``reencode_video`` (as the frozen :class:`~robovid.settings.EncoderSettings` of
:meth:`VideoEncoderConfig.to_settings`); robovid records it in the MP4's comment tag, so
``get_video_info(path)`` reports it back as ``video.*`` keys and
``RGBEncoderConfig.from_video_info(get_video_info(path))`` rebuilds an equal config, except that
``g``/``crf`` None come back as the defaults, as in LeRobot (README, "Differences").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

import av

from robovid import encoders
from robovid._encoder_checks import check_settings
from robovid.depth import DepthQuantizer
from robovid.encoders import codec_options, spec_of
from robovid.errors import InvalidEncoderOptionError
from robovid.hardware import resolve_vcodec
from robovid.settings import DEFAULT_SVTAV1_PRESET, EncoderSettings

VIDEO_BACKENDS = ("pyav",)
VIDEO_ENCODER_INFO_FIELD_NAMES: frozenset[str] = frozenset(
    {"g", "crf", "preset", "fast_decode", "extra_options", "video_backend"}
)
"""Config fields reported as ``video.<name>`` by ``get_video_info`` (vcodec and pix_fmt come from the stream)."""

_Config = TypeVar("_Config", bound="VideoEncoderConfig")


@dataclass
class VideoEncoderConfig:
    """How frames are encoded: codec, pixel format, quality, keyframe interval, extra FFmpeg options."""

    vcodec: str = "libsvtav1"
    """Encoder: ``libsvtav1``, ``h264``, ``hevc``, a hardware encoder (``h264_nvenc``, ...) or ``"auto"``."""
    pix_fmt: str = "yuv420p"
    g: int | None = 2
    """Keyframe interval in frames (``None``: the encoder's default)."""
    crf: int | float | None = 30
    """Quality, lower is better; mapped to each encoder's own knob (``robovid.encoders``)."""
    preset: int | str | None = None
    """Speed/quality preset; ``None`` means robovid's default for libsvtav1, the encoder's elsewhere."""
    fast_decode: int = 0
    """0-2: SVT-AV1 ``fast-decode``; x264/x265 ``tune=fastdecode`` when > 0."""
    video_backend: str = "pyav"
    """Encoding backend; only ``"pyav"``."""
    extra_options: dict[str, Any] = field(default_factory=dict)
    """More FFmpeg options, merged last; they never override a structured field or robovid's
    random-access options (closed GOPs, no B-frames)."""

    _DEFAULT_CHANNELS: ClassVar[int | None] = None
    """Channels of the source frames (3 for RGB); None skips the pixel-format channel check."""
    is_depth: ClassVar[bool] = False
    """Depth maps (``robovid.depth_config.DepthEncoderConfig``): validated against the depth pixel formats."""

    def __post_init__(self) -> None:
        self.resolve_vcodec()
        if self.preset is None and self.vcodec == "libsvtav1":
            self.preset = DEFAULT_SVTAV1_PRESET
        self.validate()

    def resolve_vcodec(self) -> None:
        """Resolve aliases (``"av1"`` -> ``"libsvtav1"``) and ``"auto"`` (probing the hardware encoders here).

        A hardware encoder that takes ``nv12`` but not ``yuv420p`` (QSV) gets ``nv12``, the
        same 4:2:0 sampling, when ``yuv420p`` was asked.
        """
        self.vcodec, self.pix_fmt = resolve_vcodec(self.vcodec, self.pix_fmt)

    def validate(self) -> None:
        """Check every field; InvalidEncoderOptionError (a ValueError) naming the first bad one."""
        if self.video_backend not in VIDEO_BACKENDS:
            raise InvalidEncoderOptionError(
                f"Invalid video_backend ({self.video_backend!r}). Supported values are {', '.join(VIDEO_BACKENDS)}.",
                "video_backend",
            )
        if not isinstance(self.extra_options, dict):
            raise InvalidEncoderOptionError(
                f"Invalid extra_options ({self.extra_options!r}): it must be a dict of FFmpeg option names to values.",
                "extra_options",
            )
        self.resolve_vcodec()
        check_settings(
            self.vcodec,
            self.pix_fmt,
            self.g,
            self.crf,
            self.preset,
            self.fast_decode,
            None,
            self.extra_options,
            depth=self.is_depth,
        )
        if self._DEFAULT_CHANNELS is not None:
            channels = len(av.VideoFormat(self.pix_fmt).components)
            if channels < self._DEFAULT_CHANNELS:
                raise InvalidEncoderOptionError(
                    f"Invalid pix_fmt ({self.pix_fmt!r}): it carries {channels} component(s), the frames have "
                    f"{self._DEFAULT_CHANNELS} channel(s).",
                    "pix_fmt",
                )

    def get_codec_options(self, encoder_threads: int | None = None, as_strings: bool = False) -> dict[str, Any]:
        """The FFmpeg options for this config; ``encoder_threads`` maps to SVT-AV1 ``lp`` or x264/x265 ``threads``.

        Typed values (``as_strings=True``: every value a string, as PyAV passes them).
        ``extra_options`` are merged last and never override what robovid sets.
        """
        spec = spec_of(self.vcodec)
        options = codec_options(
            spec,
            g=self.g,
            crf=self.crf,
            preset=self.preset,
            fast_decode=self.fast_decode,
            threads=encoder_threads,
            extra_options=self.extra_options,
        )
        return encoders.as_strings(options) if as_strings else options

    def to_settings(self, encoder_threads: int | None = None) -> EncoderSettings:
        """The frozen settings one encode uses (validated again: a field may have changed since; a
        hardware encoder must also encode on this machine, see ``robovid.hardware.require_working``)."""
        return EncoderSettings(
            vcodec=self.vcodec,
            pix_fmt=self.pix_fmt,
            g=self.g,
            crf=self.crf,
            preset=self.preset,
            fast_decode=self.fast_decode,
            threads=encoder_threads,
            extra_options=tuple(self.extra_options.items()),
            depth=self._depth_quantizer(),
        )

    def _depth_quantizer(self) -> DepthQuantizer | None:
        """The quantizer of depth frames (:class:`~robovid.depth_config.DepthEncoderConfig`'s); None for colour."""
        return None

    def video_info(self) -> dict[str, Any]:
        """The ``video.<field>`` entries ``get_video_info`` reports for this config."""
        return {f"video.{name}": value for name, value in asdict(self).items() if name != "vcodec"}

    @classmethod
    def _kwargs_from_video_info(cls, video_info: dict[str, Any] | None) -> dict[str, Any]:
        info = video_info or {}
        kwargs: dict[str, Any] = {}
        for key, name in (("video.codec", "vcodec"), ("video.pix_fmt", "pix_fmt")):
            if info.get(key) is not None:
                kwargs[name] = info[key]
        for name in VIDEO_ENCODER_INFO_FIELD_NAMES:
            value = info.get(f"video.{name}")
            if value is None or (name == "extra_options" and not value):
                continue  # {} is what merged metadata holds when its sources disagreed: the default
            kwargs[name] = value
        return kwargs

    @classmethod
    def from_video_info(cls: type[_Config], video_info: dict[str, Any] | None) -> _Config:
        """Rebuild a config from ``video.*`` keys (``get_video_info`` or a dataset's ``info.json``); defaults fill gaps.

        A None value is a gap too, as in LeRobot, whose merge writes null where its sources disagree: a recorded
        ``g=None`` or ``crf=None`` (the encoder's own default) comes back as the class default (2, 30). The info
        dict still holds the None.
        """
        return cls(**cls._kwargs_from_video_info(video_info))


@dataclass
class RGBEncoderConfig(VideoEncoderConfig):
    """Encoder configuration for RGB camera frames (3 channels)."""

    _DEFAULT_CHANNELS: ClassVar[int | None] = 3


def rgb_encoder_defaults() -> RGBEncoderConfig:
    """A :class:`RGBEncoderConfig` with robovid's defaults (libsvtav1, g=2, crf=30)."""
    return RGBEncoderConfig()
