"""Fidelity test media: content that changes abruptly where encoders cut corners, and its analysis.

A lossy encoder may blur; it must never show the previous frame's content in place of the
current one. SVT-AV1 4.1 does that at presets 11-13 for small, sharp content that changes
between frames, mostly in the partial bottom row of 64 px superblocks (rows 448-479 of a
640x480 frame; 720 = 11.25 x 64), and at presets 7-10 in the few columns a 720p pan brings
into the frame. The clips here put such content at every superblock position (top row,
middle, the partial bottom row, the right column) at 640x480 and 1280x720 over a
natural-looking, slowly drifting scene (:func:`robovid.synthetic.scene`): blinking
black/white patches of 8, 16 and 32 px, a frame-index fiducial strip of 16 cells at the
bottom edge, small moving objects, a camera pan, and a small 256x96 clip whose sharp
pattern moves 1-2 px per frame.

:func:`analyse` then tells, for each frame and each region, whether the decoded content is
closer to its own source frame or to the previous one (``stale``). Only regions whose
source really changed between the two frames are judged. Frames are rendered on demand
(:meth:`Clip.frame`), so a 720p clip of 150 frames never sits in memory whole.

This module serves tests and benchmarks (``tests/test_fidelity.py``,
``benchmarks/bench_presets.py``); robovid's own verify stage uses :mod:`robovid.fingerprint`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from robovid.layout import frame_path
from robovid.synthetic import scene

Image8 = npt.NDArray[np.uint8]

SUPERBLOCK_PX = 64
"""SVT-AV1's superblock at these sizes; its last row or column may be partial."""
PATCH_SIZES = (8, 16, 32)
FIDUCIAL_CELLS = 16
FIDUCIAL_CELL_PX = 16
MIN_CHANGE_RMS = 12.0
"""A region is judged at frame i only when its source changed by at least this RMS (0..255) since
frame i-1; below it, own and previous are too alike to tell apart through coding noise."""
PAN_TILE_PX = 32
_EDGE_MARGIN_PX = 8
_NOISE_MAX = 6  # sensor noise: triangular, -6..6 levels


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame that is judged on its own."""

    name: str
    kind: str
    """``blink``, ``fiducial``, ``object``, ``pan`` or ``pattern``."""
    x: int
    y: int
    w: int
    h: int

    def of(self, img: Image8) -> Image8:
        return img[self.y : self.y + self.h, self.x : self.x + self.w]


@dataclass(frozen=True)
class _Patch:
    region: Region
    state: Callable[[int], int]
    """0 (black) or 1 (white) at frame i."""


@dataclass(frozen=True)
class _Mover:
    name: str
    size: int
    rgb: tuple[int, int, int]
    start: tuple[int, int]
    velocity: tuple[int, int]
    bounds: tuple[int, int, int, int]
    """x0, y0, x1, y1: the object bounces inside this box (its top-left corner does)."""

    def position(self, i: int) -> tuple[int, int]:
        (x0, y0, x1, y1), (sx, sy), (vx, vy) = self.bounds, self.start, self.velocity
        return _bounce(sx + vx * i, x0, x1), _bounce(sy + vy * i, y0, y1)


@dataclass
class Clip:
    """A deterministic test clip: ``frame(i)`` renders frame i, ``regions(i)`` says what to judge there."""

    name: str
    width: int
    height: int
    num_frames: int
    seed: int = 0
    pan: Callable[[int], tuple[int, int]] = field(default=lambda i: (0, 0))
    """Top-left corner of the crop of the backdrop at frame i."""
    patches: list[_Patch] = field(default_factory=list)
    movers: list[_Mover] = field(default_factory=list)
    tiles: str | None = None
    """Kind name when the whole frame is judged in PAN_TILE_PX tiles (a pan, a moving pattern)."""
    board: bool = False
    """Draw a sharp black/white board into the backdrop (the small moving-pattern clip)."""
    _backdrop: Image8 | None = None

    def backdrop(self) -> Image8:
        if self._backdrop is None:
            self._backdrop = scene(self.width, self.height, self.seed)
            if self.board:
                _draw_board(self._backdrop, self.seed)
        return self._backdrop

    def frame(self, i: int) -> Image8:
        """Frame ``i`` as RGB uint8 (height, width, 3): the same pixels on every call."""
        x0, y0 = self.pan(i)
        img = self.backdrop()[y0 : y0 + self.height, x0 : x0 + self.width].astype(np.int16)
        rng = np.random.default_rng((self.seed, i))
        img += rng.integers(0, _NOISE_MAX + 1, img.shape, dtype=np.int16)
        img -= rng.integers(0, _NOISE_MAX + 1, img.shape, dtype=np.int16)
        out = np.clip(img, 0, 255).astype(np.uint8)
        for patch in self.patches:
            patch.region.of(out)[...] = 255 * patch.state(i)
        for mover in self.movers:
            x, y = mover.position(i)
            out[y : y + mover.size, x : x + mover.size] = mover.rgb
        return out

    def regions(self, i: int) -> list[Region]:
        """The regions judged at frame ``i`` (>= 1): each compared with frames i and i-1."""
        found = [p.region for p in self.patches]
        for m in self.movers:
            (xa, ya), (xb, yb) = m.position(i - 1), m.position(i)
            x, y = min(xa, xb), min(ya, yb)
            found.append(Region(m.name, "object", x, y, max(xa, xb) + m.size - x, max(ya, yb) + m.size - y))
        if self.tiles is not None:
            found += _tile_regions(self.width, self.height, self.tiles)
        return found


def _bounce(value: int, low: int, high: int) -> int:
    """``value`` folded into ``low..high`` like a ball between two walls."""
    span = high - low
    if span <= 0:
        return low
    phase = (value - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


def _tile_regions(width: int, height: int, kind: str) -> list[Region]:
    return [
        Region(f"{kind}-{x}-{y}", kind, x, y, min(PAN_TILE_PX, width - x), min(PAN_TILE_PX, height - y))
        for y in range(0, height, PAN_TILE_PX)
        for x in range(0, width, PAN_TILE_PX)
    ]


def _draw_board(backdrop: Image8, seed: int) -> None:
    """A printed calibration board: random black/white 6 px squares over the middle of the backdrop."""
    h, w = backdrop.shape[:2]
    cells = np.random.default_rng((seed, 99)).integers(0, 2, (h // 12, w // 8)).astype(np.uint8) * 255
    board = np.repeat(np.repeat(cells, 6, axis=0), 6, axis=1)
    top, left = h // 4, w // 8
    target = backdrop[top : top + board.shape[0], left : left + board.shape[1]]
    target[...] = board[: target.shape[0], : target.shape[1], None]


def bottom_row_y(height: int, size: int) -> int:
    """Top row of a ``size`` px patch in the frame's last superblock row: inside its partial rows if
    they are tall enough (rows 456-471 for 16 px at 480), else flush with the bottom edge."""
    start = (height // SUPERBLOCK_PX) * SUPERBLOCK_PX
    partial = height - start
    if partial > 0 and size <= partial:
        return start + (partial - size) // 2
    return height - size


def _drift(width: int, height: int) -> Callable[[int], tuple[int, int]]:
    """A hand-held camera's slow drift (< 1 px per frame) over the backdrop's margin."""
    mx, my = width // 2, height // 2

    def pan(i: int) -> tuple[int, int]:
        return round(mx * (1 + np.sin(2 * np.pi * i / 240)) / 2), round(my * (1 + np.sin(2 * np.pi * i / 170)) / 2)

    return pan


def _toggle(phase: int) -> Callable[[int], int]:
    return lambda i: (i + phase) & 1


def _fiducial_bit(bit: int) -> Callable[[int], int]:
    return lambda i: (i >> bit) & 1


def fiducial_patches(width: int, height: int) -> list[_Patch]:
    """16 contiguous 16 px cells centred at the bottom edge, frame index in binary (MSB left)."""
    cell = FIDUCIAL_CELL_PX
    x0, y = (width - FIDUCIAL_CELLS * cell) // 2, bottom_row_y(height, cell)
    return [
        _Patch(Region(f"fiducial-bit{15 - k}", "fiducial", x0 + k * cell, y, cell, cell), _fiducial_bit(15 - k))
        for k in range(FIDUCIAL_CELLS)
    ]


def blink_patches(width: int, height: int) -> list[_Patch]:
    """Patches of 8, 16 and 32 px toggling black/white every frame, in the top row, the middle,
    the partial bottom row (either side of the fiducial strip) and the right column of superblocks."""
    m = _EDGE_MARGIN_PX
    right = width - SUPERBLOCK_PX + m  # inside the last superblock column
    mid_y = (height // 2 // SUPERBLOCK_PX) * SUPERBLOCK_PX + m
    patches: list[_Patch] = []
    for phase, size in enumerate(PATCH_SIZES):
        offset = sum(s + m for s in PATCH_SIZES[:phase])  # patches of one place side by side
        bottom = bottom_row_y(height, size)
        places = {
            "top-left": (m + offset, m),
            "top-middle": (width // 2 + offset, m),
            "middle": (width // 2 + offset, mid_y),
            "middle-left": (m + offset, mid_y),
            "bottom-left": (m + offset, bottom),
            "bottom-mid": (width * 3 // 4 + offset, bottom),
            "right-top": (right, m + SUPERBLOCK_PX + offset),
            "right-middle": (right, mid_y + SUPERBLOCK_PX + offset),
            "bottom-right": (width - m // 2 - offset - size, bottom),
        }
        for place, (x, y) in places.items():
            region = Region(f"blink{size}-{place}", "blink", x, y, size, size)
            patches.append(_Patch(region, _toggle(phase + len(patches))))
    return patches


def _movers(width: int, height: int) -> list[_Mover]:
    """Small objects crossing superblock boundaries, one along the partial bottom row."""
    inner, bottom = (0, 0, width - 16, height - 16), bottom_row_y(height, 16)
    right = (width - 28, 0, width - 28, height - 12)
    return [
        _Mover("object-blue12", 12, (30, 60, 220), (40, height // 3), (5, 0), inner),
        _Mover("object-red8", 8, (220, 40, 30), (width // 2, 20), (3, 4), inner),
        _Mover("object-green16-bottom", 16, (40, 200, 60), (0, 0), (7, 0), (0, bottom, width - 16, bottom)),
        _Mover("object-yellow12-right", 12, (230, 210, 40), (0, 0), (0, 4), right),
    ]


def edges_clip(width: int, height: int, num_frames: int, seed: int = 0) -> Clip:
    """Blinking patches at every superblock position plus the bottom fiducial strip, over a drifting scene."""
    patches = blink_patches(width, height) + fiducial_patches(width, height)
    return Clip(f"edges-{width}x{height}", width, height, num_frames, seed, _drift(width, height), patches)


def patch16_clip(num_frames: int, seed: int = 0) -> Clip:
    """One 16 px patch toggling every frame in rows 456-471 of a 640x480 natural clip."""
    width, height = 640, 480
    patch = _Patch(Region("blink16-bottom", "blink", width - 3 * SUPERBLOCK_PX + 24, 456, 16, 16), _toggle(1))
    return Clip("patch16-640x480", width, height, num_frames, seed, _drift(width, height), [patch])


def fiducial_clip(num_frames: int, seed: int = 0) -> Clip:
    """The fiducial strip alone at the bottom edge of a 640x480 natural clip."""
    return Clip("fiducial-640x480", 640, 480, num_frames, seed, _drift(640, 480), fiducial_patches(640, 480))


def objects_clip(num_frames: int, seed: int = 0) -> Clip:
    """Small coloured objects moving 3-7 px per frame over a 640x480 natural clip."""
    return Clip("objects-640x480", 640, 480, num_frames, seed, _drift(640, 480), movers=_movers(640, 480))


def pan_clip(width: int, height: int, num_frames: int, seed: int = 0, speed: tuple[int, int] = (6, 3)) -> Clip:
    """A camera pan of ``speed`` px per frame (bouncing inside the backdrop), judged in 32 px tiles."""
    mx, my = width // 2, height // 2

    def pan(i: int) -> tuple[int, int]:
        return _bounce(speed[0] * i, 0, mx), _bounce(speed[1] * i, 0, my)

    variant = "" if (seed, speed) == (0, (6, 3)) else f"{speed[0]}x{speed[1]}-s{seed}-"
    name = f"pan-{variant}{width}x{height}"
    return Clip(name, width, height, num_frames, seed, pan, tiles="pan")


def pattern_clip(num_frames: int = 24, seed: int = 0) -> Clip:
    """A 256x96 clip whose sharp black/white board moves 1 and 2 px per frame in turn."""
    width, height = 256, 96

    def pan(i: int) -> tuple[int, int]:
        return _bounce(i + i // 2, 0, width // 2), _bounce(i // 2, 0, height // 2)

    return Clip("pattern-256x96", width, height, num_frames, seed, pan, tiles="pattern", board=True)


def suite(num_frames: int = 150, hd_frames: int | None = None, pattern_frames: int = 24) -> list[Clip]:
    """Every clip: CI uses a few frames each (``suite(12, 6)``), the benchmark 150."""
    hd = num_frames if hd_frames is None else hd_frames
    return [
        edges_clip(640, 480, num_frames),
        edges_clip(1280, 720, hd),
        patch16_clip(num_frames),
        fiducial_clip(num_frames),
        objects_clip(num_frames),
        pan_clip(640, 480, num_frames),
        pan_clip(1280, 720, hd),
        pattern_clip(pattern_frames),
    ]


def write_clip(clip: Clip, episode_dir: Path, marker: str | None = ".complete") -> list[Path]:
    """Write the clip as ``frame-XXXXXX.png`` files (zlib level 1), then the marker; return the paths."""
    episode_dir.mkdir(parents=True, exist_ok=True)
    paths = [frame_path(episode_dir, i) for i in range(clip.num_frames)]
    for i, path in enumerate(paths):
        Image.fromarray(clip.frame(i)).save(path, compress_level=1)
    if marker is not None:
        (episode_dir / marker).touch()
    return paths


@dataclass(frozen=True)
class Verdict:
    """One judged region of one decoded frame."""

    frame: int
    region: Region
    own_mse: float
    """Mean squared error (RGB, 0..255) of the decoded region against its own source frame."""
    previous_mse: float
    """The same against the previous source frame."""
    change_mse: float
    """How much the source itself changed there between the two frames."""

    @property
    def stale(self) -> bool:
        """The decoded region is closer to the previous frame than to its own."""
        return self.previous_mse < self.own_mse


@dataclass
class ClipReport:
    """What :func:`analyse` found in one decoded clip."""

    clip: str
    frames: int
    decoded_frames: int
    verdicts: list[Verdict]
    """Every judged (frame, region), stale or not."""

    @property
    def stale_frames(self) -> list[int]:
        """Frames in which at least one region shows the previous frame's content (missing frames too)."""
        stale = {v.frame for v in self.verdicts if v.stale}
        return sorted(stale | set(range(self.decoded_frames, self.frames)))

    @property
    def stale_count(self) -> int:
        return len(self.stale_frames)

    def stale_by_kind(self) -> dict[str, int]:
        """Stale frames per region kind."""
        kinds: dict[str, set[int]] = {}
        for v in self.verdicts:
            kinds.setdefault(v.region.kind, set())
            if v.stale:
                kinds[v.region.kind].add(v.frame)
        return {kind: len(frames) for kind, frames in sorted(kinds.items())}

    def describe(self) -> str:
        """A line per stale frame: which regions, and how close to own / previous (for assertion messages)."""
        lines = [f"{self.clip}: {self.stale_count} stale of {self.frames} frames ({self.decoded_frames} decoded)"]
        for v in self.verdicts:
            if v.stale:
                r = v.region
                lines.append(
                    f"  frame {v.frame} {r.name} at x={r.x} y={r.y} {r.w}x{r.h}: mse own {v.own_mse:.0f}, "
                    f"previous {v.previous_mse:.0f}"
                )
        return "\n".join(lines[:40])


def analyse(clip: Clip, decoded: Iterable[Image8]) -> ClipReport:
    """Judge every decoded frame (RGB, in order) region by region against its own and the previous source."""
    verdicts: list[Verdict] = []
    previous: Image8 | None = None
    count = 0
    for i, image in enumerate(decoded):
        if i >= clip.num_frames:
            raise ValueError(f"{clip.name}: more decoded frames than the clip's {clip.num_frames}.")
        own = clip.frame(i)
        if previous is not None:
            verdicts += _judge(i, image, own, previous, clip.regions(i))
        previous, count = own, i + 1
    return ClipReport(clip.name, clip.num_frames, count, verdicts)


def analyse_video(clip: Clip, video: Path) -> ClipReport:
    """Decode ``video`` with PyAV and :func:`analyse` it."""
    with av.open(str(video)) as container:
        return analyse(clip, (_rgb(f) for f in container.decode(video=0)))


def _rgb(frame: av.VideoFrame) -> Image8:
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def _judge(i: int, image: Image8, own: Image8, previous: Image8, regions: list[Region]) -> list[Verdict]:
    out = []
    for region in regions:
        src, prev, dec = (region.of(a).astype(np.float32) for a in (own, previous, image))
        change = float(np.mean((src - prev) ** 2))
        if change < MIN_CHANGE_RMS**2:
            continue
        out.append(Verdict(i, region, float(np.mean((dec - src) ** 2)), float(np.mean((dec - prev) ** 2)), change))
    return out
