"""Compact fingerprints of frames (per-tile means of each plane) and the tile-by-tile check against them.

The encoder keeps one fingerprint per source frame, taken in its PNG reader thread from the
YUV frame it already hands the encoder (no second read of the PNG, no colour conversion);
the verify stage takes the same fingerprint of every decoded frame and compares them.

A tile is ``TILE_PX`` x ``TILE_PX`` samples of a plane: 8x8 px of luma, 16x16 px of the frame
for 4:2:0 chroma. A 16 px detail always covers a whole luma tile, an 8 px one at least a
quarter of one, so both move its mean by far more than coding noise does. A fingerprint is
1.5 bytes per 64 px (4:2:0): 7.2 kB for a 640x480 frame, 21.6 kB at 1280x720.

A decoded tile fails when it

- is **stale**: its source changed by at least ``STALE_MIN_CHANGE`` levels since the previous
  frame, and the decoded mean is closer to the previous frame's than to its own;
- or is **off**: its mean is ``OFF_LEVELS`` or more away from its own source's.

Calibrated on real encodes in ``tests/test_fingerprint.py``: faithful encodes (libsvtav1 at
robovid's default, h264 and hevc at theirs, natural high-motion content at crf 30) never fail,
SVT-AV1 4.1 at presets 11-13 on the fidelity clips always does.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

TILE_PX = 8
"""Tile side in samples of each plane."""
STALE_MIN_CHANGE = 16
"""Levels (0..255) a tile's source mean must change between two frames before staleness is judged."""
OFF_LEVELS = 48
"""Levels by which a decoded tile mean may never differ from its own source's."""
_PLANE_NAMES = ("Y", "U", "V")

TileMeans = npt.NDArray[np.uint8]
FloatTiles = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Fingerprint:
    """Rounded tile means of each plane of one frame."""

    planes: tuple[TileMeans, ...]
    width: int
    height: int
    scales: tuple[tuple[int, int], ...]
    """Frame pixels per plane sample, (x, y), per plane: (1, 1) for luma, (2, 2) for 4:2:0 chroma."""
    pix_fmt: str

    @property
    def size_bytes(self) -> int:
        return sum(p.nbytes for p in self.planes)


def fingerprint(frame: av.VideoFrame) -> Fingerprint:
    """The fingerprint of a planar 8-bit YUV frame (yuv420p, yuv444p, ...)."""
    planes = tuple(tile_means(_plane_array(plane)) for plane in frame.planes)
    scales = tuple((-(-frame.width // p.width), -(-frame.height // p.height)) for p in frame.planes)
    return Fingerprint(planes, frame.width, frame.height, scales, frame.format.name)


def _plane_array(plane: av.video.plane.VideoPlane) -> npt.NDArray[np.uint8]:
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def tile_means(plane: npt.NDArray[np.uint8]) -> TileMeans:
    """Rounded mean of every ``TILE_PX`` square of ``plane``; a partial last row or column of tiles
    is averaged over the samples it has."""
    return np.rint(mean_of_tiles(plane, np.uint16)).astype(np.uint8)


def mean_of_tiles(samples: npt.NDArray[np.unsignedinteger], sum_dtype: type[np.unsignedinteger]) -> FloatTiles:
    """Mean of every ``TILE_PX`` square of a 2-D array, summed in ``sum_dtype`` (it must hold ``TILE_PX**2``
    samples); a partial last row or column of tiles is averaged over the samples it has."""
    height, width = samples.shape
    t = TILE_PX
    if height % t or width % t:
        padded = np.zeros((-(-height // t) * t, -(-width // t) * t), dtype=samples.dtype)
        padded[:height, :width] = samples
        counts = np.outer(_counts(height), _counts(width))
        return _tile_sums(padded, sum_dtype) / counts
    return _tile_sums(samples, sum_dtype) / (t * t)


def _tile_sums(
    samples: npt.NDArray[np.unsignedinteger], sum_dtype: type[np.unsignedinteger]
) -> npt.NDArray[np.unsignedinteger]:
    """Sums of TILE_PX squares by strided adds (3-5x faster than a reshape + sum over two axes)."""
    t = TILE_PX
    wide = samples.astype(sum_dtype)
    cols = wide[:, 0::t].copy()
    for k in range(1, t):
        cols += wide[:, k::t]
    sums = cols[0::t].copy()
    for k in range(1, t):
        sums += cols[k::t]
    return sums


def _counts(n: int) -> npt.NDArray[np.int64]:
    counts = np.full(-(-n // TILE_PX), TILE_PX)
    counts[-1] = n - TILE_PX * (len(counts) - 1)
    return counts


@dataclass(frozen=True)
class TileMismatch:
    """A decoded tile that does not show its own source frame."""

    frame: int
    kind: str
    """``stale`` (closer to the previous source frame than to its own) or ``off`` (far off its own)."""
    plane: str
    x: int
    y: int
    w: int
    h: int
    """The tile as a pixel rectangle of the frame."""
    decoded: int
    own: int
    previous: int | None

    def describe(self) -> str:
        rect = f"x {self.x}-{self.x + self.w - 1}, y {self.y}-{self.y + self.h - 1}"
        where = f"frame {self.frame}, {self.plane} tile at {rect}"
        if self.kind == "stale":
            return (
                f"{where} shows the previous frame's content (decoded mean {self.decoded}, its own frame's "
                f"{self.own}, the previous frame's {self.previous})"
            )
        return f"{where} is far off its own frame (decoded mean {self.decoded}, source {self.own})"

    def rect(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


def compare(index: int, decoded: Fingerprint, own: Fingerprint, previous: Fingerprint | None) -> TileMismatch | None:
    """The worst failing tile of decoded frame ``index`` (stale before off), or None when all match."""
    if (decoded.width, decoded.height, len(decoded.planes)) != (own.width, own.height, len(own.planes)):
        raise ValueError(
            f"frame {index}: decoded {decoded.width}x{decoded.height} with {len(decoded.planes)} planes, "
            f"source {own.width}x{own.height} with {len(own.planes)}"
        )
    worst: TileMismatch | None = None
    for p, (dec, src) in enumerate(zip(decoded.planes, own.planes, strict=True)):
        d, s = dec.astype(np.int16), src.astype(np.int16)
        own_err = np.abs(d - s)
        if previous is not None:
            prev = previous.planes[p].astype(np.int16)
            stale = (np.abs(s - prev) >= STALE_MIN_CHANGE) & (np.abs(d - prev) < own_err)
            if stale.any():
                return _mismatch(index, "stale", p, decoded, np.argmax(np.where(stale, own_err, -1)), d, s, prev)
        if worst is None and (own_err >= OFF_LEVELS).any():
            worst = _mismatch(index, "off", p, decoded, np.argmax(own_err), d, s, None)
    return worst


def _mismatch(
    index: int,
    kind: str,
    p: int,
    fp: Fingerprint,
    flat: np.intp,
    d: npt.NDArray[np.int16],
    s: npt.NDArray[np.int16],
    prev: npt.NDArray[np.int16] | None,
) -> TileMismatch:
    name = _PLANE_NAMES[p] if p < len(_PLANE_NAMES) else str(p)
    return tile_mismatch(index, kind, name, fp.scales[p], (fp.width, fp.height), flat, d, s, prev)


def tile_mismatch(
    index: int,
    kind: str,
    plane: str,
    scale: tuple[int, int],
    frame_size: tuple[int, int],
    flat: np.intp,
    d: npt.NDArray[np.signedinteger],
    s: npt.NDArray[np.signedinteger],
    prev: npt.NDArray[np.signedinteger] | None,
) -> TileMismatch:
    """The mismatch of tile ``flat`` (an index into the flattened tile means ``d``, decoded, and ``s``, its
    source's) of a plane whose samples cover ``scale`` (x, y) frame pixels each, in a frame of ``frame_size``."""
    row, col = np.unravel_index(flat, d.shape)
    (sx, sy), (width, height) = scale, frame_size
    x, y = int(col) * TILE_PX * sx, int(row) * TILE_PX * sy
    w, h = min(TILE_PX * sx, width - x), min(TILE_PX * sy, height - y)
    previous = None if prev is None else int(prev[row, col])
    return TileMismatch(index, kind, plane, x, y, w, h, int(d[row, col]), int(s[row, col]), previous)
