"""The encoders robovid drives, and how one set of settings becomes each encoder's FFmpeg options.

This table is the one codec whitelist: every other module asks it which encoders exist,
which FFmpeg encoder implements a ``vcodec``, what a ``crf`` means to that encoder, and
which options keep random access exact. Two families:

- **software** (``libsvtav1``, ``h264`` = libx264, ``hevc`` = libx265), tested here;
- **hardware** (NVENC, VAAPI, QSV, VideoToolbox, V4L2 M2M), whose option mapping and
  validation run here with real PyAV but whose encoders only open on machines with the
  device (``robovid.hardware`` probes which ones do).

Every encoder gets closed GOPs and no B-frames, so each keyframe is a clean random-access
point and presentation order equals decode order: a seek to any frame returns that frame,
and episodes can be appended by stream copy. ``crf`` maps to each encoder's own quality
knob; options are validated against the encoder's published AVOptions (types, ranges,
choices) plus robovid's tighter ranges where FFmpeg's are loose (``robovid._encoder_checks``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import av

from robovid.errors import InvalidEncoderOptionError

Options = dict[str, Any]
"""FFmpeg options with typed values (int, float, str); :func:`as_strings` for PyAV."""

FF_QP2LAMBDA = 118
"""FFmpeg's scale between a quantizer and ``global_quality`` (libavutil/avutil.h)."""


def _crf(name: str) -> Callable[[float], Options]:
    return lambda crf: {name: crf}


def _videotoolbox_quality(crf: float) -> Options:
    # VideoToolbox's only constant-quality knob is -q:v 1..100 (Apple Silicon), which on the
    # command line means flags=+qscale and global_quality=q*FF_QP2LAMBDA; "q:v" itself is not
    # an option avcodec_open2 knows (it is left unused). crf 0..49.5 -> q 100..1, as LeRobot maps it.
    q = max(1, min(100, round(100 - crf * 2)))
    return {"flags": "+qscale", "global_quality": q * FF_QP2LAMBDA}


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder robovid can drive."""

    vcodec: str
    """The name users pass (``vcodec="h264"``, ``"h264_nvenc"``)."""
    ffmpeg_name: str
    """The FFmpeg encoder PyAV opens."""
    codec: str
    """The stream's codec, as ``get_video_info`` reports it (``av1``, ``h264``, ``hevc``)."""
    hardware_api: str | None
    """``nvenc``, ``vaapi``, ``qsv``, ``videotoolbox``, ``v4l2m2m``; None for a software encoder."""
    crf_range: tuple[float, float]
    """``crf`` values robovid accepts for this encoder (before mapping)."""
    crf_is_int: bool
    quality: Callable[[float], Options]
    """``crf`` -> the encoder's own quality options."""
    pix_fmts: tuple[str, ...]
    """Pixel formats robovid encodes RGB frames to with this encoder (first: the default)."""
    preset_option: bool = True
    """Whether the encoder has a ``preset`` option (VAAPI, VideoToolbox, V4L2 M2M do not)."""
    preset_choices: tuple[str, ...] = ()
    """Preset names robovid accepts when FFmpeg publishes none (x264/x265 presets are free strings)."""
    preset_range: tuple[int, int] | None = None
    """Numeric presets robovid accepts, where FFmpeg's range is wider (SVT-AV1's -2 and -1 are research presets)."""
    random_access: Options = field(default_factory=dict)
    """Options that give closed GOPs without B-frames."""
    threads_option: str | None = None
    """Where ``threads`` goes (``lp`` for SVT-AV1, ``threads`` for x264/x265); None: ignored."""
    params_options: tuple[str, ...] = ()
    """Options holding the encoder's own ``key=value:key=value`` settings (``x264-params``, ...)."""
    field_params: Mapping[str, str] = field(default_factory=dict)
    """Keys of those settings that set what a structured field sets (``keyint``: ``g``), so refused there."""
    depth_pix_fmts: tuple[str, ...] = ()
    """Pixel formats robovid encodes depth maps to with this encoder (``robovid.depth_config``; first: the default)."""
    depth_only: bool = False
    """A depth-only encoder (FFV1): not offered for colour frames, nor to the service's ``ROBOVID_VCODEC``."""
    lossless: bool = False
    """No quality knob: ``crf`` must be None."""

    @property
    def is_hardware(self) -> bool:
        return self.hardware_api is not None


X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


_X26X_FIELD_PARAMS = {
    **dict.fromkeys(("keyint", "keyint-max"), "g"),
    **dict.fromkeys(("crf", "qp", "bitrate"), "crf"),  # the rate control: crf's, recorded as crf
    "threads": "encoder_threads",
}
"""x264/x265 settings a structured field sets (their presets and tunes are not params keys)."""


def _hardware(
    api: str,
    crf_range: tuple[float, float],
    quality: Callable[[float], Options],
    crf_is_int: bool = True,
    pix_fmts: tuple[str, ...] = ("yuv420p", "nv12"),
    preset_option: bool = True,
    random_access: Options | None = None,
) -> list[EncoderSpec]:
    """The h264 and hevc encoders of one hardware API (threads and fast_decode do not apply)."""
    return [
        EncoderSpec(
            vcodec=f"{codec}_{api}",
            ffmpeg_name=f"{codec}_{api}",
            codec=codec,
            hardware_api=api,
            crf_range=crf_range,
            crf_is_int=crf_is_int,
            quality=quality,
            pix_fmts=pix_fmts,
            preset_option=preset_option,
            random_access=random_access if random_access is not None else {"bf": 0},
        )
        for codec in ("h264", "hevc")
    ]


_SPECS = [
    EncoderSpec(
        vcodec="libsvtav1",
        ffmpeg_name="libsvtav1",
        codec="av1",
        hardware_api=None,
        crf_range=(0, 63),
        crf_is_int=True,
        quality=_crf("crf"),
        pix_fmts=("yuv420p",),
        preset_range=(0, 13),
        # SVT-AV1's default, pinned: irefresh-type=1 (forward keyframes) opens the GOPs and leaves one sync sample.
        random_access={"svtav1-params": "irefresh-type=2"},
        threads_option="lp",
        params_options=("svtav1-params",),
        field_params={
            "keyint": "g",
            **dict.fromkeys(("crf", "qp", "rc", "tbr"), "crf"),
            "preset": "preset",
            "fast-decode": "fast_decode",
            "lp": "encoder_threads",
        },
    ),
    EncoderSpec(
        vcodec="h264",
        ffmpeg_name="libx264",
        codec="h264",
        hardware_api=None,
        crf_range=(0, 51),
        crf_is_int=False,
        quality=_crf("crf"),
        pix_fmts=("yuv420p", "yuv444p"),
        preset_choices=X26X_PRESETS,
        # x264's GOPs are closed by default; pinned in x264-params too, which x264 parses after bf (and x264opts)
        random_access={"bf": 0, "x264-params": "bframes=0:open-gop=0"},
        threads_option="threads",
        params_options=("x264opts", "x264-params"),
        field_params=_X26X_FIELD_PARAMS,
    ),
    EncoderSpec(
        vcodec="hevc",
        ffmpeg_name="libx265",
        codec="hevc",
        hardware_api=None,
        crf_range=(0, 51),
        crf_is_int=False,
        quality=_crf("crf"),
        pix_fmts=("yuv420p",),
        preset_choices=X26X_PRESETS,
        depth_pix_fmts=("gray12le",),  # LeRobot's depth path: 12-bit codes, HEVC Main 12
        # libx265 opens GOPs by default: frames after a keyframe then came back 1-2 late.
        random_access={"bf": 0, "x265-params": "log-level=error:no-open-gop=1:bframes=0"},
        threads_option="threads",
        params_options=("x265-params",),
        field_params=_X26X_FIELD_PARAMS,
    ),
    # FFV1: lossless and intra-only (g=1: with g > 1 a frame's coder state carries over from the frame
    # before, so a seek could not start there). robovid's exact depth codec: 16-bit samples kept as they are.
    EncoderSpec(
        vcodec="ffv1",
        ffmpeg_name="ffv1",
        codec="ffv1",
        hardware_api=None,
        crf_range=(0, 0),
        crf_is_int=True,
        quality=lambda crf: {},
        pix_fmts=(),
        preset_option=False,
        depth_pix_fmts=("gray16le",),
        depth_only=True,
        lossless=True,
    ),
    # NVENC: constant QP. FFmpeg sets its IDR period to g; no-scenecut keeps keyframes where g puts them.
    *_hardware(
        "nvenc",
        (0, 51),
        lambda crf: {"rc": 0, "qp": crf},  # rc 0 is constqp
        random_access={"bf": 0, "forced-idr": 1, "no-scenecut": 1},
    ),
    # QSV: ICQ quality through global_quality; closed GOPs, every I-frame an IDR; takes nv12 only.
    *_hardware(
        "qsv",
        (1, 51),
        _crf("global_quality"),
        pix_fmts=("nv12",),
        random_access={"bf": 0, "flags": "+cgop", "idr_interval": 0},
    ),
    *_hardware(
        "vaapi", (0, 51), _crf("qp"), preset_option=False, random_access={"bf": 0, "flags": "+cgop", "idr_interval": 0}
    ),
    *_hardware("videotoolbox", (0, 49.5), _videotoolbox_quality, preset_option=False, crf_is_int=False),
    # V4L2 M2M (Raspberry Pi class boards): the quantizer bounded to crf on both sides.
    *_hardware("v4l2m2m", (0, 51), lambda crf: {"qmin": crf, "qmax": crf}, preset_option=False),
]

ENCODERS: dict[str, EncoderSpec] = {spec.vcodec: spec for spec in _SPECS}
"""Every encoder robovid drives, by ``vcodec``."""
MAX_FPS: dict[str, int] = {"libsvtav1": 240}
"""Frame rates an encoder refuses above (measured through PyAV 18.1: SVT-AV1 4.1 fails to open past
240 fps, ``The maximum allowed frame rate is 240 fps``; libx264 and libx265 took up to 1000)."""

SOFTWARE_VCODECS = tuple(name for name, spec in ENCODERS.items() if not spec.is_hardware and not spec.depth_only)
SOFTWARE_PIX_FMTS = tuple(dict.fromkeys(fmt for name in SOFTWARE_VCODECS for fmt in ENCODERS[name].pix_fmts))
HW_VIDEO_CODECS = [
    "h264_videotoolbox",
    "hevc_videotoolbox",
    "h264_nvenc",
    "hevc_nvenc",
    "h264_vaapi",
    "hevc_vaapi",
    "h264_qsv",
    "hevc_qsv",
    "h264_v4l2m2m",
    "hevc_v4l2m2m",
]
"""Hardware encoders in the order ``vcodec="auto"`` tries them (LeRobot's order, then V4L2 M2M)."""
AUTO = "auto"
VALID_VIDEO_CODECS: frozenset[str] = frozenset({AUTO, *ENCODERS})
VIDEO_CODECS_ALIASES: dict[str, str] = {"av1": "libsvtav1", "libx264": "h264", "libx265": "hevc"}
"""Stream codec and FFmpeg encoder names accepted for the ``vcodec`` they mean."""


def canonical_vcodec(vcodec: object) -> str:
    """``vcodec`` with aliases resolved; InvalidEncoderOptionError naming the supported values."""
    name = VIDEO_CODECS_ALIASES.get(vcodec, vcodec) if isinstance(vcodec, str) else vcodec
    if name not in VALID_VIDEO_CODECS:
        raise InvalidEncoderOptionError(
            f"Invalid vcodec ({vcodec!r}). Supported values are {', '.join(sorted(SOFTWARE_VCODECS))} (software), "
            f"'auto' (a hardware encoder if one opens here, else libsvtav1), and the hardware encoders "
            f"{', '.join(HW_VIDEO_CODECS)}.",
            "vcodec",
        )
    return str(name)


def spec_of(vcodec: str) -> EncoderSpec:
    """The spec of a resolved ``vcodec``; ``"auto"`` must be resolved first (``robovid.hardware.resolve_vcodec``)."""
    name = canonical_vcodec(vcodec)
    if name == AUTO:
        raise InvalidEncoderOptionError(
            "vcodec='auto' is resolved when the settings are built; call validate() or resolve_vcodec() after "
            "changing vcodec to 'auto'.",
            "vcodec",
        )
    return ENCODERS[name]


@functools.cache
def in_this_build(ffmpeg_name: str) -> bool:
    """Whether PyAV's FFmpeg has this video encoder compiled in (it may still fail to open)."""
    try:
        return av.codec.Codec(ffmpeg_name, "w").type == "video"
    except (av.error.FFmpegError, ValueError):
        return False


def codec_options(
    spec: EncoderSpec,
    *,
    g: int | None,
    crf: float | None,
    preset: int | str | None,
    fast_decode: int,
    threads: int | None,
    extra_options: Mapping[str, Any],
) -> Options:
    """The FFmpeg options for these settings, typed; robovid's own options win over ``extra_options``.

    ``threads=None`` is robovid's choice: one SVT-AV1 thread (``lp=1``, measured best on 2
    cores, benchmarks/README.md), the encoder's own choice elsewhere; 0 lets the encoder decide.
    ``*-params`` strings (``x264-params``, ``x265-params``, ``svtav1-params``) are merged key by key,
    robovid's keys last (they win), so ``extra_options={"x265-params": "lossless=1"}`` still gets closed
    GOPs and ``{"x264opts": "bframes=3"}`` no B-frames (x264 parses ``x264-params`` after ``x264opts``).
    """
    options: Options = {}
    if g is not None:
        options["g"] = g
    if crf is not None:
        options.update(spec.quality(crf))
    if preset is not None and spec.preset_option:
        options["preset"] = preset
    params: list[str] = []
    if spec.vcodec == "libsvtav1":
        if fast_decode:
            params.append(f"fast-decode={fast_decode}")
        lp = 1 if threads is None else threads
        if lp:
            params.append(f"lp={lp}")
        if params:
            options["svtav1-params"] = ":".join(params)
    elif not spec.is_hardware:
        if fast_decode:
            options["tune"] = "fastdecode"
        if threads:
            options[spec.threads_option or "threads"] = threads
    for key, value in spec.random_access.items():
        options[key] = (
            _merge_params(str(options[key]), str(value)) if key.endswith("-params") and key in options else value
        )
    for key, value in extra_options.items():
        if key.endswith("-params") and key in options:
            options[key] = _merge_params(str(value), str(options[key]))
        elif key == "flags" and key in options:
            options[key] = str(value) + str(options[key])
        elif key not in options:
            options[key] = value
    return options


def _merge_params(first: str, last: str) -> str:
    """Two ``key=value:key=value`` lists as one, a key of ``last`` replacing the same key of ``first``."""
    merged: dict[str, str] = {}
    for item in (*first.split(":"), *last.split(":")):
        if item:
            key, _, value = item.partition("=")
            merged[key] = value
    return ":".join(f"{k}={v}" if v else k for k, v in merged.items())


def as_strings(options: Options) -> dict[str, str]:
    """Options as PyAV passes them to FFmpeg."""
    return {key: str(value) for key, value in options.items()}
