"""The fidelity suite: every decoded frame shows its own source frame, never the previous one.

The clips (:mod:`robovid.fidelity`) put abrupt changes at every superblock position, in
small blinking patches, a fiducial strip, moving objects, a pan and a small moving pattern.
CI runs each for a few frames through the real library encode (PNGs -> ``encode_frames``)
at default settings, and proves the analysis can fail by running the same clips at
SVT-AV1 preset 12, which leaves stale blocks. ``make stress`` runs the 150-frame suite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FidelityEncode

from robovid import fidelity
from robovid.settings import EncoderSettings
from robovid_watch.config import CODEC_DEFAULTS, SERVICE_VCODEC

CI_FRAMES, CI_HD_FRAMES = 12, 6
CI_SUITE = {clip.name: clip for clip in fidelity.suite(CI_FRAMES, CI_HD_FRAMES)}
SERVICE_CRF, SERVICE_PRESET = CODEC_DEFAULTS[SERVICE_VCODEC]
CODECS = {
    "libsvtav1": EncoderSettings(),
    "h264": EncoderSettings(vcodec="h264"),
    "hevc": EncoderSettings(vcodec="hevc"),
    "service": EncoderSettings(vcodec=SERVICE_VCODEC, crf=SERVICE_CRF, preset=SERVICE_PRESET, threads=1),
}
"""The library's defaults per codec, and robovid-watch's default (h264 veryfast crf 22 with one thread)."""


def encode_and_analyse(
    fidelity_encode: FidelityEncode, clip: fidelity.Clip, settings: EncoderSettings
) -> fidelity.ClipReport:
    """The clip written as PNGs, encoded by the library, decoded and judged region by region."""
    video, _ = fidelity_encode(clip, settings)
    return fidelity.analyse_video(clip, video)


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("name", list(CI_SUITE))
def test_every_region_of_every_frame_decodes_to_its_own_frame_at_default_settings(
    name: str, codec: str, fidelity_encode: FidelityEncode
) -> None:
    clip = CI_SUITE[name]
    report = encode_and_analyse(fidelity_encode, clip, CODECS[codec])
    assert report.decoded_frames == clip.num_frames
    assert report.verdicts, f"{name}: no region was judged; the clip tests nothing"
    assert report.stale_count == 0, report.describe()


@pytest.mark.parametrize("name", ["edges-640x480", "fiducial-640x480"])
def test_the_suite_finds_the_stale_blocks_svtav1_preset_12_leaves(name: str, fidelity_encode: FidelityEncode) -> None:
    report = encode_and_analyse(fidelity_encode, CI_SUITE[name], EncoderSettings(preset=12))
    assert report.stale_count >= 1, report.describe()
    assert {v.region.kind for v in report.verdicts if v.stale} <= {"blink", "fiducial"}


@pytest.mark.slow
@pytest.mark.timeout(3600)  # hevc at 720p: minutes per clip on a loaded 2-core machine
@pytest.mark.parametrize("codec", list(CODECS))
def test_the_whole_150_frame_suite_has_no_stale_frame_at_default_settings(
    codec: str, fidelity_encode: FidelityEncode
) -> None:
    reports = [encode_and_analyse(fidelity_encode, clip, CODECS[codec]) for clip in fidelity.suite()]
    assert sum(r.stale_count for r in reports) == 0, "\n".join(r.describe() for r in reports if r.stale_count)


def test_a_repeated_frame_is_stale_exactly_where_its_content_changed() -> None:
    clip = fidelity.edges_clip(640, 480, 6)
    decoded = [clip.frame(i) for i in range(6)]
    decoded[3] = decoded[2].copy()
    report = fidelity.analyse(clip, decoded)
    assert report.stale_frames == [3]
    assert {v.region.kind for v in report.verdicts if v.stale} == {"blink", "fiducial"}


def test_a_region_pasted_from_the_previous_frame_is_stale_and_a_missing_frame_counts() -> None:
    clip = fidelity.patch16_clip(5)
    decoded = [clip.frame(i) for i in range(4)]  # frame 4 missing
    (patch,) = clip.regions(1)
    patch.of(decoded[2])[...] = patch.of(decoded[1])
    report = fidelity.analyse(clip, decoded)
    assert report.stale_frames == [2, 4]
    assert report.decoded_frames == 4


def test_a_faithful_copy_is_never_stale_though_it_is_noisy() -> None:
    clip = fidelity.objects_clip(8)
    rng = np.random.default_rng(0)
    noisy = [np.clip(clip.frame(i) + rng.normal(0, 6, (480, 640, 3)), 0, 255).astype(np.uint8) for i in range(8)]
    report = fidelity.analyse(clip, noisy)
    assert report.stale_count == 0
    assert {v.region.kind for v in report.verdicts} == {"object"}


@pytest.mark.parametrize(("width", "height"), [(640, 480), (1280, 720)])
def test_blinking_patches_cover_every_superblock_position_and_size(width: int, height: int) -> None:
    clip = fidelity.edges_clip(width, height, 2)
    regions = clip.regions(1)
    sb = fidelity.SUPERBLOCK_PX
    last_row = (height // sb) * sb  # 448 of 480, 704 of 720: a partial row of superblocks
    assert last_row < height
    blinks = [r for r in regions if r.kind == "blink"]
    for size in fidelity.PATCH_SIZES:
        mine = [r for r in blinks if r.w == size]
        assert any(r.y + r.h <= sb for r in mine), f"{size} px: none in the top row"
        assert any(sb <= r.y and r.y + r.h <= last_row and sb <= r.x < width - sb for r in mine), "none inside"
        assert any(r.y + r.h > last_row for r in mine), f"{size} px: none in the partial bottom row"
        assert any(r.x >= width - sb for r in mine), f"{size} px: none in the right column"
    fiducial = [r for r in regions if r.kind == "fiducial"]
    assert len(fiducial) == fidelity.FIDUCIAL_CELLS
    assert all(r.y >= last_row or r.y + r.h == height for r in fiducial)
    assert not _overlapping(regions)


def test_the_fiducial_sits_in_rows_456_to_471_at_480p_and_carries_the_frame_index() -> None:
    clip = fidelity.fiducial_clip(40)
    cells = clip.regions(1)
    assert {(r.y, r.h) for r in cells} == {(456, 16)}
    frame = clip.frame(37)
    bits = "".join("1" if r.of(frame).mean() > 128 else "0" for r in sorted(cells, key=lambda r: r.x))
    assert int(bits, 2) == 37


def test_clips_render_the_same_pixels_every_time_and_change_between_frames() -> None:
    for clip in fidelity.suite(3, 3, 3):
        frames = [clip.frame(i) for i in range(3)]
        assert frames[2].shape == (clip.height, clip.width, 3)
        assert np.array_equal(frames[2], clip.frame(2))
        report = fidelity.analyse(clip, frames)
        assert {v.frame for v in report.verdicts} == {1, 2}, f"{clip.name}: a frame where nothing is judged"
        assert report.stale_count == 0


def test_write_clip_writes_numbered_pngs_then_the_marker(tmp_path: Path) -> None:
    paths = fidelity.write_clip(fidelity.pattern_clip(3), tmp_path / "episode-000000")
    assert [p.name for p in paths] == ["frame-000000.png", "frame-000001.png", "frame-000002.png"]
    assert (tmp_path / "episode-000000" / ".complete").exists()


def _overlapping(regions: list[fidelity.Region]) -> list[tuple[str, str]]:
    pairs = []
    for i, a in enumerate(regions):
        for b in regions[i + 1 :]:
            if a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h:
                pairs.append((a.name, b.name))
    return pairs
