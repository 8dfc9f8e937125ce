"""Synthetic depth-camera recordings (16-bit millimetre depth maps) for tests, benchmarks and the demo.

A frame is what a stereo depth camera (RealSense D4xx and similar) hands a recorder: ``uint16``
millimetres, 0 where the camera has no reading. The scene is ray-cast from a pinhole camera
standing in a room that pans slowly: a floor, walls, boxes and a table with sharp edges,
spheres (smooth curved surfaces), one sphere moving across, and a window that returns nothing.
On top come what real sensors add:

- **noise growing with the square of the distance**, as stereo matching's does
  (``z**2 * subpixel / (focal * baseline)``: ~4 mm RMS at 1 m, ~40 mm at 3 m for a D435-like
  camera), spatially correlated over 2x2 px, new in every frame; ``noise_scale`` < 1 models a
  recorder that filters its depth (RealSense's spatial/temporal filters);
- **holes (0)**: the stereo shadow left of every near object (the second imager cannot see
  there), the window, anything nearer than the minimum range, and flickering speckle.

Each frame carries its ``(episode, frame)`` index as :mod:`robovid.synthetic`'s strip of
cells, drawn at two depths (:data:`INDEX_NEAR_MM`, :data:`INDEX_FAR_MM`) without noise, so
:func:`read_depth_index` identifies every decoded depth frame exactly.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import numpy.typing as npt

from robovid.synthetic import burn_index, read_index, write_frames

Depth16 = npt.NDArray[np.uint16]
_F = npt.NDArray[np.float64]

INDEX_NEAR_MM = 600
"""Depth of the index strip's 0 cells."""
INDEX_FAR_MM = 3600
"""Depth of the index strip's 1 cells."""
MIN_RANGE_MM = 280
"""Nearer than this the camera returns 0 (a D435's minimum range at 640x480)."""
_FOCAL_PER_WIDTH = 0.6  # focal length in px per px of width: ~80 degrees horizontal field of view
_BASELINE_MM = 50.0  # between the two imagers
_SUBPIXEL = 0.08  # RMS disparity error of the stereo matcher, px
_CAMERA_HEIGHT_M = 0.9
_PITCH_DOWN_RAD = math.radians(20)
_YAW_AMPLITUDE_RAD = math.radians(6)
_YAW_PERIOD_FRAMES = 200.0
_SPECKLE_SHARE = 0.015  # pixels lost to low texture / specular spots per frame
_SPECKLE_CELL_PX = 6


@dataclass(frozen=True)
class _Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclass(frozen=True)
class _Sphere:
    center: tuple[float, float, float]
    radius: float
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Metres per frame."""


@dataclass(frozen=True)
class DepthScene:
    """A room for :func:`render_depth`: walls, boxes, spheres and a window, fixed by a seed."""

    back_wall_m: float
    left_wall_m: float
    right_wall_m: float
    window: tuple[float, float, float, float]
    """(x0, x1, y0, y1) on the back wall, in metres: no return there."""
    boxes: tuple[_Box, ...]
    spheres: tuple[_Sphere, ...]


def depth_scene(seed: int) -> DepthScene:
    """A deterministic room for ``seed``: 3-4 m deep, 3-4 boxes, 2 still spheres and one moving."""
    rng = np.random.default_rng(seed)
    back = float(rng.uniform(3.0, 4.0))
    boxes = [_Box((-0.6, 0.0, 1.4), (0.5, 0.72, 2.2))]  # a table
    for _ in range(int(rng.integers(2, 4))):
        x, z = float(rng.uniform(-1.2, 1.2)), float(rng.uniform(1.0, back - 0.4))
        w, h, d = (float(v) for v in rng.uniform((0.15, 0.1, 0.15), (0.5, 0.9, 0.5)))
        boxes.append(_Box((x, 0.0, z), (x + w, h, z + d)))
    spheres = [
        _Sphere((float(rng.uniform(-0.4, 0.3)), 0.72 + 0.1, float(rng.uniform(1.6, 2.0))), 0.1),
        _Sphere((float(rng.uniform(-1.0, 1.0)), 0.25, float(rng.uniform(1.0, 2.5))), 0.25),
        _Sphere((-1.2, 1.0, 1.2), 0.12, (0.012, 0.0, 0.0)),  # an arm-like object crossing the view
    ]
    left = float(rng.uniform(-0.2, 0.6))
    window = (left, left + 0.9, 0.9, 1.7)
    return DepthScene(back, -1.6, 1.8, window, tuple(boxes), tuple(spheres))


def render_depth(
    scene: DepthScene,
    width: int,
    height: int,
    episode: int,
    frame: int,
    noise_scale: float = 1.0,
) -> Depth16:
    """Frame ``frame`` of ``episode``: ``(height, width)`` uint16 millimetres, 0 = no reading.

    Deterministic for its arguments (noise and speckle are seeded by ``(episode, frame)``).
    ``noise_scale`` multiplies the sensor noise (0 for noiseless geometry).
    """
    focal = _FOCAL_PER_WIDTH * width
    yaw = _YAW_AMPLITUDE_RAD * math.sin(2 * math.pi * frame / _YAW_PERIOD_FRAMES + episode * 2.4)
    dirs = _ray_directions(width, height, focal, yaw)
    z_m, window = _cast(scene, dirs, frame)
    rng = np.random.default_rng([episode, frame, 0xDE])
    z_mm = z_m * 1000.0
    if noise_scale:
        z_mm += _sensor_noise(rng, z_mm, focal) * noise_scale
    depth = np.rint(np.clip(z_mm, 0, 65535)).astype(np.uint16)
    holes = window | (z_mm < MIN_RANGE_MM) | _stereo_shadow(z_mm, focal) | _speckle(rng, height, width)
    depth[holes] = 0
    burn_depth_index(depth, episode, frame)
    return depth


def _ray_directions(width: int, height: int, focal: float, yaw: float) -> _F:
    """World direction of each pixel's ray, scaled so its camera-z component is 1: shape (3, H, W)."""
    xc = (np.arange(width) - (width - 1) / 2) / focal
    yc = -(np.arange(height) - (height - 1) / 2) / focal
    x, y = np.meshgrid(xc, yc)
    cp, sp = math.cos(_PITCH_DOWN_RAD), math.sin(_PITCH_DOWN_RAD)
    y1, z1 = y * cp - sp, y * sp + cp  # pitch down about the x axis
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.stack([x * cy + z1 * sy, y1, -x * sy + z1 * cy])


def _cast(scene: DepthScene, d: _F, frame: int) -> tuple[_F, npt.NDArray[np.bool_]]:
    """Distance along the camera axis to the nearest surface, and where the window is hit."""
    origin = np.array([0.0, _CAMERA_HEIGHT_M, 0.0])
    inf = np.full(d.shape[1:], np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[1] < 0, -origin[1] / d[1], inf)  # floor
        t_back = np.where(d[2] > 0, (scene.back_wall_m - origin[2]) / d[2], inf)
        t = np.minimum(t, t_back)
        for wall in (scene.left_wall_m, scene.right_wall_m):
            t = np.minimum(t, np.where(d[0] * wall > 0, (wall - origin[0]) / d[0], inf))
        hit_x, hit_y = origin[0] + t_back * d[0], origin[1] + t_back * d[1]
        x0, x1, y0, y1 = scene.window
        window = (t == t_back) & (hit_x > x0) & (hit_x < x1) & (hit_y > y0) & (hit_y < y1)
        for box in scene.boxes:
            t = np.minimum(t, _box_hit(box, origin, d))
        for sphere in scene.spheres:
            t = np.minimum(t, _sphere_hit(sphere, origin, d, frame))
    window &= ~np.isfinite(t) | (t >= t_back)
    return np.where(np.isfinite(t), t, 0.0), window


def _box_hit(box: _Box, origin: _F, d: _F) -> _F:
    """Ray parameter of the entry into an axis-aligned box (slab method), inf when missed."""
    t_near = np.full(d.shape[1:], -np.inf)
    t_far = np.full(d.shape[1:], np.inf)
    for axis in range(3):
        t1 = (box.lo[axis] - origin[axis]) / d[axis]
        t2 = (box.hi[axis] - origin[axis]) / d[axis]
        t_near = np.maximum(t_near, np.minimum(t1, t2))
        t_far = np.minimum(t_far, np.maximum(t1, t2))
    return np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)


def _sphere_hit(sphere: _Sphere, origin: _F, d: _F, frame: int) -> _F:
    """Ray parameter of the first hit of a (possibly moving) sphere, inf when missed."""
    center = np.array(sphere.center) + frame * np.array(sphere.velocity)
    oc = origin - center
    a = (d * d).sum(axis=0)
    b = 2 * np.tensordot(oc, d, axes=1)
    c = float(oc @ oc) - sphere.radius**2
    disc = b * b - 4 * a * c
    root = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where((disc >= 0) & (root > 0), root, np.inf)


def _sensor_noise(rng: np.random.Generator, z_mm: _F, focal: float) -> _F:
    """Stereo depth noise in mm: sigma = z^2 * subpixel / (focal * baseline), 2x2 px correlated."""
    h, w = z_mm.shape
    coarse = rng.standard_normal(((h + 1) // 2, (w + 1) // 2))
    fine = rng.standard_normal((h, w))
    unit = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w] * 0.9 + fine * 0.44
    return unit * (z_mm * z_mm * _SUBPIXEL / (focal * _BASELINE_MM))


def _stereo_shadow(z_mm: _F, focal: float) -> npt.NDArray[np.bool_]:
    """Pixels the second imager (``_BASELINE_MM`` to the right) cannot see: left of near objects.

    A pixel at column x shows up at x - disparity(x) in the other image; it is hidden when a pixel
    to its right lands at or left of that position.
    """
    with np.errstate(divide="ignore"):
        disparity = np.where(z_mm > 0, focal * _BASELINE_MM / z_mm, 0.0)
    seen_at = np.arange(z_mm.shape[1])[None, :] - disparity
    right_min = np.minimum.accumulate(seen_at[:, ::-1], axis=1)[:, ::-1]
    shifted = np.concatenate([right_min[:, 1:], np.full((z_mm.shape[0], 1), np.inf)], axis=1)
    return shifted < seen_at - 0.5


def _speckle(rng: np.random.Generator, height: int, width: int) -> npt.NDArray[np.bool_]:
    """Flickering blotches of lost pixels (low texture, specular spots), ~_SPECKLE_SHARE of the frame."""
    cells = rng.random((-(-height // _SPECKLE_CELL_PX), -(-width // _SPECKLE_CELL_PX)))
    blotch = np.repeat(np.repeat(cells, _SPECKLE_CELL_PX, axis=0), _SPECKLE_CELL_PX, axis=1)[:height, :width]
    ragged = rng.random((height, width)) < 0.5
    return (blotch < 2 * _SPECKLE_SHARE) & ragged


def burn_depth_index(depth: Depth16, episode: int, frame: int) -> None:
    """Write ``(episode, frame)`` into the top band of a depth map, in place (cells at two depths)."""
    strip = np.full(depth.shape, 128, dtype=np.uint8)
    burn_index(strip, episode, frame)
    band = strip != 128
    depth[band] = np.where(strip[band] > 128, INDEX_FAR_MM, INDEX_NEAR_MM)


def read_depth_index(depth: npt.NDArray[np.integer]) -> tuple[int, int]:
    """The ``(episode, frame)`` burnt into a depth map by :func:`burn_depth_index`.

    Depths are mapped linearly so that :data:`INDEX_NEAR_MM` reads black and :data:`INDEX_FAR_MM`
    white, then :func:`robovid.synthetic.read_index` reads the strip (and raises ValueError for a
    frame without a valid code, or a smeared one).
    """
    scaled = (depth.astype(np.float32) - INDEX_NEAR_MM) * (255.0 / (INDEX_FAR_MM - INDEX_NEAR_MM))
    return read_index(np.clip(scaled, 0, 255).astype(np.uint8))


def write_depth_png(path: Path, depth: Depth16, level: int = 1) -> None:
    """Write a 16-bit greyscale PNG, as depth recorders do (zlib ``level`` 1: fast, like a live recorder)."""
    path.write_bytes(imagecodecs.png_encode(np.ascontiguousarray(depth, dtype=np.uint16), level=level))


def write_depth_episode(
    episode_dir: Path,
    episode: int,
    num_frames: int,
    width: int = 640,
    height: int = 480,
    seed: int = 0,
    marker: str | None = ".complete",
    noise_scale: float = 1.0,
) -> list[Path]:
    """Write ``num_frames`` 16-bit depth PNGs ``frame-000000.png``.. into ``episode_dir``, then the marker."""
    scene = depth_scene(seed)
    render = functools.partial(render_depth, scene, width, height, episode, noise_scale=noise_scale)
    return write_frames(episode_dir, num_frames, render, write_depth_png, marker)
