"""Synthetic camera recordings for tests, benchmarks and the ``robovid simulate`` demo.

Frames look like a camera image (smooth gradients, soft-edged objects, fine grain,
mild sensor noise, a slow pan) so they compress like real footage, and each frame
carries its ``(episode, frame)`` index burnt in as a strip of large black/white
blocks at the top. The strip survives lossy coding (AV1, H.264, HEVC, yuv420p), so
a test can identify every decoded frame exactly with :func:`read_index` (the strip's code is
:mod:`robovid.index_strip`; ``burn_index`` and ``read_index`` are re-exported here).

Frames are written in the LeRobot layout
``{root}/images/{camera_key}/episode-{episode:06d}/frame-{frame:06d}.png``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from PIL import Image

from robovid import layout
from robovid.index_strip import Image8, burn_index, read_index

__all__ = [
    "Image8",
    "burn_index",
    "read_index",
    "render_frame",
    "scene",
    "simulate_recorder",
    "write_episode",
    "write_recording",
]

_Float = npt.NDArray[np.floating]  # float32 at run time
Frame = TypeVar("Frame", bound=npt.NDArray[np.unsignedinteger])

# Scene: values stay inside video range, so sensor noise never clips and yuv420p keeps them.
_SCENE_MIN, _SCENE_MAX = 16, 239
_MARGIN_DIVISOR = 2  # the scene is 1.5x the frame in each dimension
_LOWRES_FACTOR = 4  # shapes and gradients are drawn at 1/4 size, then upsampled
_PAN_PERIOD_X_FRAMES = 240.0
_PAN_PERIOD_Y_FRAMES = 170.0
_GOLDEN_ANGLE = 2.399963
_NOISE_OFFSET = 6  # grain and sensor noise are _noise_bytes() - 6: -6..6, sigma ~2.2


def _noise_bytes(rng: np.random.Generator, shape: tuple[int, ...]) -> Image8:
    """Return Gaussian-like uint8 noise in 0..12 (mean 6, sigma ~2.2): the sum of four 2-bit fields."""
    raw = np.frombuffer(rng.bytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape)
    pairs = (raw & 0x33) + ((raw >> 2) & 0x33)  # each nibble: the sum of two 2-bit fields
    return (pairs & 0x0F) + (pairs >> 4)


def scene(width: int, height: int, seed: int) -> Image8:
    """Return a natural-looking RGB uint8 backdrop 1.5x the size of a ``width`` x ``height`` frame.

    Built with numpy only: a lit gradient, cloudy low-frequency variation, a dozen or
    more soft-edged shaded ellipses and boxes, and fine grain. Deterministic for ``seed``.
    Values stay within 16..239 (video range). Shape ``(height * 1.5, width * 1.5, 3)``.
    """
    bg_h, bg_w = height + height // _MARGIN_DIVISOR, width + width // _MARGIN_DIVISOR
    rng = np.random.default_rng(seed)
    k = _LOWRES_FACTOR
    low = _lowres_scene(rng, -(-bg_h // k) + 1, -(-bg_w // k) + 1)
    np.clip(low, _SCENE_MIN + _NOISE_OFFSET, _SCENE_MAX - _NOISE_OFFSET, out=low)
    full = _upsample(low, k)
    _add_grain(rng, full)
    return full[:bg_h, :bg_w].astype(np.uint8)


def _lowres_scene(rng: np.random.Generator, h: int, w: int) -> _Float:
    """Draw gradient, clouds and shapes on a small ``h`` x ``w`` x 3 float canvas."""
    y = (np.arange(h, dtype=np.float32) / h)[:, None]
    x = (np.arange(w, dtype=np.float32) / w)[None, :]
    base = rng.uniform(70, 170, 3).astype(np.float32)
    slope = rng.uniform(-50, 50, (2, 3)).astype(np.float32)
    img = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    img += _clouds(rng, h, w)
    for _ in range(int(rng.integers(12, 24))):
        _draw_shape(rng, img, x, y)
    return img


def _clouds(rng: np.random.Generator, h: int, w: int) -> _Float:
    """Return smooth tinted value noise (amplitude ~12) of size ``h`` x ``w`` x 3."""
    cell = 8
    grid = rng.normal(0, 12, (h // cell + 2, w // cell + 2, 1)).astype(np.float32)
    tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    return _upsample(grid, cell)[:h, :w] * tint


def _draw_shape(rng: np.random.Generator, img: _Float, x: _Float, y: _Float) -> None:
    """Blend one shaded, soft-edged ellipse or box of random colour into ``img`` in place.

    ``x`` (1 x w) and ``y`` (h x 1) are the canvas coordinates in 0..1; only the
    shape's bounding box is touched.
    """
    cx, cy = rng.uniform(0, 1, 2)
    rx, ry = np.exp(rng.uniform(np.log(0.015), np.log(0.2), 2))
    rows = _span(cy, ry, img.shape[0])
    cols = _span(cx, rx, img.shape[1])
    dx, dy = (x[:, cols] - cx) / rx, (y[rows] - cy) / ry
    is_ellipse = rng.random() < 0.5
    dist = np.sqrt(dx * dx + dy * dy) if is_ellipse else np.maximum(np.abs(dx), np.abs(dy))
    edge = float(rng.uniform(0.03, 0.2))  # softness of the outline, relative to the size
    alpha = np.clip((1.0 - dist) / edge, 0.0, 1.0)[..., None]
    color = rng.uniform(20, 235, 3).astype(np.float32)
    shading = 1.0 - 0.12 * dy[..., None] + 0.08 * dx[..., None]  # lit from the top-left
    box = img[rows, cols]
    box += alpha * (color * shading - box)


def _span(center: float, radius: float, n: int) -> slice:
    """Return the index slice of an ``n``-pixel axis covering ``center +- radius`` (in 0..1 units)."""
    lo = max(0, int(np.floor((center - radius) * n)))
    return slice(lo, max(lo, min(n, int(np.ceil((center + radius) * n)) + 1)))


def _add_grain(rng: np.random.Generator, full: _Float) -> None:
    """Add fine grey texture in 2x2 px grains (|value| <= _NOISE_OFFSET) to ``full`` in place."""
    h, w = full.shape[0] // 2, full.shape[1] // 2
    grain = _noise_bytes(rng, (h, w)).astype(np.float32) - _NOISE_OFFSET
    full.reshape(h, 2, w, 2, full.shape[2])[...] += grain[:, None, :, None, None]


def _upsample(a: _Float, k: int) -> _Float:
    """Bilinearly upsample an ``(h, w, c)`` array by an integer factor ``k`` to ``((h-1)k, (w-1)k, c)``."""
    t = np.arange(k, dtype=np.float32) / k
    rows = (a[1:] - a[:-1])[:, None] * t[None, :, None, None]
    rows += a[:-1, None]
    rows = rows.reshape(-1, a.shape[1], a.shape[2])
    cols = (rows[:, 1:] - rows[:, :-1])[:, :, None] * t[None, None, :, None]
    cols += rows[:, :-1, None]
    return cols.reshape(rows.shape[0], -1, a.shape[2])


def render_frame(
    background: Image8, width: int, height: int, episode: int, frame: int, noise_seed: int | None = None
) -> Image8:
    """Return frame ``frame`` of ``episode``: a panning crop of ``background`` with noise and index strip.

    The camera drifts on slow sinusoids (different phase per episode) over the margin
    of ``background`` (from :func:`scene`). Sensor noise has sigma ~2.2 and is seeded by
    ``noise_seed``, or by ``(episode, frame)`` when None, so every call is reproducible.
    """
    bg_h, bg_w = background.shape[:2]
    if bg_h < height or bg_w < width:
        raise ValueError(
            f"Background {bg_w}x{bg_h} is smaller than the {width}x{height} frame. "
            "Build it with scene(width, height, seed)."
        )
    x0, y0 = _pan_offset(bg_w - width, bg_h - height, episode, frame)
    crop = background[y0 : y0 + height, x0 : x0 + width]
    img = _add_noise(crop, (episode, frame) if noise_seed is None else (noise_seed,))
    burn_index(img, episode, frame)
    return img


def _pan_offset(margin_x: int, margin_y: int, episode: int, frame: int) -> tuple[int, int]:
    """Return the crop's top-left corner for ``frame``: a slow sinusoidal drift within the margins."""
    phase = episode * _GOLDEN_ANGLE
    sx = np.sin(2 * np.pi * frame / _PAN_PERIOD_X_FRAMES + phase)
    sy = np.sin(2 * np.pi * frame / _PAN_PERIOD_Y_FRAMES + 2 * phase)
    return round(margin_x * (1 + sx) / 2), round(margin_y * (1 + sy) / 2)


def _add_noise(crop: Image8, seed: tuple[int, ...]) -> Image8:
    """Return a contiguous copy of ``crop`` plus sensor noise (sigma ~2.2); values first clipped to 6..249."""
    out = np.clip(crop, _NOISE_OFFSET, 255 - _NOISE_OFFSET)
    out -= _NOISE_OFFSET
    out += _noise_bytes(np.random.default_rng(seed), out.shape)
    return out


def _episode_dir(root: Path, camera: str, episode: int) -> Path:
    """Return ``{root}/images/{camera}/episode-{episode:06d}``."""
    return layout.episode_dir(root, camera, episode)


def _camera_seed(seed: int, camera_index: int) -> int:
    """Return a scene seed for camera ``camera_index`` of a recording made with ``seed``."""
    return int(np.random.SeedSequence([seed, camera_index]).generate_state(1)[0])


def _write_png(path: Path, img: Image8, compress_level: int) -> None:
    """Write ``img`` as a PNG with zlib ``compress_level`` (1 = fast, like a live recorder)."""
    Image.fromarray(img).save(path, compress_level=compress_level)


def _write_marker(episode_dir: Path, marker: str | None) -> None:
    """Create the empty completion ``marker`` file in ``episode_dir``, unless it is None."""
    if marker is not None:
        (episode_dir / marker).touch()


def write_episode(
    episode_dir: Path,
    episode: int,
    num_frames: int,
    width: int = 640,
    height: int = 480,
    seed: int = 0,
    marker: str | None = ".complete",
    compress_level: int = 1,
) -> list[Path]:
    """Write ``num_frames`` PNGs ``frame-000000.png``.. into ``episode_dir``, then the marker.

    The scene comes from ``seed``; the marker (an empty file) is written last so its
    mtime is not older than any frame's. ``num_frames=0`` makes an empty episode.
    Parent folders are created. Returns the frame paths in order.
    """
    background = scene(width, height, seed)
    return _write_frames(episode_dir, background, (width, height), episode, num_frames, marker, compress_level)


def _write_frames(
    episode_dir: Path,
    background: Image8,
    size: tuple[int, int],
    episode: int,
    num_frames: int,
    marker: str | None,
    compress_level: int = 1,
) -> list[Path]:
    """Render ``num_frames`` frames of ``size`` (width, height) from ``background``, then the marker."""
    return write_frames(
        episode_dir,
        num_frames,
        lambda i: render_frame(background, *size, episode, i),
        lambda path, img: _write_png(path, img, compress_level),
        marker,
    )


def write_frames(
    episode_dir: Path,
    num_frames: int,
    render: Callable[[int], Frame],
    write: Callable[[Path, Frame], None],
    marker: str | None,
) -> list[Path]:
    """``write(path, render(i))`` each frame ``i`` of an episode into ``episode_dir`` (created), then the marker.

    Returns the frame paths (:func:`robovid.layout.frame_path`) in order; ``num_frames=0`` makes an empty episode.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames={num_frames} for {episode_dir}; it must be 0 or more.")
    episode_dir.mkdir(parents=True, exist_ok=True)
    paths = [layout.frame_path(episode_dir, i) for i in range(num_frames)]
    for i, path in enumerate(paths):
        write(path, render(i))
    _write_marker(episode_dir, marker)
    return paths


def write_recording(
    root: Path,
    cameras: Sequence[str],
    episodes: Iterable[int],
    num_frames: int,
    width: int,
    height: int,
    seed: int = 0,
    marker: str | None = ".complete",
) -> None:
    """Write complete episodes for every camera under ``root`` in the LeRobot layout.

    Each camera sees its own scene (seeded from ``seed`` and its position in ``cameras``).
    """
    backgrounds = [scene(width, height, _camera_seed(seed, i)) for i in range(len(cameras))]
    for episode in episodes:
        for camera, background in zip(cameras, backgrounds, strict=True):
            episode_dir = _episode_dir(root, camera, episode)
            _write_frames(episode_dir, background, (width, height), episode, num_frames, marker)


def simulate_recorder(
    root: Path,
    cameras: Sequence[str],
    num_episodes: int,
    num_frames: int,
    fps: float,
    width: int,
    height: int,
    realtime: bool = True,
    stop: threading.Event | None = None,
    start_episode: int = 0,
    on_episode: Callable[[int], None] | None = None,
) -> None:
    """Write episodes under ``root`` as a live recorder would, one frame per camera per tick.

    Cameras see the same scenes as in ``write_recording(..., seed=0)``.
    With ``realtime`` the ticks follow a deadline schedule at ``fps``; otherwise frames
    are written as fast as possible. After the last frame of an episode every camera's
    ``.complete`` marker is written, then ``on_episode(episode)`` is called. Setting
    ``stop`` ends the run between frames, leaving the current episode without markers,
    like a recorder that was interrupted. Writes ``{root}/meta/info.json`` with the fps
    first, unless it exists.
    """
    if fps <= 0 or num_frames < 1:
        raise ValueError(
            f"simulate_recorder needs fps > 0 and num_frames >= 1; got fps={fps}, num_frames={num_frames}."
        )
    stop = stop if stop is not None else threading.Event()
    _write_info(root, fps)
    backgrounds = [scene(width, height, _camera_seed(0, i)) for i in range(len(cameras))]
    clock = _Ticker(fps if realtime else None, stop)
    for episode in range(start_episode, start_episode + num_episodes):
        dirs = [_episode_dir(root, camera, episode) for camera in cameras]
        for frame in range(num_frames):
            if not clock.wait_next():
                return
            _write_tick(dirs, backgrounds, (width, height), episode, frame)
        for episode_dir in dirs:
            _write_marker(episode_dir, ".complete")
        if on_episode is not None:
            on_episode(episode)


def _write_tick(
    dirs: Sequence[Path], backgrounds: Sequence[Image8], size: tuple[int, int], episode: int, frame: int
) -> None:
    """Write frame ``frame`` of ``episode`` for every camera (one folder and backdrop each)."""
    for episode_dir, background in zip(dirs, backgrounds, strict=True):
        episode_dir.mkdir(parents=True, exist_ok=True)
        img = render_frame(background, *size, episode, frame)
        _write_png(layout.frame_path(episode_dir, frame), img, compress_level=1)


class _Ticker:
    """Deadline schedule: tick ``n`` is due ``n / fps`` s after the first, or at once without fps."""

    def __init__(self, fps: float | None, stop: threading.Event) -> None:
        self._period_s = None if fps is None else 1.0 / fps
        self._stop = stop
        self._start_s: float | None = None
        self._ticks = 0

    def wait_next(self) -> bool:
        """Wait until the next tick is due; return False if ``stop`` was set first."""
        if self._start_s is None:
            self._start_s = time.monotonic()
        timeout_s = 0.0
        if self._period_s is not None:
            timeout_s = max(0.0, self._start_s + self._ticks * self._period_s - time.monotonic())
        self._ticks += 1
        return not self._stop.wait(timeout_s)


def _write_info(root: Path, fps: float) -> None:
    """Create ``{root}/meta/info.json`` holding ``{"fps": fps}`` atomically, unless it exists."""
    path = layout.info_json_path(root)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps({"fps": fps}, indent=2).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry change (the rename) to disk, where the OS allows it."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
