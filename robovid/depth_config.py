"""``DepthEncoderConfig``: LeRobot's current depth encoder configuration, plus robovid's exact depth.

``DepthEncoderConfig()`` has LeRobot's defaults: HEVC Main 12 (``vcodec="hevc"``,
``pix_fmt="gray12le"``, ``x265-params=lossless=1``) of depth quantized to 12-bit codes on a log
scale (``depth_min``/``depth_max``/``shift`` in metres, ``use_log``). Decoded depth is off by up
to half a code step (:func:`robovid.depth.quantization_error_mm`: 1.2 mm at 1 m, 2.7 mm at 10 m),
holes (0) come back as ``depth_min`` and depth past ``depth_max`` is clipped.

``DepthEncoderConfig.exact()`` is robovid's own: FFV1 of ``gray16le`` millimetres, lossless and
intra-only. Every sample decodes exactly, holes included, at about the same size as the 12-bit
path (``benchmarks/README.md``, ``bench_depth``). The ``robovid-watch`` service encodes depth
cameras this way.

Either goes to ``encode_video_frames(imgs_dir, path, fps, video_encoder=config)`` (frames
``frame-NNNNNN.png``, 16-bit greyscale, or LeRobot's ``.tiff``) and is recorded in the file, so
``get_video_info(path)`` reports ``is_depth_map`` and the quantizer and
``DepthEncoderConfig.from_video_info(get_video_info(path))`` gives the config back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from robovid.depth import (
    DEFAULT_DEPTH_MAX,
    DEFAULT_DEPTH_MIN,
    DEFAULT_DEPTH_PIX_FMT,
    DEFAULT_DEPTH_SHIFT,
    DEFAULT_DEPTH_USE_LOG,
    EXACT_DEPTH_PIX_FMT,
    EXACT_DEPTH_VCODEC,
    DepthQuantizer,
)
from robovid.encoder_config import VideoEncoderConfig
from robovid.encoders import spec_of
from robovid.errors import InvalidEncoderOptionError

DEPTH_ENCODER_INFO_FIELD_NAMES: frozenset[str] = frozenset({"depth_min", "depth_max", "shift", "use_log"})
"""The quantizer's fields, reported as ``video.<name>`` by ``get_video_info``."""


@dataclass
class DepthEncoderConfig(VideoEncoderConfig):
    """Encoder configuration for depth maps (one channel of uint16 millimetres)."""

    vcodec: str = "hevc"
    pix_fmt: str = DEFAULT_DEPTH_PIX_FMT
    extra_options: dict[str, Any] = field(default_factory=lambda: {"x265-params": "lossless=1"})
    depth_min: float = DEFAULT_DEPTH_MIN
    """Metres at code 0 (``gray12le`` only)."""
    depth_max: float = DEFAULT_DEPTH_MAX
    """Metres at code 4095 (``gray12le`` only)."""
    shift: float = DEFAULT_DEPTH_SHIFT
    """Metres added before the log (``gray12le`` with ``use_log``)."""
    use_log: bool = DEFAULT_DEPTH_USE_LOG

    _DEFAULT_CHANNELS: ClassVar[int | None] = 1
    is_depth: ClassVar[bool] = True

    @classmethod
    def exact(cls, **kwargs: Any) -> DepthEncoderConfig:
        """robovid's exact depth: FFV1 of ``gray16le`` millimetres, every frame a keyframe, no quality knob."""
        settings: dict[str, Any] = {
            "vcodec": EXACT_DEPTH_VCODEC,
            "pix_fmt": EXACT_DEPTH_PIX_FMT,
            "g": 1,
            "crf": None,
            "extra_options": {},
        }
        return cls(**(settings | kwargs))

    def validate(self) -> None:
        super().validate()
        try:
            self.quantizer()
        except ValueError as error:
            raise InvalidEncoderOptionError(f"Invalid depth quantizer: {error}", "depth_min") from error

    def quantizer(self) -> DepthQuantizer:
        return DepthQuantizer(self.depth_min, self.depth_max, self.shift, self.use_log)

    def _depth_quantizer(self) -> DepthQuantizer:
        return self.quantizer()

    @classmethod
    def _kwargs_from_video_info(cls, video_info: dict[str, Any] | None) -> dict[str, Any]:
        kwargs = super()._kwargs_from_video_info(video_info)
        info = video_info or {}
        if spec_of(kwargs.get("vcodec", cls.vcodec)).lossless:  # FFV1: no crf, no x265 options
            kwargs.setdefault("crf", None)
            kwargs.setdefault("extra_options", {})
        for name in DEPTH_ENCODER_INFO_FIELD_NAMES:
            value = info.get(f"video.{name}")
            if value is not None:
                kwargs[name] = value
        return kwargs


def depth_encoder_defaults() -> DepthEncoderConfig:
    """A :class:`DepthEncoderConfig` with LeRobot's depth defaults (HEVC Main 12, ``gray12le``, log quantizer)."""
    return DepthEncoderConfig()
