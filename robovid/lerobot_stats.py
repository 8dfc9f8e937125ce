"""Feature statistics in LeRobot v3's format, computed while robovid reads an episode's frames.

LeRobot (0.4.4, ``lerobot/datasets/compute_stats.py``) stores, per episode and feature, ``min``,
``max``, ``mean``, ``std``, ``count`` and the quantiles ``q01 q10 q50 q90 q99``; ``meta/stats.json``
holds the same keys aggregated over every episode. This module implements the same definitions:

- **camera frames**: a subset of frames (:func:`sample_indices`: every frame up to 99, then
  ``n ** 0.75`` of them, evenly spaced), each strided down to about 150 px (:func:`downsample`),
  statistics per colour channel over every pixel of those frames, divided by 255, shape
  ``(3, 1, 1)``; ``count`` is the number of sampled frames. Quantiles come from a 5000-bin
  histogram between the channel's min and max, interpolated within the bin, as LeRobot does.
  The per-channel byte counts (:class:`FrameStatsAccumulator`) are all that is kept: 3 x 256
  integers, whatever the episode length.
- **depth frames** (16-bit samples, e.g. millimetres): as LeRobot's current main computes them for
  a feature marked ``is_depth_map``: one channel, in the stored unit (not divided by anything),
  shape ``(1, 1, 1)``; the counts are 65536 integers.
- **per-frame numbers** (``timestamp``, ``frame_index``, ``index``, ...): :func:`vector_stats`.

One deliberate difference: LeRobot 0.4.4 squares the ``uint8`` pixels before averaging them, which
wraps around at 256, so its image ``std`` is 0 for almost every recording (checked with its own
``get_feature_stats`` on random frames: 0.0 where numpy gives 74/255). robovid's ``std`` is the
true standard deviation of the sampled pixels. Every other value equals LeRobot's for the same
frames (the round-trip test compares them with LeRobot's own function).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)
"""The keys of one feature's statistics, in LeRobot's order."""
HISTOGRAM_BINS = 5000
_EDGE_PAD = 1e-10
_MIN_SAMPLES, _MAX_SAMPLES, _SAMPLE_POWER = 100, 10_000, 0.75
_DOWNSAMPLE_TARGET_PX, _DOWNSAMPLE_ABOVE_PX = 150, 300

FeatureStats = dict[str, npt.NDArray[Any]]
"""One feature's statistics: :data:`STAT_KEYS` to numpy arrays."""


def sample_indices(num_frames: int) -> list[int]:
    """The frames of an episode whose pixels enter its statistics (LeRobot's choice, evenly spaced)."""
    if num_frames <= 0:
        return []
    wanted = max(min(_MIN_SAMPLES, num_frames), min(int(num_frames**_SAMPLE_POWER), _MAX_SAMPLES))
    return [int(i) for i in np.round(np.linspace(0, num_frames - 1, wanted)).astype(int)]


def downsample(frame: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Every k-th row and column of an ``H x W (x C)`` frame, so its long side is about 150 px (below 300 px: as is)."""
    height, width = frame.shape[:2]
    if max(width, height) < _DOWNSAMPLE_ABOVE_PX:
        return frame
    step = int((width if width > height else height) / _DOWNSAMPLE_TARGET_PX)
    return frame[::step, ::step]


class FrameStatsAccumulator:
    """Collects the sampled frames of one camera episode as per-channel value counts.

    Feed every frame with :meth:`add`; only the sampled ones are counted. :meth:`stats` then
    gives the episode's statistics. Safe to feed from one thread at a time. ``depth``: the frames
    are ``H x W`` 16-bit depth samples (LeRobot's depth statistics) instead of ``H x W x 3`` RGB.
    """

    def __init__(self, num_frames: int, depth: bool = False) -> None:
        self.num_frames = num_frames
        self.depth = depth
        self._wanted = set(sample_indices(num_frames))
        self._counts = np.zeros((1, 1 << 16) if depth else (3, 256), dtype=np.int64)
        self.samples = 0
        """Frames counted so far."""

    def wants(self, index: int) -> bool:
        """True when frame ``index`` is one of the sampled frames."""
        return index in self._wanted

    def add(self, index: int, frame: npt.NDArray[Any]) -> None:
        """Count frame ``index`` (``H x W x 3`` uint8, or ``H x W`` uint16 depth) if it is a sampled frame."""
        if index not in self._wanted:
            return
        small = downsample(frame)
        if self.depth:
            self._counts[0] += np.bincount(small.ravel(), minlength=1 << 16)
        else:
            for channel in range(3):
                self._counts[channel] += np.bincount(small[..., channel].ravel(), minlength=256)
        self.samples += 1

    def stats(self) -> FeatureStats:
        """The episode's statistics: ``(3, 1, 1)`` float arrays in [0, 1] (depth: ``(1, 1, 1)`` in the stored
        unit), ``count`` of shape ``(1,)``."""
        if self.samples != len(self._wanted):
            raise ValueError(
                f"Statistics need all {len(self._wanted)} sampled frames of this {self.num_frames}-frame episode; "
                f"{self.samples} were counted. Feed every frame to add() before calling stats()."
            )
        if self.depth:
            return depth_stats_from_counts(self._counts, self.samples)
        return image_stats_from_counts(self._counts, self.samples)


def image_stats_from_counts(counts: npt.NDArray[np.int64], num_images: int) -> FeatureStats:
    """Per-channel statistics of pixels given as byte counts (``3 x 256``), in LeRobot's image format."""
    return _stats_from_counts(counts, num_images, scale=255.0)


def depth_stats_from_counts(counts: npt.NDArray[np.int64], num_images: int) -> FeatureStats:
    """Statistics of depth samples given as value counts (``1 x 65536``), in the stored unit, shape ``(1, 1, 1)``."""
    return _stats_from_counts(counts, num_images, scale=1.0)


def _stats_from_counts(counts: npt.NDArray[np.int64], num_images: int, scale: float) -> FeatureStats:
    """Per-channel statistics of values ``0..len(counts[c])-1`` given as counts, divided by ``scale``."""
    values = np.arange(counts.shape[1], dtype=np.int64)
    pixels = int(counts[0].sum())
    per_channel: dict[str, list[float]] = {key: [] for key in STAT_KEYS if key != "count"}
    for channel_counts in counts:
        present = np.flatnonzero(channel_counts)
        low, high = values[present[0]], values[present[-1]]
        total = int((channel_counts * values).sum())
        total_sq = int((channel_counts * values * values).sum())
        mean = total / pixels
        per_channel["min"].append(float(low))
        per_channel["max"].append(float(high))
        per_channel["mean"].append(mean)
        per_channel["std"].append(float(np.sqrt(max(0.0, total_sq / pixels - mean * mean))))
        edges = _edges(low, high)
        histogram, _ = np.histogram(values, bins=edges, weights=channel_counts.astype(np.float64))
        for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
            per_channel[key].append(_quantile(histogram, edges, q * pixels))
    channels = counts.shape[0]
    stats: FeatureStats = {key: np.array(per_channel[key]).reshape(channels, 1, 1) / scale for key in per_channel}
    stats["count"] = np.array([num_images])
    return {key: stats[key] for key in STAT_KEYS}


def vector_stats(values: npt.NDArray[Any]) -> FeatureStats:
    """Statistics of one per-frame number over an episode (``timestamp``, ``index``, ...), shape ``(1,)``.

    Integer columns keep integer ``min``/``max``, as LeRobot's do.
    """
    column = np.asarray(values).reshape(-1, 1)
    if column.shape[0] < 2:
        mean = np.mean(column, axis=0)
        stats = {"min": np.min(column, axis=0), "max": np.max(column, axis=0), "mean": mean}
        stats |= {"std": np.std(column, axis=0), "count": np.array([column.shape[0]])}
        stats |= {key: mean.copy() for key in QUANTILE_KEYS}
        return {key: stats[key] for key in STAT_KEYS}
    low, high = np.min(column, axis=0), np.max(column, axis=0)
    mean = np.mean(column, axis=0)
    variance = np.mean(column**2, axis=0) - mean**2
    edges = _edges(low[0], high[0])
    histogram = np.histogram(column[:, 0], bins=edges)[0].astype(np.float64)
    stats = {"min": low, "max": high, "mean": mean, "std": np.sqrt(np.maximum(0, variance))}
    stats["count"] = np.array([column.shape[0]])
    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        stats[key] = np.array([_quantile(histogram, edges, q * column.shape[0])])
    return stats


def _edges(low: Any, high: Any) -> npt.NDArray[np.float64]:
    return np.linspace(low - _EDGE_PAD, high + _EDGE_PAD, HISTOGRAM_BINS + 1)


def _quantile(histogram: npt.NDArray[np.float64], edges: npt.NDArray[np.float64], target: float) -> float:
    """The value below which ``target`` samples lie, interpolated linearly within its histogram bin."""
    cumulative = np.cumsum(histogram)
    index = int(np.searchsorted(cumulative, target))
    if index == 0:
        return float(edges[0])
    if index >= len(cumulative):
        return float(edges[-1])
    before = cumulative[index - 1]
    in_bin = cumulative[index] - before
    if in_bin == 0:
        return float(edges[index])
    return float(edges[index] + (target - before) / in_bin * (edges[index + 1] - edges[index]))


def aggregate_stats(episodes: Sequence[Mapping[str, FeatureStats]]) -> dict[str, FeatureStats]:
    """Dataset statistics from per-episode ones, folded in episode order as LeRobot does while recording.

    min/max of all, count-weighted means and quantiles, and the pooled standard deviation.
    """
    total: dict[str, FeatureStats] | None = None
    for episode in episodes:
        if total is None:
            total = dict(episode)
        else:
            names = [*total, *(key for key in episode if key not in total)]  # a stable order for stats.json
            total = {key: _pair(total, episode, key) for key in names}
    return total or {}


def _pair(a: Mapping[str, FeatureStats], b: Mapping[str, FeatureStats], key: str) -> FeatureStats:
    parts = [stats[key] for stats in (a, b) if key in stats]
    return parts[0] if len(parts) == 1 else _merge(parts)


def _merge(parts: Sequence[FeatureStats]) -> FeatureStats:
    means = np.stack([p["mean"] for p in parts])
    variances = np.stack([p["std"] ** 2 for p in parts])
    counts = np.stack([p["count"] for p in parts])
    total_count = counts.sum(axis=0)
    while counts.ndim < means.ndim:
        counts = np.expand_dims(counts, axis=-1)
    total_mean = (means * counts).sum(axis=0) / total_count
    total_variance = ((variances + (means - total_mean) ** 2) * counts).sum(axis=0) / total_count
    merged: FeatureStats = {
        "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
        "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
        "mean": total_mean,
        "std": np.sqrt(total_variance),
        "count": total_count,
    }
    for key in QUANTILE_KEYS:
        if all(key in p for p in parts):
            merged[key] = (np.stack([p[key] for p in parts]) * counts).sum(axis=0) / total_count
    return merged


def stats_to_json(stats: Mapping[str, Mapping[str, npt.NDArray[Any]]]) -> dict[str, dict[str, Any]]:
    """Nested lists and numbers, as ``meta/stats.json`` holds them."""
    return {
        feature: {key: np.asarray(value).tolist() for key, value in values.items()} for feature, values in stats.items()
    }


def stats_from_json(data: Mapping[str, Mapping[str, Any]]) -> dict[str, FeatureStats]:
    """The inverse of :func:`stats_to_json`."""
    return {feature: {key: np.array(value) for key, value in values.items()} for feature, values in data.items()}


def feature_stats_to_json(stats: FeatureStats) -> str:
    """One feature's statistics as compact JSON text (how a segment row keeps them)."""
    return json.dumps({key: np.asarray(value).tolist() for key, value in stats.items()}, separators=(",", ":"))


def feature_stats_from_json(text: str) -> FeatureStats:
    """The inverse of :func:`feature_stats_to_json`."""
    return {key: np.array(value) for key, value in json.loads(text).items()}


def flat_columns(stats: Mapping[str, FeatureStats], features: Iterable[str]) -> dict[str, Any]:
    """One episode's statistics as ``stats/{feature}/{key}`` row values (features in the given order)."""
    return {
        f"stats/{feature}/{key}": np.asarray(stats[feature][key]).tolist()
        for feature in features
        if feature in stats
        for key in STAT_KEYS
    }
