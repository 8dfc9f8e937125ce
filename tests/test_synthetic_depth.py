"""Synthetic depth: camera-like millimetre maps (surfaces, edges, holes, z^2 noise) that carry their index."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from robovid.synthetic_depth import (
    INDEX_FAR_MM,
    INDEX_NEAR_MM,
    MIN_RANGE_MM,
    burn_depth_index,
    depth_scene,
    read_depth_index,
    render_depth,
    write_depth_episode,
)


def test_frames_are_uint16_millimetres_with_holes_and_a_room_sized_range() -> None:
    depth = render_depth(depth_scene(0), 320, 240, episode=1, frame=0)
    assert depth.dtype == np.uint16 and depth.shape == (240, 320)
    measured = depth[depth > 0]
    assert 0.005 < (depth == 0).mean() < 0.2  # shadows, window, speckle
    assert measured.min() >= min(MIN_RANGE_MM, INDEX_NEAR_MM)
    assert 500 < np.median(measured) < 4000 and measured.max() < 6000


def test_noise_grows_with_distance_like_stereo_depth() -> None:
    scene = depth_scene(2)
    noisy = render_depth(scene, 320, 240, 0, 5).astype(np.float64)
    clean = render_depth(scene, 320, 240, 0, 5, noise_scale=0.0).astype(np.float64)
    both = (noisy > 0) & (clean > 0)
    error = np.abs(noisy - clean)
    near = both & (clean < 1500)
    far = both & (clean > 3000)
    assert error[far].mean() > 4 * error[near].mean() > 0


def test_the_scene_moves_between_frames_and_each_frame_is_reproducible() -> None:
    scene = depth_scene(3)
    a, b = render_depth(scene, 160, 120, 0, 0), render_depth(scene, 160, 120, 0, 30)
    assert np.mean(a != b) > 0.2
    np.testing.assert_array_equal(a, render_depth(scene, 160, 120, 0, 0))


@pytest.mark.parametrize(("width", "height"), [(64, 48), (640, 480), (848, 480)])
def test_the_index_reads_back_exactly(width: int, height: int) -> None:
    scene = depth_scene(1)
    for episode, frame in [(0, 0), (7, 299), (65535, 1234)]:
        assert read_depth_index(render_depth(scene, width, height, episode, frame)) == (episode, frame)


def test_the_index_strip_uses_two_depths_and_refuses_a_smeared_strip() -> None:
    depth = np.full((48, 64), 2000, dtype=np.uint16)
    burn_depth_index(depth, 3, 4)
    assert set(np.unique(depth[:12])) <= {INDEX_NEAR_MM, INDEX_FAR_MM, 2000}
    smeared = depth.copy()
    smeared[:12] = (INDEX_NEAR_MM + INDEX_FAR_MM) // 2
    with pytest.raises(ValueError, match="neither black nor white"):
        read_depth_index(smeared)


def test_episodes_are_written_as_16_bit_grey_pngs_then_the_marker(tmp_path: Path) -> None:
    paths = write_depth_episode(tmp_path / "episode-000004", 4, 3, width=96, height=64, seed=5)
    assert [p.name for p in paths] == ["frame-000000.png", "frame-000001.png", "frame-000002.png"]
    assert (tmp_path / "episode-000004" / ".complete").exists()
    decoded = imagecodecs.png_decode(paths[2].read_bytes())
    assert decoded.dtype == np.uint16 and decoded.shape == (64, 96)
    np.testing.assert_array_equal(decoded, render_depth(depth_scene(5), 96, 64, 4, 2))
