"""Validation of encoder settings: robovid's ranges, then the encoder's own published options.

Used where settings objects are built (``EncoderSettings``, ``VideoEncoderConfig``), so a
bad value is refused once, with a message naming the option, its value, why, and what is
accepted. The encoders and their rules are in :mod:`robovid.encoders`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeGuard

import av

from robovid.encoders import ENCODERS, SOFTWARE_PIX_FMTS, SOFTWARE_VCODECS, EncoderSpec, in_this_build, spec_of
from robovid.errors import InvalidEncoderOptionError


@functools.cache
def _published_options(ffmpeg_name: str) -> dict[str, Any]:
    """The encoder's AVOptions (generic and private) by name, as PyAV publishes them."""
    supported = av.codec.CodecContext.create(ffmpeg_name, "w").supported_options
    return {option.name: option for option in (*supported.generic, *supported.private)}


@functools.cache
def _build_pix_fmts(ffmpeg_name: str) -> tuple[str, ...]:
    return tuple(fmt.name for fmt in (av.codec.Codec(ffmpeg_name, "w").video_formats or ()))


def check_settings(
    vcodec: str,
    pix_fmt: object,
    g: object,
    crf: object,
    preset: object,
    fast_decode: object,
    threads: object,
    extra_options: Mapping[str, Any],
    depth: bool = False,
) -> EncoderSpec:
    """Validate one set of settings for a resolved ``vcodec``; its spec, or InvalidEncoderOptionError.

    ``depth``: the settings encode depth maps (``robovid.depth_config``), whose pixel formats are
    the spec's ``depth_pix_fmts``. Each message says which option, its value, why, and what is accepted.
    """
    spec = spec_of(vcodec)
    if not in_this_build(spec.ffmpeg_name):
        raise InvalidEncoderOptionError(
            f"Invalid vcodec ({vcodec!r}): PyAV's FFmpeg on this machine has no {spec.ffmpeg_name} encoder "
            f"(PyAV {av.__version__}). Use vcodec='auto' to pick what opens here, or a software encoder "
            f"({', '.join(SOFTWARE_VCODECS)}).",
            "vcodec",
        )
    if depth:
        _check_depth_pix_fmt(spec, pix_fmt)
    else:
        _check_pix_fmt(spec, pix_fmt)
    if spec.lossless and crf is not None:
        raise InvalidEncoderOptionError(
            f"Invalid crf ({crf!r}) for {spec.vcodec}: it is lossless and has no quality setting; pass crf=None.",
            "crf",
        )
    if g is not None and (not _is_int(g) or g < 1):
        raise InvalidEncoderOptionError(f"Invalid g ({g!r}). It must be a whole number >= 1, or None.", "g")
    if crf is not None:
        _check_crf(spec, crf)
    if preset is not None and spec.preset_option:
        _check_preset(spec, preset)
    if not _is_int(fast_decode) or not 0 <= fast_decode <= 2:
        raise InvalidEncoderOptionError(
            f"Invalid fast_decode ({fast_decode!r}). Supported values are 0, 1, 2.", "fast_decode"
        )
    if threads is not None and (not _is_int(threads) or threads < 0):
        raise InvalidEncoderOptionError(f"Invalid threads ({threads!r}). It must be 0 (auto) or more.", "threads")
    for key, value in extra_options.items():
        if not isinstance(key, str) or not key:
            raise InvalidEncoderOptionError(f"Invalid extra_options key ({key!r}): it must be an option name.", key)
        if key in _published_options(spec.ffmpeg_name):
            _check_value(spec, key, f"Invalid extra option {key}={value!r} for {spec.ffmpeg_name}", value, key)
        if key in spec.params_options:
            _check_params(spec, key, value)
    return spec


def _check_params(spec: EncoderSpec, option: str, value: object) -> None:
    """Refuse a ``*-params`` setting that would override a structured field: the encoder parses these strings
    after the fields' options, and the file would record the field's value while the encoder used another."""
    for item in str(value).split(":"):
        name, _, setting = item.partition("=")
        field = spec.field_params.get(name.strip().lower().replace("_", "-"))
        if field is not None:
            raise InvalidEncoderOptionError(
                f"Invalid extra option {option}={value!r} for {spec.ffmpeg_name}: {name}={setting} sets what robovid's "
                f"{field} sets (and records in the file). Remove it from {option} and set {field} instead.",
                option,
            )


def _check_depth_pix_fmt(spec: EncoderSpec, pix_fmt: object) -> None:
    if pix_fmt in spec.depth_pix_fmts:
        return
    accepted = "; ".join(f"{s.vcodec}: {', '.join(s.depth_pix_fmts)}" for s in ENCODERS.values() if s.depth_pix_fmts)
    raise InvalidEncoderOptionError(
        f"Invalid pix_fmt ({pix_fmt!r}) for depth with vcodec {spec.vcodec!r}. Depth is encoded as {accepted}.",
        "pix_fmt",
    )


def _check_pix_fmt(spec: EncoderSpec, pix_fmt: object) -> None:
    if spec.depth_only:
        raise InvalidEncoderOptionError(
            f"Invalid vcodec ({spec.vcodec!r}) for colour frames: robovid uses it for depth maps only "
            "(DepthEncoderConfig). Use h264, hevc or libsvtav1.",
            "vcodec",
        )
    built = _build_pix_fmts(spec.ffmpeg_name)
    supported = [fmt for fmt in spec.pix_fmts if not built or fmt in built]
    if pix_fmt in supported:
        return
    if spec.is_hardware:
        accepted = ", ".join(supported)
    else:  # name every format robovid encodes in software, and which encoder takes which
        accepted = (
            f"{', '.join(SOFTWARE_PIX_FMTS)} ({spec.vcodec} takes {', '.join(supported)}; yuv444p needs vcodec='h264')"
        )
    raise InvalidEncoderOptionError(
        f"Invalid pix_fmt ({pix_fmt!r}) for vcodec {spec.vcodec!r}. Supported values are {accepted}.", "pix_fmt"
    )


def _check_preset(spec: EncoderSpec, preset: object) -> None:
    where = f"Invalid preset ({preset!r}) for {spec.vcodec}"
    if spec.preset_choices and preset not in spec.preset_choices:
        raise InvalidEncoderOptionError(f"{where}. Supported values are {', '.join(spec.preset_choices)}.", "preset")
    if spec.preset_range is not None:
        _check_number(where, preset, spec.preset_range, True, "preset")
    _check_value(spec, "preset", where, preset, "preset")


def _check_crf(spec: EncoderSpec, crf: object) -> None:
    _check_number(f"Invalid crf ({crf!r}) for {spec.vcodec}", crf, spec.crf_range, spec.crf_is_int, "crf")


def _check_number(where: str, value: object, bounds: tuple[float, float], integer: bool, option: str) -> None:
    low, high = bounds
    expected = f"it must be {'a whole number' if integer else 'a number'} from {low:g} to {high:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEncoderOptionError(f"{where}: not numeric; {expected}.", option)
    if integer and not float(value).is_integer():
        raise InvalidEncoderOptionError(f"{where}: float values are not allowed; {expected}.", option)
    if not low <= value <= high:
        raise InvalidEncoderOptionError(f"{where}: out of range; {expected}.", option)


_NUMERIC_TYPES = ("INT", "INT64", "UINT64", "UINT", "FLOAT", "DOUBLE")
_INTEGER_TYPES = ("INT", "INT64", "UINT64", "UINT")


def _check_value(spec: EncoderSpec, name: str, where: str, value: object, option: str) -> None:
    """Check ``value`` against the encoder's published AVOption ``name`` (type, range, choices)."""
    published = _published_options(spec.ffmpeg_name).get(name)
    if published is None:
        return
    type_name = getattr(published.type, "name", str(published.type))
    choices = [choice.name for choice in published.choices]
    if isinstance(value, str) and value in choices:
        return
    if type_name in _NUMERIC_TYPES:
        number = _as_number(value)
        if number is None:
            named = f" or one of {', '.join(choices)}" if choices else ""
            raise InvalidEncoderOptionError(
                f"{where}: not numeric; {spec.ffmpeg_name} expects a number{named}.", option
            )
        low, high = published.min, published.max
        expected = f"it must be from {low:g} to {high:g}" if low < high else "see the encoder's documentation"
        if type_name in _INTEGER_TYPES and not number.is_integer():
            raise InvalidEncoderOptionError(
                f"{where}: float values are not allowed ({name} is an integer option); {expected}.", option
            )
        if low < high and not low <= number <= high:
            raise InvalidEncoderOptionError(f"{where}: out of range; {expected}.", option)
    elif type_name == "STRING" and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
        raise InvalidEncoderOptionError(f"{where}: not a valid string value.", option)
    elif type_name == "STRING" and choices and str(value) not in choices:
        raise InvalidEncoderOptionError(
            f"{where}: not a supported choice; valid choices: {', '.join(choices)}.", option
        )


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
