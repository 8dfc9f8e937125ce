"""Depth maps as video: reading 16-bit depth frames, samples in and out of one-plane frames, LeRobot's quantizer.

Depth cameras (RealSense D4xx and similar) give ``uint16`` millimetres, 0 where they have no
reading, written by recorders as 16-bit greyscale PNGs (LeRobot writes TIFFs). robovid stores
them two ways (``benchmarks/README.md``, ``bench_depth``, has the measurements):

- **exact** (``DepthEncoderConfig.exact()``, the service's choice): the samples as they are, in
  ``gray16le`` frames coded with FFV1 (lossless, every frame a keyframe) in MP4. Decoding gives
  back every sample, holes (0) included.
- **LeRobot's** (``DepthEncoderConfig()``'s defaults): depth quantized to 12-bit codes on a log
  scale between ``depth_min`` and ``depth_max`` metres (:func:`quantize_depth`), in ``gray12le``
  frames coded with HEVC Main 12 (``x265 lossless=1``). Decoding with ``is_depth=True`` gives the
  codes, as LeRobot's does; :func:`dequantize_depth` turns them into depth, off by up to
  :func:`quantization_error_mm` (1.2 mm at 1 m, 2.7 mm at 10 m), holes (0) coming back as
  ``depth_min`` (10 mm) and depth past ``depth_max`` clipped to it.

Samples go into a frame's plane as they are: converting a ``gray16le`` array to ``gray12le``
with swscale would rescale it (1000 becomes 62), so :func:`depth_frame` writes the plane itself
and :func:`frame_samples` reads it without conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import imagecodecs
import numpy as np
import numpy.typing as npt

from robovid.errors import CorruptFrameError, FrameFormatError
from robovid.frames import _HEADER_SIZE_BYTES, _check_png, _parse_header, _read

DEPTH_QUANT_BITS = 12
DEPTH_QMAX = (1 << DEPTH_QUANT_BITS) - 1
"""The largest 12-bit depth code (4095)."""
DEFAULT_DEPTH_MIN = 0.01
"""Metres mapped to code 0 (LeRobot's default)."""
DEFAULT_DEPTH_MAX = 10.0
"""Metres mapped to code DEPTH_QMAX (LeRobot's default)."""
DEFAULT_DEPTH_SHIFT = 3.5
"""Metres added before the log (LeRobot's default)."""
DEFAULT_DEPTH_USE_LOG = True
DEFAULT_DEPTH_PIX_FMT = "gray12le"
"""LeRobot's depth pixel format (12-bit codes)."""
DEPTH_METER_UNIT: Literal["m"] = "m"
DEPTH_MILLIMETER_UNIT: Literal["mm"] = "mm"
EXACT_DEPTH_VCODEC = "ffv1"
"""robovid's exact depth codec: lossless, intra-only, muxed in MP4, appended in place."""
EXACT_DEPTH_PIX_FMT = "gray16le"
"""Samples stored as they are: millimetres."""
DEPTH_PIX_FMTS = ("gray16le", "gray12le")
_MM_PER_M = 1000.0
_UINT16_MAX = 65535
_GREY = 0  # PNG colour type

DepthUnit = Literal["m", "mm"]
Samples = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class DepthQuantizer:
    """LeRobot's depth-to-12-bit mapping (bounds in metres); recorded with every depth encode.

    Used only by ``gray12le`` encodes; a ``gray16le`` encode stores millimetres as they are.
    """

    depth_min: float = DEFAULT_DEPTH_MIN
    depth_max: float = DEFAULT_DEPTH_MAX
    shift: float = DEFAULT_DEPTH_SHIFT
    use_log: bool = DEFAULT_DEPTH_USE_LOG

    def __post_init__(self) -> None:
        for name in ("depth_min", "depth_max", "shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Invalid {name} ({value!r}): it must be a finite number of metres.")
        if not isinstance(self.use_log, bool):
            raise ValueError(f"Invalid use_log ({self.use_log!r}): it must be True or False.")
        if not self.depth_min < self.depth_max:
            raise ValueError(
                f"Invalid depth range: depth_min ({self.depth_min}) must be below depth_max ({self.depth_max})."
            )
        if self.use_log:
            _log_range(self.depth_min, self.depth_max, self.shift)

    def quantize(self, depth: npt.NDArray[np.generic]) -> Samples:
        return quantize_depth(depth, self.depth_min, self.depth_max, self.shift, self.use_log)

    def dequantize(self, codes: npt.NDArray[np.generic], output_unit: DepthUnit = "mm") -> npt.NDArray[np.generic]:
        return dequantize_depth(codes, self.depth_min, self.depth_max, self.shift, self.use_log, output_unit)


# ---------------------------------------------------------------- depth frame files


def depth_frame_kind(path: Path) -> str | None:
    """``"depth"`` for a 16-bit greyscale PNG (a depth map), None for any other PNG (reads 33 bytes).

    Damaged headers raise what :func:`robovid.frames.frame_size` raises.
    """
    header = _parse_header(_read(Path(path), _HEADER_SIZE_BYTES), Path(path))
    return "depth" if header.bit_depth == 16 and header.color_type == _GREY else None


def read_depth_frame(path: Path) -> Samples:
    """A 16-bit greyscale PNG (or TIFF, as LeRobot writes depth) as a ``(height, width)`` uint16 array.

    PNGs get every check :func:`robovid.frames.read_frame_rgb` makes (signature, every chunk CRC,
    IEND, the deflate checksum). FrameFormatError for anything but one 16-bit channel (an 8-bit or
    colour image is not depth robovid can keep exactly), CorruptFrameError for a damaged file.
    """
    path = Path(path)
    data = _read(path, None)
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            pixels = np.asarray(imagecodecs.tiff_decode(data))
        except (RuntimeError, ValueError) as error:
            raise CorruptFrameError(f"Depth frame {path} cannot be decoded as TIFF ({error}).") from error
        return depth_samples(pixels, where=f"Depth frame {path}", integers_only=True)
    header = _check_png(data, path)
    if header.bit_depth != 16 or header.color_type != _GREY:
        raise FrameFormatError(
            f"Depth frame {path} is a {header.bit_depth}-bit PNG of colour type {header.color_type}; a depth "
            "episode's frames are all 16-bit greyscale (millimetres). Keep one kind of frame per camera."
        )
    try:
        pixels = np.asarray(imagecodecs.png_decode(data), dtype=np.uint16)
    except (RuntimeError, ValueError) as error:
        raise CorruptFrameError(
            f"Depth frame {path} has intact chunks but its image data cannot be decoded ({error}). "
            "Re-record the episode or delete this file."
        ) from error
    # a tRNS chunk (one sample value named transparent, such as 0: no reading) decodes as grey + alpha; the alpha
    # says only which samples hold that value, so the grey channel is all the depth there is
    return pixels[..., 0] if pixels.ndim == 3 else pixels


def depth_samples(image: npt.NDArray[np.generic], where: str = "depth frame", integers_only: bool = False) -> Samples:
    """A depth image as a ``(height, width)`` uint16 array of millimetres.

    Takes ``(H, W)``, ``(H, W, 1)`` or ``(1, H, W)`` arrays: integers are millimetres (0..65535),
    floats are metres, rounded to the nearest millimetre (NaN and negative values become 0, no
    reading). FrameFormatError otherwise.
    """
    array = np.asarray(image)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2:
        raise FrameFormatError(
            f"{where}: a depth image must be (height, width), (height, width, 1) or (1, height, width); got shape "
            f"{array.shape}. Pass one channel of depth."
        )
    if array.dtype == np.uint16:
        return array
    if np.issubdtype(array.dtype, np.integer) and not (integers_only and array.dtype.itemsize < 2):
        if array.size and (int(array.min()) < 0 or int(array.max()) > _UINT16_MAX):
            raise FrameFormatError(
                f"{where}: integer depth must be millimetres in 0..65535, got {int(array.min())}..{int(array.max())}."
            )
        return array.astype(np.uint16)
    if np.issubdtype(array.dtype, np.floating) and not integers_only:
        metres = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        return np.rint(np.clip(metres * _MM_PER_M, 0, _UINT16_MAX)).astype(np.uint16)
    raise FrameFormatError(f"{where}: depth of dtype {array.dtype} is not supported; store uint16 millimetres.")


# ---------------------------------------------------------------- frames


def depth_frame(samples: Samples, pix_fmt: str = EXACT_DEPTH_PIX_FMT) -> av.VideoFrame:
    """A new ``gray16le`` or ``gray12le`` frame holding ``samples`` unscaled (12-bit: codes 0..4095)."""
    if pix_fmt not in DEPTH_PIX_FMTS:
        raise ValueError(f"Invalid depth pixel format {pix_fmt!r}. Supported values are {', '.join(DEPTH_PIX_FMTS)}.")
    if pix_fmt == "gray12le" and samples.size and int(samples.max()) > DEPTH_QMAX:
        raise ValueError(f"gray12le holds 12-bit codes (0..{DEPTH_QMAX}); quantize depth first (quantize_depth).")
    frame = av.VideoFrame(samples.shape[1], samples.shape[0], pix_fmt)
    frame_samples(frame)[...] = samples
    return frame


def frame_samples(frame: av.VideoFrame) -> Samples:
    """The samples of a one-plane 16-bit depth frame as stored (no scaling): a view of its plane."""
    if frame.format.name not in DEPTH_PIX_FMTS:
        raise ValueError(f"Not a depth frame: pixel format {frame.format.name}, expected one of {DEPTH_PIX_FMTS}.")
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint16).reshape(plane.height, plane.line_size // 2)
    return rows[:, : plane.width]


# ---------------------------------------------------------------- LeRobot's quantizer


def _log_range(depth_min: float, depth_max: float, shift: float) -> tuple[float, float]:
    if depth_min + shift <= 0:
        raise ValueError(
            f"depth_min + shift must be positive for logarithmic quantization, got depth_min={depth_min} + "
            f"shift={shift} = {depth_min + shift}"
        )
    return math.log(depth_min + shift), math.log(depth_max + shift)


def quantize_depth(
    depth: npt.NDArray[np.generic],
    depth_min: float = DEFAULT_DEPTH_MIN,
    depth_max: float = DEFAULT_DEPTH_MAX,
    shift: float = DEFAULT_DEPTH_SHIFT,
    use_log: bool = DEFAULT_DEPTH_USE_LOG,
    input_unit: Literal["auto", "m", "mm"] = "auto",
) -> Samples:
    """LeRobot's depth quantizer: depth to 12-bit codes (0..DEPTH_QMAX), log or linear between the bounds.

    ``depth_min``, ``depth_max`` and ``shift`` are metres; the input is millimetres when it holds
    integers and metres when floats (``input_unit="auto"``), or as ``input_unit`` says.
    Returns a uint16 array (LeRobot's returns a PyAV frame by default; :func:`depth_frame` makes one).
    """
    if input_unit not in ("auto", DEPTH_METER_UNIT, DEPTH_MILLIMETER_UNIT):
        raise ValueError(f"input_unit must be 'auto', 'm' or 'mm', got {input_unit!r}")
    array = np.asarray(depth)
    unit = input_unit if input_unit != "auto" else ("m" if np.issubdtype(array.dtype, np.floating) else "mm")
    metres = array.astype(np.float64) / (_MM_PER_M if unit == DEPTH_MILLIMETER_UNIT else 1.0)
    if use_log:
        low, high = _log_range(depth_min, depth_max, shift)
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = (np.log(metres + shift) - low) / (high - low)
    else:
        norm = (metres - depth_min) / (depth_max - depth_min)
    return np.rint(np.nan_to_num(norm, nan=0.0) * DEPTH_QMAX).clip(0, DEPTH_QMAX).astype(np.uint16)


def dequantize_depth(
    codes: npt.NDArray[np.generic],
    depth_min: float = DEFAULT_DEPTH_MIN,
    depth_max: float = DEFAULT_DEPTH_MAX,
    shift: float = DEFAULT_DEPTH_SHIFT,
    use_log: bool = DEFAULT_DEPTH_USE_LOG,
    output_unit: DepthUnit = DEPTH_MILLIMETER_UNIT,
) -> npt.NDArray[np.generic]:
    """The inverse of :func:`quantize_depth` (same bounds): uint16 millimetres, or float32 metres. Shape kept."""
    if output_unit not in (DEPTH_METER_UNIT, DEPTH_MILLIMETER_UNIT):
        raise ValueError(f"output_unit must be 'm' or 'mm', got {output_unit!r}")
    norm = np.asarray(codes).astype(np.float64) / DEPTH_QMAX
    if use_log:
        low, high = _log_range(depth_min, depth_max, shift)
        metres = np.exp(norm * (high - low) + low) - shift
    else:
        metres = norm * (depth_max - depth_min) + depth_min
    metres = np.clip(metres, depth_min, depth_max)
    if output_unit == DEPTH_METER_UNIT:
        return metres.astype(np.float32)
    return np.rint(np.clip(metres * _MM_PER_M, 0, _UINT16_MAX)).astype(np.uint16)


def quantization_error_mm(
    depth_mm: float,
    depth_min: float = DEFAULT_DEPTH_MIN,
    depth_max: float = DEFAULT_DEPTH_MAX,
    shift: float = DEFAULT_DEPTH_SHIFT,
    use_log: bool = DEFAULT_DEPTH_USE_LOG,
) -> float:
    """The most a quantized depth at ``depth_mm`` (inside the bounds) is off: half a code step plus 0.5 mm of rounding."""
    if use_log:
        low, high = _log_range(depth_min, depth_max, shift)
        step_m = (depth_mm / _MM_PER_M + shift) * (high - low) / DEPTH_QMAX
    else:
        step_m = (depth_max - depth_min) / DEPTH_QMAX
    return step_m * _MM_PER_M / 2 + 0.5
