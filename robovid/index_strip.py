"""The ``(episode, frame)`` index strip burnt into the top of synthetic frames, and read back.

Three rows of 16 black/white cells (episode, frame, a CRC check of both), most significant
bit first, large enough to survive lossy coding (AV1, H.264, HEVC, yuv420p). Tests identify
every decoded frame with :func:`read_index`; :mod:`robovid.synthetic` burns it into every
frame it renders (and re-exports both functions).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Image8 = npt.NDArray[np.uint8]

# Index strip: three rows of 16 cells at the top of the frame, most significant bit first.
_BITS = 16
_ROWS = 3  # episode, frame, check (a CRC of both)
_MAX_INDEX = (1 << _BITS) - 1
_MIN_CELL_PX = 4
# A cell whose central mean falls in this open interval is neither black nor white. Keep it strict: a faithful
# encoder keeps the cells black and white; cells decoded near grey mean stale or smeared content (SVT-AV1
# presets 11-13 did that), which the strip exists to catch.
_AMBIGUOUS = (64.0, 192.0)
_CHECK_XOR = 0x5A5A  # so blank (all-black or all-white) strips fail the check


def _cell_size(width: int, height: int) -> tuple[int, int]:
    """Return the (width, height) in pixels of one index cell for a frame; raise if it cannot fit."""
    cell_w = max(_MIN_CELL_PX, width // _BITS)
    cell_h = max(_MIN_CELL_PX, cell_w // 2)
    if cell_w * _BITS > width or cell_h * _ROWS > height:
        raise ValueError(
            f"A {width}x{height} frame is too small for the index strip "
            f"({_BITS} cells of {cell_w}x{cell_h} px in {_ROWS} rows); use at least 64x12."
        )
    return cell_w, cell_h


def _check_word(episode: int, frame: int) -> int:
    """Return the check row for (episode, frame): CRC-16/CCITT of both, xor a constant."""
    crc = 0xFFFF
    for byte in (episode >> 8, episode & 0xFF, frame >> 8, frame & 0xFF):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc ^ _CHECK_XOR


def burn_index(img: Image8, episode: int, frame: int) -> None:
    """Write ``(episode, frame)`` into the top band of ``img`` (H x W or H x W x C uint8), in place.

    The band is three rows of 16 black/white cells, most significant bit first:
    episode, frame and a CRC check of both. Cells are ``width // 16`` px wide (at least
    4) and half as tall (at least 4), so they stay readable after lossy coding.
    """
    for name, value in (("episode", episode), ("frame", frame)):
        if not 0 <= value <= _MAX_INDEX:
            raise ValueError(f"{name}={value} does not fit the index strip; it must be in 0..{_MAX_INDEX}.")
    cell_w, cell_h = _cell_size(img.shape[1], img.shape[0])
    words = (episode, frame, _check_word(episode, frame))
    bits = np.array([[(w >> (_BITS - 1 - i)) & 1 for i in range(_BITS)] for w in words], dtype=np.uint8)
    band = np.repeat(np.repeat(bits * 255, cell_h, axis=0), cell_w, axis=1)
    target = img[: _ROWS * cell_h, : _BITS * cell_w]
    target[...] = band[..., None] if img.ndim == 3 else band


def read_index(img: Image8) -> tuple[int, int]:
    """Return the ``(episode, frame)`` burnt into ``img`` by :func:`burn_index`.

    Each cell's central region is averaged and thresholded at 128. Raises ``ValueError``
    when a cell is neither clearly black nor white or the check row does not match,
    so a frame without a code (or a damaged one) never yields a plausible index.
    """
    means = _cell_means(img)
    unclear = (means > _AMBIGUOUS[0]) & (means < _AMBIGUOUS[1])
    if unclear.any():
        raise ValueError(_no_code_message(img, f"{int(unclear.sum())} cells are neither black nor white"))
    words = [int("".join("1" if m >= 128 else "0" for m in row), 2) for row in means]
    episode, frame, check = words
    if check != _check_word(episode, frame):
        raise ValueError(_no_code_message(img, f"check row 0x{check:04x} does not match"))
    return episode, frame


def _cell_means(img: Image8) -> npt.NDArray[np.float64]:
    """Return the mean of the central half (each way) of every cell, shape ``(rows, 16)``."""
    cell_w, cell_h = _cell_size(img.shape[1], img.shape[0])
    band = img[: _ROWS * cell_h, : _BITS * cell_w]
    if band.ndim == 2:
        band = band[..., None]
    cells = band.reshape(_ROWS, cell_h, _BITS, cell_w, band.shape[2])
    ys = slice(cell_h // 4, cell_h - cell_h // 4)
    xs = slice(cell_w // 4, cell_w - cell_w // 4)
    return cells[:, ys, :, xs, :].mean(axis=(1, 3, 4))


def _no_code_message(img: Image8, reason: str) -> str:
    """Explain that ``img`` carries no valid index strip, and why."""
    return (
        f"No valid (episode, frame) index code at the top of this {img.shape[1]}x{img.shape[0]} frame: "
        f"{reason}. Was it written by robovid.synthetic.burn_index, and decoded at its original size?"
    )
