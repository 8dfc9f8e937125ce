"""Frame fingerprints and the tile check of the verify stage, calibrated on real encodes.

Both sides are shown on real encodes through the library's own path (PNGs -> reader thread
-> encoder, fingerprints taken there; then ``verify_video`` decodes every frame): faithful
encodes (libsvtav1 at robovid's default, h264 and hevc at theirs, natural high-motion
content at crf 30) never fail, and SVT-AV1 preset 12's stale blocks always do, at a tile
the independent analysis of :mod:`robovid.fidelity` also finds stale.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import FidelityEncode

from robovid import fidelity
from robovid.encode import encode_frames
from robovid.errors import FrameMismatchError
from robovid.fingerprint import OFF_LEVELS, TILE_PX, Fingerprint, compare, fingerprint, tile_means
from robovid.settings import EncoderSettings
from robovid.synthetic import write_episode
from robovid.verify import verify_video

FAITHFUL = {
    "libsvtav1-default": EncoderSettings(),
    "h264-default": EncoderSettings(vcodec="h264"),
    "hevc-default": EncoderSettings(vcodec="hevc"),
    "h264-yuv444p": EncoderSettings(vcodec="h264", pix_fmt="yuv444p"),
}


def _frame(rgb: np.ndarray, pix_fmt: str = "yuv420p") -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)


def decoded_fingerprints(video: Path) -> list[Fingerprint]:
    with av.open(str(video)) as container:
        return [fingerprint(f) for f in container.decode(video=0)]


def test_tile_means_are_the_rounded_means_of_each_tile_partial_ones_included() -> None:
    plane = np.random.default_rng(1).integers(0, 256, (21, 35), dtype=np.uint8)
    means = tile_means(plane)
    assert means.shape == (3, 5)
    for row in range(3):
        for col in range(5):
            tile = plane[row * TILE_PX : (row + 1) * TILE_PX, col * TILE_PX : (col + 1) * TILE_PX]
            assert abs(int(means[row, col]) - tile.mean()) <= 0.5


def test_a_640x480_fingerprint_is_a_few_kilobytes_taken_from_the_yuv_planes() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    fp = fingerprint(_frame(rgb))
    assert [p.shape for p in fp.planes] == [(60, 80), (30, 40), (30, 40)]
    assert fp.size_bytes == 7200
    assert fp.scales == ((1, 1), (2, 2), (2, 2))
    assert [p.shape for p in fingerprint(_frame(rgb, "yuv444p")).planes] == [(60, 80)] * 3


def test_a_tile_showing_the_previous_frame_is_stale_and_named_by_its_pixels() -> None:
    clip = fidelity.patch16_clip(3)
    own, previous = _frame(clip.frame(2)), _frame(clip.frame(1))
    decoded = clip.frame(2)
    (patch,) = clip.regions(2)
    patch.of(decoded)[...] = patch.of(clip.frame(1))
    mismatch = compare(2, fingerprint(_frame(decoded)), fingerprint(own), fingerprint(previous))
    assert mismatch is not None and mismatch.kind == "stale" and mismatch.frame == 2
    assert patch.x <= mismatch.x and mismatch.x + mismatch.w <= patch.x + patch.w
    assert patch.y <= mismatch.y and mismatch.y + mismatch.h <= patch.y + patch.h
    assert "previous frame" in mismatch.describe()
    assert compare(2, fingerprint(own), fingerprint(own), fingerprint(previous)) is None


def test_a_tile_far_off_its_own_frame_fails_even_without_a_previous_frame() -> None:
    rgb = fidelity.pattern_clip(1).frame(0)
    broken = rgb.copy()
    broken[40:56, 200:216] = 255 - broken[40:56, 200:216]
    mismatch = compare(0, fingerprint(_frame(broken)), fingerprint(_frame(rgb)), None)
    assert mismatch is not None and mismatch.kind == "off"
    assert 192 <= mismatch.x <= 216 and 32 <= mismatch.y <= 56
    assert abs(mismatch.decoded - mismatch.own) >= OFF_LEVELS


def _high_motion_clips() -> list[fidelity.Clip]:
    return [
        *fidelity.suite(12, 6),
        fidelity.pan_clip(640, 480, 12, seed=4, speed=(16, 9)),
        fidelity.pan_clip(1280, 720, 6, seed=5, speed=(24, 12)),
    ]


@pytest.mark.parametrize("codec", list(FAITHFUL))
def test_faithful_encodes_pass_the_tile_check_on_every_frame(codec: str, fidelity_encode: FidelityEncode) -> None:
    for clip in _high_motion_clips():
        video, result = fidelity_encode(clip, FAITHFUL[codec])
        assert len(result.fingerprints) == clip.num_frames
        verify_video(video, clip.num_frames, {}, fingerprints=result.fingerprints)


def test_faithful_encode_of_the_synthetic_camera_passes_the_tile_check(tmp_path: Path) -> None:
    frames = write_episode(tmp_path / "episode-000000", 0, 24, 640, 480, seed=11)
    result = encode_frames(frames, tmp_path / "camera.mp4", 30, EncoderSettings(), fingerprints=True)
    verify_video(tmp_path / "camera.mp4", 24, {}, fingerprints=result.fingerprints)


@pytest.mark.parametrize("name", ["edges-640x480", "fiducial-640x480", "patch16-640x480"])
def test_preset_12_stale_blocks_fail_the_tile_check_where_the_analysis_finds_them(
    name: str, fidelity_encode: FidelityEncode
) -> None:
    clip = {c.name: c for c in fidelity.suite(12, 6)}[name]
    video, result = fidelity_encode(clip, EncoderSettings(preset=12))
    report = fidelity.analyse_video(clip, video)
    assert report.stale_count >= 1, "preset 12 left no stale block in this clip; the test proves nothing"
    with pytest.raises(FrameMismatchError) as caught:
        verify_video(video, clip.num_frames, {}, fingerprints=result.fingerprints)
    assert caught.value.kind == "stale"
    assert caught.value.frame <= report.stale_frames[0]
    sources = result.fingerprints
    for i, fp in enumerate(decoded_fingerprints(video)):
        stale_regions = [v.region for v in report.verdicts if v.stale and v.frame == i]
        if stale_regions:
            mismatch = compare(i, fp, sources[i], sources[i - 1])
            assert mismatch is not None, f"frame {i}: the tile check let it through\n{report.describe()}"
            assert any(_overlaps(r, mismatch.rect()) for r in stale_regions), (i, mismatch, stale_regions)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # hevc at 720p: minutes per clip on a loaded 2-core machine
@pytest.mark.parametrize("codec", list(FAITHFUL))
def test_faithful_encodes_of_the_whole_150_frame_suite_pass_the_tile_check(
    codec: str, fidelity_encode: FidelityEncode
) -> None:
    for clip in [*fidelity.suite(), fidelity.pan_clip(640, 480, 150, seed=4, speed=(16, 9))]:
        video, result = fidelity_encode(clip, FAITHFUL[codec])
        verify_video(video, clip.num_frames, {}, fingerprints=result.fingerprints)


def _overlaps(region: fidelity.Region, tile: dict[str, int]) -> bool:
    return (
        region.x < tile["x"] + tile["w"]
        and tile["x"] < region.x + region.w
        and region.y < tile["y"] + tile["h"]
        and tile["y"] < region.y + region.h
    )
