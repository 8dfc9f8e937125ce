"""Configuration from ``ROBOVID_*`` environment variables, validated once at start.

The encoder variables take their choices and bounds from :mod:`robovid.encoders` (software
encoders only) and are checked by :class:`robovid.settings.EncoderSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from robovid.encoders import ENCODERS, MAX_FPS, SOFTWARE_PIX_FMTS, SOFTWARE_VCODECS
from robovid.errors import InvalidEncoderOptionError
from robovid.layout import FRAME_RE
from robovid.settings import EncoderSettings

from .errors import ConfigError

# Codecs, pixel formats and crf bounds come from robovid.encoders' table, software encoders only
# (the service never opens a hardware encoder); each codec's own crf range is checked by EncoderSettings.
CRF_MIN = int(min(ENCODERS[name].crf_range[0] for name in SOFTWARE_VCODECS))
CRF_MAX = int(max(ENCODERS[name].crf_range[1] for name in SOFTWARE_VCODECS))
if TYPE_CHECKING:
    VCodec = str
    PixFmt = str
else:  # a Literal of the table's names: pydantic lists them in its message
    VCodec = Literal[SOFTWARE_VCODECS]
    PixFmt = Literal[SOFTWARE_PIX_FMTS]

SERVICE_VCODEC: Final = "h264"
"""The service's default codec: of the settings with 0 stale frames on the whole fidelity suite and scene PSNR
within 0.2 dB of the reference's default encode (SVT-AV1 preset 8 crf 30) or above, the least encoder CPU per
frame (benchmarks/README.md, ``bench_presets``): x264 veryfast crf 22, 0.12x SVT-AV1 preset 6's encoder CPU (0.25x
the reference's) for 1.33x preset 6's bytes (1.30x the reference's). The library's ``encode_video_frames`` keeps the
reference's codec (libsvtav1, at preset 6)."""
CODEC_DEFAULTS: dict[str, tuple[int, str | None]] = {
    "h264": (22, "veryfast"),
    "hevc": (23, None),
    "libsvtav1": (30, None),
}
"""Per codec, the ``crf`` and ``preset`` used when ROBOVID_CRF / ROBOVID_PRESET are empty: the crf at which the codec
reaches the reference's scene PSNR (libsvtav1: the reference's own 30); preset None is the library's default
(libsvtav1: DEFAULT_SVTAV1_PRESET, 6; hevc: x265's own, medium)."""


def check_metrics_dir(value: str) -> str:
    """ROBOVID_METRICS_DIR (shared by robovid-watch and robovid-ship): empty, or an existing folder."""
    value = value.strip()
    if value and not Path(value).is_dir():
        raise ValueError(
            f"'{value}' is not an existing directory; name node_exporter's textfile folder "
            "(--collector.textfile.directory, /var/lib/prometheus/node-exporter on Debian), or leave it empty"
        )
    return value


class Settings(BaseSettings):
    """Every knob of robovid-watch. Documented with defaults in ``systemd/robovid.env``."""

    model_config = SettingsConfigDict(env_prefix="ROBOVID_", extra="ignore", case_sensitive=False, allow_inf_nan=False)

    root: Path = Path("/var/lib/robovid")
    vcodec: VCodec = SERVICE_VCODEC
    pix_fmt: PixFmt = "yuv420p"
    g: int = Field(2, ge=1, le=10_000)
    crf: int | None = Field(None, ge=CRF_MIN, le=CRF_MAX)
    """None (an empty ROBOVID_CRF): the codec's default, CODEC_DEFAULTS."""
    preset: str = ""
    fast_decode: int = Field(0, ge=0, le=2)
    encoder_threads: int = Field(1, ge=0, le=256)
    fps: int = Field(30, ge=1, le=1000)
    video_file_size_mb: float = Field(200.0, gt=0)
    chunk_size: int = Field(1000, ge=1)
    workers: int = Field(2, ge=1, le=64)
    malloc_arenas: int = Field(2, ge=0, le=1024)
    """glibc malloc arenas (daemon/memory.py); 0 leaves glibc's own limit (8 per core)."""
    complete_marker: str = ".complete"
    settle_s: float = Field(0.0, ge=0)
    rescan_s: float = Field(30.0, gt=0)
    log_format: Literal["auto", "json", "console"] = "auto"
    min_free_mb: int = Field(1024, ge=0)
    backlog_warn_s: float = Field(600.0, gt=0)
    min_psnr_db: float = Field(20.0, ge=0, le=100)
    max_frame_pixels: int = Field(3840 * 2160, ge=16 * 16)
    seal_idle_s: float = Field(3600.0, ge=0)
    metrics_dir: str = ""
    lerobot_encode: bool = False
    lerobot_export: bool = False
    lerobot_task: str = ""
    lerobot_quiet_s: float = Field(10.0, ge=0)

    @field_validator("complete_marker")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if not value or "/" in value or value in (".", ".."):
            raise ValueError("must be a plain file name such as '.complete'")
        if FRAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is a frame's name (frame-NNNNNN.png); choose another, such as '.complete'")
        return value

    @field_validator("metrics_dir")
    @classmethod
    def _metrics_folder(cls, value: str) -> str:
        return check_metrics_dir(value)

    @property
    def metrics_path(self) -> Path | None:
        """Where to write robovid_watch.prom (None: no metrics)."""
        return Path(self.metrics_dir) if self.metrics_dir else None

    @field_validator("crf", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("root")
    @classmethod
    def _existing_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"'{value}' is not an existing directory; create it or point ROBOVID_ROOT elsewhere")
        return value.absolute()

    def encoder_settings(self) -> EncoderSettings:
        """The library's encoder settings for these variables."""
        default_crf, default_preset = CODEC_DEFAULTS[self.vcodec]
        preset: int | str | None = self.preset.strip() or default_preset
        if isinstance(preset, str) and preset.isdigit():
            preset = int(preset)
        return EncoderSettings(
            vcodec=self.vcodec,
            pix_fmt=self.pix_fmt,
            g=self.g,
            crf=default_crf if self.crf is None else self.crf,
            preset=preset,
            fast_decode=self.fast_decode,
            threads=self.encoder_threads,
        )


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the environment; ConfigError naming every bad variable.

    ``overrides`` (field name -> value, e.g. from command-line options) take precedence over the
    ``ROBOVID_*`` variables and are validated the same way.
    """
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from error
    fps_limit = MAX_FPS.get(settings.vcodec)
    if fps_limit is not None and settings.fps > fps_limit:
        raise ConfigError(
            f"{_HEADER}\n  ROBOVID_FPS={settings.fps!r}: {settings.vcodec} encodes at most {fps_limit} fps; lower it, "
            "or set ROBOVID_VCODEC=h264 or hevc (up to 1000)"
        )
    try:
        settings.encoder_settings()
    except InvalidEncoderOptionError as error:
        field = _ENCODER_FIELDS.get(error.option, error.option)
        value = getattr(settings, field, None)
        raise ConfigError(f"{_HEADER}\n  ROBOVID_{field.upper()}={value!r}: {error}") from error
    return settings


_HEADER = "Invalid configuration, nothing was touched:"
_ENCODER_FIELDS = {"threads": "encoder_threads"}


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ()) if part]
        variable = f"ROBOVID_{location[0].upper()}" if location else "ROBOVID_* (encoder settings)"
        message = item.get("msg", "invalid").removeprefix("Value error, ")
        lines.append(f"{variable}={item.get('input')!r}: {message}")
    return _HEADER + "\n  " + "\n  ".join(lines)
