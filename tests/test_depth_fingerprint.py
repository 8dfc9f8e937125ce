"""Depth fingerprints: an exact check of every sample, with the failing tile located and classified."""

from __future__ import annotations

import av
import numpy as np
import pytest

from robovid.depth import depth_frame
from robovid.depth_fingerprint import compare_depth, depth_fingerprint, frame_depth_fingerprint
from robovid.fingerprint import TILE_PX
from robovid.synthetic_depth import depth_scene, render_depth


def _frames(n: int = 3) -> list[np.ndarray]:
    scene = depth_scene(4)
    return [render_depth(scene, 96, 64, 0, i * 10) for i in range(n)]


def test_tile_means_are_the_rounded_means_of_each_tile_partial_ones_included() -> None:
    samples = np.random.default_rng(1).integers(0, 65536, (21, 35), dtype=np.uint16)
    fp = depth_fingerprint(samples)
    assert fp.tiles.shape == (3, 5) and fp.width == 35 and fp.height == 21
    for row in range(3):
        for col in range(5):
            tile = samples[row * TILE_PX : (row + 1) * TILE_PX, col * TILE_PX : (col + 1) * TILE_PX]
            assert abs(int(fp.tiles[row, col]) - tile.mean()) <= 0.5


def test_the_fingerprint_of_a_frame_is_that_of_its_samples_whatever_the_row_padding() -> None:
    samples = _frames(1)[0][:, :90]  # a strided view
    frame = depth_frame(np.ascontiguousarray(samples))
    from_frame, from_array = frame_depth_fingerprint(frame), depth_fingerprint(samples)
    assert from_frame.crc32 == from_array.crc32
    np.testing.assert_array_equal(from_frame.tiles, from_array.tiles)
    assert depth_fingerprint(samples).size_bytes == 8 * 12 * 2 + 4


def test_equal_samples_pass_and_one_changed_sample_fails_as_off_at_its_tile() -> None:
    a, b, _ = _frames()
    own, previous = depth_fingerprint(b), depth_fingerprint(a)
    assert compare_depth(1, depth_fingerprint(b.copy()), own, previous) is None
    wrong = b.copy()
    wrong[37, 50] += 300
    mismatch = compare_depth(1, depth_fingerprint(wrong), own, previous)
    assert mismatch is not None and mismatch.kind == "off" and mismatch.plane == "depth"
    assert (mismatch.x, mismatch.y, mismatch.w, mismatch.h) == (48, 32, 8, 8)


def test_a_change_too_small_to_move_a_tile_mean_is_still_caught() -> None:
    _, b, _ = _frames()
    wrong = b.copy()
    wrong[5, 5] ^= 1
    mismatch = compare_depth(0, depth_fingerprint(wrong), depth_fingerprint(b), None)
    assert mismatch is not None and mismatch.kind == "off"


def test_a_frame_showing_the_previous_frames_content_is_stale() -> None:
    a, b, _ = _frames()
    mismatch = compare_depth(1, depth_fingerprint(a), depth_fingerprint(b), depth_fingerprint(a))
    assert mismatch is not None and mismatch.kind == "stale"
    assert "previous frame's content" in mismatch.describe()


def test_only_uint16_planes_have_depth_fingerprints() -> None:
    with pytest.raises(ValueError, match="uint16"):
        depth_fingerprint(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="Not a depth frame"):
        frame_depth_fingerprint(av.VideoFrame(16, 16, "yuv420p"))
