"""robovid's LeRobot statistics equal the same definitions computed directly on the sampled pixels.

tests/test_lerobot_real.py compares them with LeRobot's own function when LeRobot is installed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from robovid.depth import read_depth_frame
from robovid.frames import read_frame_rgb
from robovid.lerobot_stats import (
    QUANTILE_KEYS,
    QUANTILES,
    STAT_KEYS,
    FrameStatsAccumulator,
    aggregate_stats,
    downsample,
    flat_columns,
    sample_indices,
    stats_from_json,
    stats_to_json,
    vector_stats,
)
from robovid.synthetic import write_episode
from robovid.synthetic_depth import write_depth_episode


@pytest.mark.parametrize(
    ("num_frames", "expected_count"),
    [(1, 1), (7, 7), (99, 99), (100, 100), (463, 100), (1000, 177), (5000, 594), (200_000, 9457)],
)
def test_sample_indices_take_every_frame_up_to_99_then_n_to_the_three_quarters(
    num_frames: int, expected_count: int
) -> None:
    indices = sample_indices(num_frames)
    assert len(indices) == expected_count
    assert indices[0] == 0 and indices[-1] == num_frames - 1
    assert indices == sorted(set(indices))
    spacing = (num_frames - 1) / max(1, expected_count - 1)
    assert all(abs(i - k * spacing) <= 0.5 for k, i in enumerate(indices))


def test_sample_indices_of_an_empty_episode_are_empty() -> None:
    assert sample_indices(0) == []


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (640, 480, (120, 160)),
        (480, 640, (160, 120)),
        (299, 200, (200, 299)),
        (300, 300, (150, 150)),
        (1280, 720, (90, 160)),
    ],
)
def test_downsample_strides_the_long_side_to_about_150_px(width: int, height: int, expected: tuple[int, int]) -> None:
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    assert downsample(frame).shape[:2] == expected


def _reference_quantile(values: np.ndarray, q: float) -> float:
    """A 5000-bin histogram between min and max, interpolated within the bin (LeRobot's estimator)."""
    edges = np.linspace(values.min() - 1e-10, values.max() + 1e-10, 5001)
    cumulative = np.cumsum(np.histogram(values, bins=edges)[0])
    target = q * len(values)
    i = int(np.searchsorted(cumulative, target))
    if i == 0:
        return float(edges[0])
    before, inside = cumulative[i - 1], cumulative[i] - cumulative[i - 1]
    return float(edges[i] + (target - before) / inside * (edges[i + 1] - edges[i])) if inside else float(edges[i])


def test_frame_statistics_equal_numpy_on_the_sampled_downsampled_pixels(tmp_path: Path) -> None:
    frames = write_episode(tmp_path / "episode-000000", 0, 12, width=320, height=240, seed=3, marker=None)
    accumulator = FrameStatsAccumulator(len(frames))
    for index, path in enumerate(frames):
        accumulator.add(index, read_frame_rgb(path))
    stats = accumulator.stats()
    pixels = np.concatenate([downsample(read_frame_rgb(frames[i])).reshape(-1, 3) for i in sample_indices(12)])
    assert list(stats) == list(STAT_KEYS)
    assert stats["count"].tolist() == [12]
    for key in STAT_KEYS[:4]:
        assert stats[key].shape == (3, 1, 1)
    np.testing.assert_array_equal(stats["min"].ravel(), pixels.min(axis=0) / 255.0)
    np.testing.assert_array_equal(stats["max"].ravel(), pixels.max(axis=0) / 255.0)
    np.testing.assert_array_equal(stats["mean"].ravel(), np.mean(pixels, axis=0) / 255.0)
    np.testing.assert_allclose(stats["std"].ravel(), pixels.std(axis=0) / 255.0, rtol=1e-12)
    assert 0.05 < float(stats["std"].min()) < 0.5  # the true spread: LeRobot 0.4.4 writes 0.0 here
    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        expected = [_reference_quantile(pixels[:, c], q) / 255.0 for c in range(3)]
        np.testing.assert_allclose(stats[key].ravel(), expected, rtol=1e-12)
        assert np.all(stats["min"] - 1e-9 <= stats[key]) and np.all(stats[key] <= stats["max"] + 1e-9)


def test_depth_statistics_are_one_channel_in_the_stored_millimetres(tmp_path: Path) -> None:
    """As LeRobot's current main computes them for an ``is_depth_map`` feature: shape (1, 1, 1), not divided by 255."""
    frames = write_depth_episode(tmp_path / "episode-000000", 0, 12, 320, 240, seed=5)
    accumulator = FrameStatsAccumulator(len(frames), depth=True)
    for index, path in enumerate(frames):
        accumulator.add(index, read_depth_frame(path))
    stats = accumulator.stats()
    samples = np.concatenate([downsample(read_depth_frame(frames[i])).ravel() for i in sample_indices(12)])
    assert samples.max() > 1000 and (samples == 0).any()  # millimetres well past 8 bits, and holes
    assert list(stats) == list(STAT_KEYS)
    assert stats["count"].tolist() == [12]
    for key in STAT_KEYS:
        if key != "count":
            assert stats[key].shape == (1, 1, 1)
    assert stats["min"].item() == samples.min() and stats["max"].item() == samples.max()
    np.testing.assert_allclose(stats["mean"].item(), samples.astype(np.float64).mean(), rtol=1e-12)
    np.testing.assert_allclose(stats["std"].item(), samples.astype(np.float64).std(), rtol=1e-9)
    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        np.testing.assert_allclose(stats[key].item(), _reference_quantile(samples.astype(np.float64), q), rtol=1e-9)


def test_frame_statistics_refuse_an_episode_not_fully_fed() -> None:
    accumulator = FrameStatsAccumulator(3)
    accumulator.add(0, np.zeros((16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="all 3 sampled frames"):
        accumulator.stats()


def test_vector_statistics_keep_integer_min_and_max_and_give_the_true_mean_and_std() -> None:
    values = np.arange(10, 60, dtype=np.int64)
    stats = vector_stats(values)
    assert stats["min"].dtype == np.int64 and stats["min"].tolist() == [10]
    assert stats["max"].tolist() == [59]
    assert stats["mean"].tolist() == [34.5]
    assert math.isclose(float(stats["std"][0]), float(values.std()), rel_tol=1e-12)
    assert stats["count"].tolist() == [50]
    for key, q in zip(QUANTILE_KEYS, QUANTILES, strict=True):
        assert float(stats[key][0]) == pytest.approx(_reference_quantile(values, q), rel=1e-12)
        assert abs(float(stats[key][0]) - float(np.quantile(values, q))) <= 1.0


def test_vector_statistics_of_one_frame_use_its_value_for_every_quantile() -> None:
    stats = vector_stats(np.array([0.25]))
    assert [float(stats[k][0]) for k in ("min", "max", "mean", "std", *QUANTILE_KEYS)] == [0.25] * 3 + [0.0] + [
        0.25
    ] * 5


def test_aggregated_statistics_pool_mean_and_std_over_episodes() -> None:
    a, b = np.arange(0, 30, dtype=np.int64), np.arange(100, 110, dtype=np.int64)
    total = aggregate_stats([{"index": vector_stats(a)}, {"index": vector_stats(b)}, {"index": vector_stats(a)}])
    everything = np.concatenate([a, b, a])
    assert total["index"]["count"].tolist() == [70]
    assert total["index"]["min"].tolist() == [0] and total["index"]["max"].tolist() == [109]
    np.testing.assert_allclose(total["index"]["mean"], [everything.mean()], rtol=1e-12)
    np.testing.assert_allclose(total["index"]["std"], [everything.std()], rtol=1e-12)


def test_statistics_survive_json_and_flatten_to_lerobots_column_names() -> None:
    stats = {"index": vector_stats(np.arange(5, dtype=np.int64))}
    assert stats_from_json(stats_to_json(stats))["index"]["q50"].tolist() == stats["index"]["q50"].tolist()
    columns = flat_columns(stats, ["index", "absent"])
    assert list(columns) == [f"stats/index/{key}" for key in STAT_KEYS]
    assert columns["stats/index/count"] == [5]
