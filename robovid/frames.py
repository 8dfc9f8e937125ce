"""Episode frame folders: list the PNG frames in order and decode them to RGB, refusing bad input.

A recorder writes ``{root}/images/{camera}/episode-{N:06d}/frame-{i:06d}.png``. These PNGs may be
the only copy of a recording, so every problem raises a specific :mod:`robovid.errors` type
naming the file and what to do, before any frame is encoded: never a crash half-way through an
episode, never silently wrong pixels.

Decoder choice
--------------
Measured on this machine (2026-12-04, 2 shared CPUs, load ~3) by ``benchmarks/bench_png.py``: 100
natural-looking 640x480 RGB frames written by Pillow at ``compress_level=1`` (~474 kB each), bytes
in memory, CPU ms per frame (median of 5 interleaved passes), and whether the decoder holds the GIL
(the p90 wake-up of a thread sleeping 0.2 ms meanwhile: ~0.3 ms when released, ~one decode when held):

=============================================  ===========  ===============
decoder                                         ms/frame     GIL probe p90
=============================================  ===========  ===============
pyspng 0.1.4 (libspng) ``pyspng.load``           4.05         9.4 ms: held
imagecodecs ``spng_decode`` (libspng 0.7.4)      4.91         0.27 ms
imagecodecs ``png_decode`` (libpng 1.6)          4.66         0.27 ms
OpenCV 5.1 ``cv2.imdecode`` + BGR to RGB         5.59         0.28 ms
Pillow 13 ``Image.open(...).convert("RGB")``     8.74         0.29 ms
chunk walk here: signature, IHDR, every CRC      0.14         0.27 ms
``frame_size`` (33-byte header read)             0.02
=============================================  ===========  ===============

robovid decodes with imagecodecs' libspng. It releases the GIL, so the reader threads of the
service's workers decode in parallel with each other and with the rest of the process (pyspng
held it for the whole decode), and it checks the chunk CRCs and the zlib Adler-32 that pyspng
skipped, for 1.07-1.2x pyspng's CPU in the runs so far. Decoding straight into the encoder's
reused frame buffer (``out=``) more than pays that back (``benchmarks/bench_levers.py``). The
inflate alone is ~2.8 ms of a decode (libdeflate would take 0.46x of that, but no wheel pairs it
with a PNG decoder that releases the GIL).

Behaviour on damaged and unusual files (``bench_png.py``; "silent" = returns pixels, no error):

==============================  =============================  =============================  ===================
damage                          libspng (``spng_decode``)       libpng (``png_decode``)         ``read_frame_rgb``
==============================  =============================  =============================  ===================
truncated in the middle         error ("end of stream")        error ("stream too small")     CorruptFrameError
truncated just before IEND      **silent**                     **silent**                     CorruptFrameError
byte flipped in IDAT (bad CRC)  error ("IDAT stream error")    error ("incorrect data check")  CorruptFrameError
same, CRC recomputed            error (Adler-32)               error (Adler-32)               CorruptFrameError
IDAT data too short, CRCs fine  error ("stream too short")     error ("not enough data")      CorruptFrameError
JPEG renamed ``.png``           error (bad signature)          error ("not a PNG image")      CorruptFrameError
zero-byte file                  error                          error                          CorruptFrameError
16-bit RGB / grey               error ("invalid format")       **silent, uint16**             FrameFormatError
8/4/2/1-bit grey                grey (H, W), 8-bit             grey (H, W), 8-bit             RGB
grey+alpha                      error ("invalid format")       grey+alpha (H, W, 2)           RGB, if opaque
palette or RGB with ``tRNS``    **silent, alpha dropped**      RGBA (transparency applied)    RGB, if opaque
RGBA                            RGBA                           RGBA                           RGB, if opaque
==============================  =============================  =============================  ===================

(pyspng alone was silent on a bad CRC, on a recomputed one and on 16-bit files; Pillow alone on
too-short image data and, through ``convert("RGB")``, on 16-bit samples.) So robovid walks the
chunks itself first (:func:`_check_png`): PNG signature, a valid IHDR, the CRC-32 of every chunk
(``zlib.crc32``) and an IEND chunk at the end. That catches every truncation, bit flip and non-PNG
file with a message that says which; then libspng decodes 8-bit RGB and palette frames without
``tRNS`` (nearly every camera frame), and libpng everything else (grey, alpha, transparency), both
checking the deflate stream's Adler-32. Bytes after IEND are ignored, as every decoder does.

Pixel-format policy
-------------------
- 8-bit RGB: returned as is.
- 8-bit (or 1/2/4-bit) grey and palette images: converted to RGB.
- RGBA, grey+alpha, or any ``tRNS`` transparency, with every alpha == 255: alpha dropped.
- Any pixel with alpha < 255: :class:`~robovid.errors.FrameFormatError`; video has no alpha.
- 16-bit samples (often a depth map): :class:`~robovid.errors.FrameFormatError` here; robovid
  would drop 8 bits per sample. Episodes whose frames are all 16-bit greyscale are depth maps,
  read by :func:`robovid.depth.read_depth_frame` and kept exactly.
- Damaged or non-PNG files: :class:`~robovid.errors.CorruptFrameError`.
- Files robovid may not read: :class:`~robovid.errors.UnreadableFrameError`.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import imagecodecs
import numpy as np

from robovid.errors import (
    CorruptFrameError,
    EmptyEpisodeError,
    FrameFormatError,
    FrameSequenceError,
    FrameSizeError,
    UnreadableFrameError,
)
from robovid.layout import FRAME_RE, check_inside

__all__ = [
    "FRAME_PATTERN",
    "check_same_size",
    "frame_size",
    "list_episode_frames",
    "read_frame_rgb",
]

FRAME_PATTERN = FRAME_RE
"""A frame file name; group 1 is the index (:data:`robovid.layout.FRAME_RE`)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER_SIZE_BYTES = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
_MAX_CHUNK_LENGTH = 2**31 - 1  # PNG spec limit
_VALID_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_COLOR_TYPES_AS_RGB = (2, 3)  # RGB and palette: libspng returns them as 8-bit RGB
_SHOW_NAMES = 5  # how many odd file names an error message lists

_PARTIAL_WRITE_ADVICE = (
    "The recorder likely wrote it only partially (it crashed or is still writing), or the file was "
    "damaged later. Re-record the episode, or delete this file (if it is the last frame, the rest of "
    "the episode can then be encoded)."
)


@dataclasses.dataclass(frozen=True)
class _PngHeader:
    """What robovid needs from a PNG's IHDR (and whether a tRNS chunk follows)."""

    width: int
    """Width in pixels."""
    height: int
    """Height in pixels."""
    bit_depth: int
    """Bits per sample (or per palette index): 1, 2, 4, 8 or 16."""
    color_type: int
    """0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA."""
    has_trns: bool = False
    """A tRNS chunk gives some colours or palette entries transparency."""


# ---------------------------------------------------------------- listing


def list_episode_frames(episode_dir: Path, root: Path | None = None, marker: str | None = None) -> list[Path]:
    """Return the frame files of one episode folder, in index order 0..N-1.

    Hidden files (``.complete`` markers, editor temp files) and files not ending in ``.png`` are
    ignored, and so is ``marker`` (a completion marker's name, even one ending in ``.png``). With
    ``root``, the folder and every frame must resolve inside ``root`` (symlinks inside it are fine). One ``os.scandir``; only symlinked frames are resolved.

    Raises:
        EmptyEpisodeError: the folder holds no frame, or does not exist.
        FrameSequenceError: a gap, a duplicated index, a PNG named otherwise, or a frame that is
            not a file.
        UnsafePathError: the folder or a frame resolves outside ``root``.
        UnreadableFrameError: the folder may not be listed.
    """
    episode_dir = Path(episode_dir)
    real_root = None if root is None else os.path.realpath(root)
    if real_root is not None:
        check_inside(episode_dir, real_root, "Episode folder")
    names_by_index = _scan_frames(episode_dir, real_root, marker)
    if not names_by_index:
        raise EmptyEpisodeError(
            f"Episode folder {episode_dir} holds no frames (no frame-NNNNNN.png files): the recorder "
            "wrote no frames for this episode. Re-record it or delete the folder."
        )
    _check_no_gap(episode_dir, sorted(names_by_index))
    return [episode_dir / names_by_index[i] for i in range(len(names_by_index))]


def _scan_frames(episode_dir: Path, real_root: str | None, marker: str | None = None) -> dict[int, str]:
    """Map index -> file name for the frame files in ``episode_dir``, checking each name."""
    names_by_index: dict[int, str] = {}
    odd_names: list[str] = []
    for entry in _list_dir(episode_dir):
        name = entry.name
        if name.startswith(".") or not name.lower().endswith(".png") or name == marker:
            continue
        match = FRAME_PATTERN.fullmatch(name)
        if match is None:
            odd_names.append(name)
            continue
        index = int(match.group(1))
        if index in names_by_index:
            raise FrameSequenceError(
                f"Episode folder {episode_dir} holds frame {index} twice: {names_by_index[index]} and "
                f"{name}. Keep one of them (compare them first) and move the other out of the folder."
            )
        names_by_index[index] = name
        _check_entry(entry, real_root)
    if odd_names:
        shown = ", ".join(repr(n) for n in sorted(odd_names)[:_SHOW_NAMES])
        raise FrameSequenceError(
            f"Episode folder {episode_dir} holds {len(odd_names)} PNG file(s) not named "
            f"frame-NNNNNN.png (6 or more digits): {shown}. Rename them or move them out of the folder."
        )
    return names_by_index


def _list_dir(episode_dir: Path) -> list[os.DirEntry[str]]:
    """All entries of ``episode_dir``, with its failures turned into robovid errors."""
    try:
        with os.scandir(episode_dir) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise EmptyEpisodeError(
            f"Episode folder {episode_dir} does not exist or is not a folder. Check the path."
        ) from e
    except PermissionError as e:
        raise UnreadableFrameError(
            f"Episode folder {episode_dir} cannot be listed: permission denied. Give the user "
            "running robovid read and execute access to it."
        ) from e


def _check_entry(entry: os.DirEntry[str], real_root: str | None) -> None:
    """Check that a frame entry is a file (through a symlink inside ``real_root`` at most)."""
    if not entry.is_symlink():
        if not entry.is_file():
            raise FrameSequenceError(f"{entry.path} is not a file (a folder?). Move it out of the episode.")
        return
    if not entry.is_file():
        raise FrameSequenceError(
            f"{entry.path} is a symlink to {os.path.realpath(entry.path)}, which is missing or not a "
            "file. Restore the target or replace the link by the frame file."
        )
    if real_root is not None:
        check_inside(Path(entry.path), real_root, "Frame")


def _check_no_gap(episode_dir: Path, indices: list[int]) -> None:
    """Raise FrameSequenceError unless ``indices`` (sorted, unique) is exactly 0..N-1."""
    if indices[-1] == len(indices) - 1:
        return
    first_missing = next(expected for expected, index in enumerate(indices) if index != expected)
    num_missing = indices[-1] + 1 - len(indices)
    raise FrameSequenceError(
        f"Episode folder {episode_dir} is missing frame {first_missing} "
        f"(frame-{first_missing:06d}.png): {num_missing} of the indices 0..{indices[-1]} are missing. "
        "The recorder dropped frames or some were deleted; encoding would shift every later "
        "timestamp. Re-record the episode, or restore the missing files."
    )


# ---------------------------------------------------------------- header and size


def frame_size(path: Path) -> tuple[int, int]:
    """Return ``(width, height)`` of a PNG from its IHDR chunk, reading 33 bytes, not decoding.

    Raises:
        CorruptFrameError: the file is empty, not a PNG, or its IHDR is damaged.
        UnreadableFrameError: permission denied.
    """
    header = _parse_header(_read(path, _HEADER_SIZE_BYTES), Path(path))
    return header.width, header.height


def check_same_size(frames: Sequence[Path]) -> tuple[int, int]:
    """Return the common ``(width, height)`` of ``frames``, reading only their PNG headers.

    Raises:
        FrameSizeError: the first frame whose size differs from frame 0, with both sizes.
        EmptyEpisodeError: ``frames`` is empty.
    """
    if not frames:
        raise EmptyEpisodeError("check_same_size() got no frames; list them with list_episode_frames().")
    size = frame_size(frames[0])
    for path in frames[1:]:
        other = frame_size(path)
        if other != size:
            raise FrameSizeError(
                f"Frame {path} is {other[0]}x{other[1]} but the episode's first frame {frames[0]} is "
                f"{size[0]}x{size[1]}: one episode must keep one size (did the camera resolution "
                "change?). Resize the frames to one size or split the episode."
            )
    return size


def _parse_header(data: bytes, path: Path) -> _PngHeader:
    """Check the PNG signature and IHDR (with its CRC) at the start of ``data``."""
    if not data:
        raise CorruptFrameError(f"Frame {path} is empty (0 bytes). {_PARTIAL_WRITE_ADVICE}")
    if not PNG_SIGNATURE.startswith(data[:8]):
        raise CorruptFrameError(f"Frame {path} {_describe_non_png(data)}")
    if len(data) < _HEADER_SIZE_BYTES:
        raise _truncated(path, len(data), "inside its IHDR header")
    length, chunk_type = struct.unpack_from(">I4s", data, 8)
    if chunk_type != b"IHDR" or length != 13:
        raise CorruptFrameError(f"Frame {path} does not start with a valid IHDR chunk. {_PARTIAL_WRITE_ADVICE}")
    _check_crc(data, 8, 8 + 8 + 13, path)
    width, height, depth, color_type, compression, filter_, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if (
        not (0 < width <= _MAX_CHUNK_LENGTH and 0 < height <= _MAX_CHUNK_LENGTH)
        or depth not in _VALID_DEPTHS.get(color_type, ())
        or (compression, filter_) != (0, 0)
        or interlace not in (0, 1)
    ):
        raise CorruptFrameError(
            f"Frame {path} has an invalid IHDR ({width}x{height}, bit depth {depth}, colour type "
            f"{color_type}). {_PARTIAL_WRITE_ADVICE}"
        )
    return _PngHeader(width, height, depth, color_type)


def _describe_non_png(data: bytes) -> str:
    """Say what a file without the PNG signature looks like, and what to do."""
    if data.startswith(b"\xff\xd8\xff"):
        return (
            "is a JPEG file named .png. Convert it to PNG (lossless from here on) or re-record the "
            "episode with the recorder set to write PNG."
        )
    return f"is not a PNG file: it starts with {data[:8]!r}, not the PNG signature. {_PARTIAL_WRITE_ADVICE}"


def _check_crc(data: bytes, start: int, end: int, path: Path) -> None:
    """Check the CRC-32 stored after ``data[start+4:end]`` (a chunk's type and data)."""
    stored = int.from_bytes(data[end : end + 4], "big")
    if zlib.crc32(memoryview(data)[start + 4 : end]) != stored:
        chunk_type = data[start + 4 : start + 8].decode("latin-1")
        raise CorruptFrameError(
            f"Frame {path} is corrupt: its {chunk_type} chunk at byte {start} fails its CRC check "
            f"(the bytes changed after they were written). {_PARTIAL_WRITE_ADVICE}"
        )


def _truncated(path: Path, size_bytes: int, where: str) -> CorruptFrameError:
    return CorruptFrameError(f"Frame {path} is truncated: its {size_bytes} bytes end {where}. {_PARTIAL_WRITE_ADVICE}")


def _check_png(data: bytes, path: Path) -> _PngHeader:
    """Walk every chunk of a whole PNG file: header, every CRC, and an IEND at the end."""
    header = _parse_header(data, path)
    has_trns = False
    pos = _HEADER_SIZE_BYTES
    while True:
        if pos + 8 > len(data):
            raise _truncated(path, len(data), "before the IEND chunk that closes a PNG")
        length, chunk_type = struct.unpack_from(">I4s", data, pos)
        if not chunk_type.isalpha() or length > _MAX_CHUNK_LENGTH:
            raise CorruptFrameError(
                f"Frame {path} is corrupt: the bytes at {pos} are not a PNG chunk. {_PARTIAL_WRITE_ADVICE}"
            )
        end = pos + 8 + length
        if end + 4 > len(data):
            name = chunk_type.decode("ascii")
            raise _truncated(path, len(data), f"inside its {name} chunk (bytes {pos}..{end + 4})")
        _check_crc(data, pos, end, path)
        has_trns = has_trns or chunk_type == b"tRNS"
        if chunk_type == b"IEND":
            return dataclasses.replace(header, has_trns=has_trns)
        pos = end + 4


# ---------------------------------------------------------------- decoding


def read_frame_rgb(path: Path, out: np.ndarray | None = None) -> np.ndarray:
    """Decode one PNG frame to a C-contiguous ``(height, width, 3)`` uint8 RGB array.

    With ``out`` (a C-contiguous uint8 array of that shape, for example a view of a video
    frame's buffer) the pixels are written into it and ``out`` is returned: 8-bit RGB and
    palette frames are decoded straight into it, no copy. See the module docstring for the
    checks and the pixel-format policy. Decoding releases the GIL.

    Raises:
        CorruptFrameError: the file is empty, truncated, damaged or not a PNG.
        FrameFormatError: 16-bit samples or (semi-)transparent pixels.
        FrameSizeError: ``out`` has another shape than the frame.
        UnreadableFrameError: permission denied.
        FrameSequenceError: the file disappeared.
    """
    path = Path(path)
    data = _read(path, None)
    header = _check_png(data, path)
    if out is not None and out.shape != (header.height, header.width, 3):
        raise FrameSizeError(
            f"Frame {path} is {header.width}x{header.height}, but the frames before it are "
            f"{out.shape[1]}x{out.shape[0]}: one episode must keep one size (did the camera resolution "
            "change?). Resize the frames to one size or split the episode."
        )
    if header.bit_depth == 16:
        raise FrameFormatError(
            f"Frame {path}: 16-bit PNG (depth map?) is not supported in an episode of 8-bit frames: robovid "
            "would drop 8 bits per sample. A depth camera's episode is kept exactly when all its frames, the first "
            "included, are 16-bit greyscale (robovid.depth); otherwise store the frames as 8-bit or keep them as PNG."
        )
    if header.color_type in _COLOR_TYPES_AS_RGB and not header.has_trns:
        return _decode_spng_rgb(data, path, out)
    rgb = _opaque_rgb(_decode_libpng(data, path), path)
    if out is None:
        return rgb
    np.copyto(out, rgb)
    return out


def _read(path: Path, size_bytes: int | None) -> bytes:
    """Read a frame file (or its first ``size_bytes``), with failures turned into robovid errors."""
    try:
        with open(path, "rb") as f:
            return f.read() if size_bytes is None else f.read(size_bytes)
    except PermissionError as e:
        raise UnreadableFrameError(
            f"Frame {path} cannot be read: permission denied. Give the user running robovid read "
            "access to it (the recorder may have written it with a restrictive umask)."
        ) from e
    except FileNotFoundError as e:
        raise FrameSequenceError(
            f"Frame {path} disappeared while robovid was reading the episode (deleted or moved by "
            "another program?). Restore it, or re-record the episode."
        ) from e


def _decode_spng_rgb(data: bytes, path: Path, out: np.ndarray | None) -> np.ndarray:
    """Decode checked 8-bit RGB or palette PNG bytes with libspng (GIL released), into ``out`` if given."""
    try:
        return np.asarray(imagecodecs.spng_decode(data, out=out))
    except (RuntimeError, ValueError) as e:  # imagecodecs.SpngError is a RuntimeError
        raise _undecodable(path, e) from e


def _decode_libpng(data: bytes, path: Path) -> np.ndarray:
    """Decode checked PNG bytes with libpng: grey (H, W), grey+alpha (H, W, 2), RGB or RGBA, tRNS applied."""
    try:
        return np.asarray(imagecodecs.png_decode(data))
    except (RuntimeError, ValueError) as e:  # imagecodecs.PngError is a RuntimeError
        raise _undecodable(path, e) from e


def _undecodable(path: Path, error: Exception) -> CorruptFrameError:
    return CorruptFrameError(
        f"Frame {path} has intact chunks but its image data cannot be decoded ({error}): the program "
        "that wrote it produced an invalid PNG. Re-record the episode or delete this file."
    )


def _opaque_rgb(pixels: np.ndarray, path: Path) -> np.ndarray:
    """Grey, grey+alpha, RGB or RGBA ``pixels`` as RGB; FrameFormatError if any pixel is not opaque."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[2]
    if channels in (2, 4):
        _check_opaque(pixels[..., -1], path)
        pixels = pixels[..., :-1]
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels)


def _check_opaque(alpha: np.ndarray, path: Path) -> None:
    """Raise FrameFormatError naming the most transparent pixel unless every ``alpha`` is 255."""
    if int(alpha.min()) != 255:
        y, x = np.unravel_index(int(np.argmin(alpha)), alpha.shape)
        raise FrameFormatError(
            f"Frame {path} has transparent or translucent pixels (alpha {int(alpha[y, x])} at x={x}, "
            f"y={y}); video has no alpha channel, so robovid would lose them. Store the frames as "
            "opaque RGB, or keep this episode as PNG."
        )
