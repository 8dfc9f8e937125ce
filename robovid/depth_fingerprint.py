"""Fingerprints of 16-bit depth frames, and the exact check of a decoded depth frame against its source.

robovid's service stores depth losslessly (``robovid.depth``), so a decoded depth frame must
equal its source sample for sample (the bound is 0 mm). The check is exact: a CRC-32 of every sample of the frame. The
fingerprint also keeps the mean of every 8x8 tile (the idea of :mod:`robovid.fingerprint`,
on one 16-bit channel), so that a frame that fails can be located and classified like a
colour frame: a tile whose source changed since the previous frame but that decodes closer
to the previous frame than to its own is **stale**; any other difference is **off**.

A 640x480 fingerprint is 9.6 kB of tile means plus 4 bytes of CRC; taking one costs ~1 ms.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

from robovid.depth import frame_samples
from robovid.fingerprint import TileMismatch, mean_of_tiles, tile_mismatch

DEPTH_PLANE = "depth"
"""The plane name a depth :class:`~robovid.fingerprint.TileMismatch` reports."""

Samples = npt.NDArray[np.uint16]


@dataclass(frozen=True)
class DepthFingerprint:
    """The CRC-32 of a depth frame's samples and its rounded 8x8 tile means."""

    crc32: int
    tiles: npt.NDArray[np.uint16]
    width: int
    height: int

    @property
    def size_bytes(self) -> int:
        return self.tiles.nbytes + 4


def depth_fingerprint(samples: Samples) -> DepthFingerprint:
    """The fingerprint of a ``(height, width)`` array of uint16 samples (any row stride)."""
    if samples.ndim != 2 or samples.dtype != np.uint16:
        raise ValueError(
            f"A depth fingerprint needs a (height, width) uint16 array, got {samples.dtype} {samples.shape}."
        )
    crc = 0
    for row in samples if not samples.flags.c_contiguous else (samples,):
        crc = zlib.crc32(np.ascontiguousarray(row).data.cast("B"), crc)
    return DepthFingerprint(crc, _tile_means(samples), samples.shape[1], samples.shape[0])


def frame_depth_fingerprint(frame: av.VideoFrame) -> DepthFingerprint:
    """The fingerprint of a gray16le/gray12le frame, read in place."""
    return depth_fingerprint(frame_samples(frame))


def _tile_means(samples: Samples) -> npt.NDArray[np.uint16]:
    """Rounded mean of every TILE_PX square; partial edge tiles are averaged over the samples they have."""
    return np.rint(mean_of_tiles(samples, np.uint32)).astype(np.uint16)


def compare_depth(
    index: int, decoded: DepthFingerprint, own: DepthFingerprint, previous: DepthFingerprint | None
) -> TileMismatch | None:
    """None when decoded frame ``index`` equals its source exactly; else its worst tile (stale before off)."""
    if (decoded.width, decoded.height) != (own.width, own.height):
        raise ValueError(f"frame {index}: decoded {decoded.width}x{decoded.height}, source {own.width}x{own.height}")
    if decoded.crc32 == own.crc32 and np.array_equal(decoded.tiles, own.tiles):
        return None
    d, s = decoded.tiles.astype(np.int32), own.tiles.astype(np.int32)
    own_err = np.abs(d - s)
    if previous is not None:
        prev = previous.tiles.astype(np.int32)
        stale = (s != prev) & (np.abs(d - prev) < own_err)
        if stale.any():
            worst = np.argmax(np.where(stale, own_err, -1))
            return tile_mismatch(index, "stale", DEPTH_PLANE, (1, 1), (own.width, own.height), worst, d, s, prev)
    if not own_err.any():  # samples differ too little to move any tile mean: report the whole frame
        return TileMismatch(index, "off", DEPTH_PLANE, 0, 0, own.width, own.height, int(d.mean()), int(s.mean()), None)
    return tile_mismatch(index, "off", DEPTH_PLANE, (1, 1), (own.width, own.height), np.argmax(own_err), d, s, None)
