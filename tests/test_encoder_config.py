"""Encoder configuration objects: validated once, used by encode_video_frames, given back by get_video_info.

LeRobot's own tests of these objects run unchanged in ``tests/ported``; these prove what
robovid adds or does differently.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import av
import pytest
from videocheck import pyav_indices, pyav_seek_indices

from robovid import (
    InvalidEncoderOptionError,
    MismatchedVideosError,
    RGBEncoderConfig,
    append_video,
    concatenate_video_files,
    encode_video_frames,
    get_video_info,
)
from robovid.encoders import in_this_build, spec_of
from robovid.hardware import probe_encoder
from robovid.settings import DEFAULT_SVTAV1_PRESET, EncoderSettings
from robovid.synthetic import write_episode

FPS = 30


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames") / "episode-000003"
    write_episode(folder, 3, 24, 64, 48, seed=3)
    return folder


def test_fast_decode_out_of_range_is_refused_not_clamped() -> None:
    """LeRobot clamps fast_decode=100 to 2; a typo should not silently become another setting."""
    for value in (100, -5, 3):
        with pytest.raises(InvalidEncoderOptionError, match=r"Invalid fast_decode .*Supported values are 0, 1, 2"):
            RGBEncoderConfig(fast_decode=value)


def test_the_default_svtav1_preset_is_robovids_faithful_one() -> None:
    """LeRobot defaults to preset 12; robovid to the fastest preset with no stale frames on its fidelity suite."""
    config = RGBEncoderConfig()
    assert config.preset == DEFAULT_SVTAV1_PRESET != 12
    assert config.get_codec_options()["preset"] == DEFAULT_SVTAV1_PRESET
    assert RGBEncoderConfig(vcodec="h264").preset is None


def test_extra_options_cannot_bring_back_b_frames_or_open_gops(tmp_path: Path, frames_dir: Path) -> None:
    config = RGBEncoderConfig(vcodec="hevc", g=4, extra_options={"bf": 3, "x265-params": "no-open-gop=0:aq-mode=1"})
    options = config.get_codec_options()
    assert options["bf"] == 0
    assert options["x265-params"] == "no-open-gop=1:aq-mode=1:log-level=error:bframes=0"

    video = tmp_path / "hevc.mp4"
    encode_video_frames(frames_dir, video, FPS, video_encoder=config)
    queries = random.Random(4).choices(range(24), k=12)
    assert pyav_indices(video) == [(3, n) for n in range(24)]
    assert pyav_seek_indices(video, queries) == [(3, n) for n in queries]


def packets(video: Path) -> tuple[bool, list[int]]:
    """Whether any packet's pts differs from its dts (B-frames reorder), and the keyframe packets' numbers."""
    with av.open(str(video)) as container:
        demuxed = [(p.pts, p.dts, p.is_keyframe) for p in container.demux(video=0) if p.size]
    return any(pts != dts for pts, dts, _ in demuxed), [n for n, (_, _, key) in enumerate(demuxed) if key]


@pytest.mark.parametrize(
    ("vcodec", "extra_options"),
    [
        ("h264", {"x264-params": "bframes=3:open-gop=1"}),  # x264 parses its params after bf=0
        ("h264", {"x264opts": "bframes=3:open-gop=1"}),
        ("libsvtav1", {"svtav1-params": "irefresh-type=1"}),  # forward keyframes: an open GOP, no sync sample
    ],
)
def test_encoder_params_strings_cannot_bring_back_b_frames_or_open_gops(
    tmp_path: Path, frames_dir: Path, vcodec: str, extra_options: dict[str, str]
) -> None:
    config = RGBEncoderConfig(vcodec=vcodec, g=4, extra_options=extra_options)
    video = tmp_path / "out.mp4"
    encode_video_frames(frames_dir, video, FPS, video_encoder=config)

    assert packets(video) == (False, [0, 4, 8, 12, 16, 20])  # what g=4 and the file's record say
    queries = random.Random(5).choices(range(24), k=12)
    assert pyav_seek_indices(video, queries) == [(3, n) for n in queries]


@pytest.mark.parametrize(
    ("vcodec", "extra_options", "field"),
    [
        ("libsvtav1", {"svtav1-params": "preset=12"}, "preset"),  # a stale-content preset, recorded as 6
        ("libsvtav1", {"svtav1-params": "tune=0:keyint=60"}, "g"),
        ("libsvtav1", {"svtav1-params": "crf=50"}, "crf"),
        ("libsvtav1", {"svtav1-params": "fast-decode=2"}, "fast_decode"),
        ("h264", {"x264-params": "keyint=30"}, "g"),
        ("h264", {"x264opts": "qp=40"}, "crf"),
        ("hevc", {"x265-params": "aq-mode=1:crf=40"}, "crf"),
    ],
)
def test_encoder_params_strings_that_set_a_structured_field_are_refused(
    vcodec: str, extra_options: dict[str, str], field: str
) -> None:
    """The file records the structured fields; a params string overriding one would make that record false."""
    with pytest.raises(InvalidEncoderOptionError, match=f"set {field} instead") as error:
        RGBEncoderConfig(vcodec=vcodec, extra_options=extra_options)
    assert error.value.option == next(iter(extra_options))


def test_an_option_ffmpeg_does_not_use_is_refused_and_nothing_is_written(tmp_path: Path, frames_dir: Path) -> None:
    config = RGBEncoderConfig(extra_options={"totally_made_up_option": "value"})  # kept, as LeRobot keeps it
    video = tmp_path / "out.mp4"

    with pytest.raises(InvalidEncoderOptionError, match="totally_made_up_option") as error:
        encode_video_frames(frames_dir, video, FPS, video_encoder=config)

    assert "libsvtav1 did not use" in str(error.value)
    assert not video.exists()
    assert list(tmp_path.iterdir()) == []


CONFIGS = {
    "libsvtav1": RGBEncoderConfig(g=4, crf=25, preset=10, fast_decode=1),
    "h264 444": RGBEncoderConfig(vcodec="h264", pix_fmt="yuv444p", g=6, crf=23.5, preset="slow"),
    "hevc extra": RGBEncoderConfig(vcodec="hevc", crf=28, extra_options={"x265-params": "aq-mode=1"}),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_config_comes_back_from_the_file_alone(tmp_path: Path, frames_dir: Path, name: str) -> None:
    config = CONFIGS[name]
    video = tmp_path / "out.mp4"
    encode_video_frames(frames_dir, video, FPS, video_encoder=config, encoder_threads=1)

    info = get_video_info(video)

    assert RGBEncoderConfig.from_video_info(info) == config
    assert info["is_depth_map"] is False


def test_g_and_crf_none_are_recorded_but_come_back_as_the_defaults_as_in_lerobot(
    tmp_path: Path, frames_dir: Path
) -> None:
    """README, Differences: from_video_info takes None for "use the default", as LeRobot's does and documents (its
    merge writes null where the sources disagree); the file records None, so the exact config is one step away."""
    config = RGBEncoderConfig(vcodec="h264", g=None, crf=None)
    video = tmp_path / "out.mp4"
    encode_video_frames(frames_dir, video, FPS, video_encoder=config)

    info = get_video_info(video)

    assert (info["video.g"], info["video.crf"]) == (None, None)
    rebuilt = RGBEncoderConfig.from_video_info(info)
    assert (rebuilt.g, rebuilt.crf) == (RGBEncoderConfig.g, RGBEncoderConfig.crf) == (2, 30)
    assert dataclasses.replace(rebuilt, g=info["video.g"], crf=info["video.crf"]) == config


def test_settings_survive_appends_and_concatenation(tmp_path: Path, frames_dir: Path) -> None:
    """The robovid side of LeRobot's persistence tests: a chunk grown episode by episode keeps its settings."""
    config = RGBEncoderConfig(g=4, crf=28, preset=10)
    episode = tmp_path / "episode.mp4"
    encode_video_frames(frames_dir, episode, FPS, video_encoder=config)
    chunk = tmp_path / "chunk.mp4"
    for _ in range(3):
        append_video(chunk, episode)
    joined = tmp_path / "joined.mp4"
    concatenate_video_files([chunk, episode], joined)

    for path in (chunk, joined):
        assert RGBEncoderConfig.from_video_info(get_video_info(path)) == config


def test_episodes_encoded_with_other_recorded_settings_are_not_joined(tmp_path: Path, frames_dir: Path) -> None:
    """SVT-AV1's stream header carries neither crf nor preset, so these streams would join by stream copy; the
    joined file would then record the first file's settings for frames encoded with others."""
    first, other = tmp_path / "first.mp4", tmp_path / "other.mp4"
    encode_video_frames(frames_dir, first, FPS, video_encoder=RGBEncoderConfig(g=4, crf=28, preset=10))
    encode_video_frames(frames_dir, other, FPS, video_encoder=RGBEncoderConfig(g=4, crf=40, preset=8))
    chunk = tmp_path / "chunk.mp4"
    append_video(chunk, first)
    before = chunk.read_bytes()

    with pytest.raises(MismatchedVideosError, match=r"recorded crf \(28 vs 40\), recorded preset \(10 vs 8\)"):
        append_video(chunk, other)
    with pytest.raises(MismatchedVideosError, match="recorded crf"):
        concatenate_video_files([first, other], tmp_path / "joined.mp4")

    assert chunk.read_bytes() == before and not (tmp_path / "joined.mp4").exists()
    assert RGBEncoderConfig.from_video_info(get_video_info(chunk)) == RGBEncoderConfig(g=4, crf=28, preset=10)


def test_what_the_file_records_wins_over_a_config_passed_to_get_video_info(tmp_path: Path, frames_dir: Path) -> None:
    video = tmp_path / "out.mp4"
    encode_video_frames(frames_dir, video, FPS, video_encoder=RGBEncoderConfig(g=4, crf=25))

    info = get_video_info(video, video_encoder=RGBEncoderConfig(g=8, crf=40, extra_options={"qp": 20}))

    assert (info["video.g"], info["video.crf"]) == (4, 25)
    assert info["video.extra_options"] == {}  # recorded as empty: the passed config's guess does not fill it


def recorded_threads(video: Path) -> object:
    with av.open(str(video)) as container:
        recorded = EncoderSettings.from_tag(container.metadata.get("comment"))
    assert recorded is not None
    return recorded["threads"]


def test_lerobots_positional_video_encoder_none_means_the_defaults(tmp_path: Path, frames_dir: Path) -> None:
    """LeRobot's order is (imgs_dir, video_path, fps, video_encoder=None, encoder_threads=None): a caller passing its
    optional config positionally passes None; robovid took it for the seed era's vcodec and refused it."""
    video = tmp_path / "defaults.mp4"
    encode_video_frames(frames_dir, video, FPS, None, 1)

    assert RGBEncoderConfig.from_video_info(get_video_info(video)) == RGBEncoderConfig()
    assert recorded_threads(video) == 1


def test_the_seed_signature_and_the_config_signature_both_encode(tmp_path: Path, frames_dir: Path) -> None:
    positional = tmp_path / "positional.mp4"
    encode_video_frames(frames_dir, positional, FPS, "h264", "yuv420p", 4, 28)
    lerobot_04 = tmp_path / "lerobot-0.4.mp4"  # LeRobot 0.4.x: encoder_threads right after preset
    encode_video_frames(frames_dir, lerobot_04, FPS, "h264", "yuv420p", 4, 28, 0, None, False, None, 2)
    config_positional = tmp_path / "config-positional.mp4"
    encode_video_frames(frames_dir, config_positional, FPS, RGBEncoderConfig(vcodec="h264", g=4, crf=28), 1)

    for path in (positional, lerobot_04, config_positional):
        info = get_video_info(path)
        assert (info["video.codec"], info["video.g"], info["video.crf"]) == ("h264", 4, 28)
        assert pyav_indices(path) == [(3, n) for n in range(24)]
    assert [recorded_threads(p) for p in (positional, lerobot_04, config_positional)] == [None, 2, 1]


def test_encoder_threads_given_twice_is_refused(tmp_path: Path, frames_dir: Path) -> None:
    with pytest.raises(TypeError, match="encoder_threads twice"):
        encode_video_frames(frames_dir, tmp_path / "x.mp4", FPS, RGBEncoderConfig(), 1, encoder_threads=2)
    assert list(tmp_path.iterdir()) == []


def test_a_config_and_separate_options_together_are_refused(tmp_path: Path, frames_dir: Path) -> None:
    with pytest.raises(TypeError, match="video_encoder"):
        encode_video_frames(frames_dir, tmp_path / "x.mp4", FPS, vcodec="h264", video_encoder=RGBEncoderConfig())
    assert list(tmp_path.iterdir()) == []


def test_a_hardware_encoder_that_cannot_open_here_is_refused_before_reading_frames(
    tmp_path: Path, frames_dir: Path
) -> None:
    unusable = [
        v
        for v in ("h264_nvenc", "h264_qsv", "h264_v4l2m2m", "h264_vaapi", "h264_videotoolbox")
        if in_this_build(spec_of(v).ffmpeg_name) and not probe_encoder(v).available
    ]
    if not unusable:
        pytest.skip("every hardware encoder compiled in here opens: nothing to refuse")
    vcodec = unusable[0]
    config = RGBEncoderConfig(vcodec=vcodec)  # built: the options are valid for this encoder

    with pytest.raises(InvalidEncoderOptionError, match=vcodec) as error:
        encode_video_frames(frames_dir, tmp_path / "out.mp4", FPS, video_encoder=config)

    assert probe_encoder(vcodec).reason in str(error.value)
    assert "vcodec='auto'" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_a_hardware_encoder_taking_only_nv12_gets_nv12_for_yuv420p() -> None:
    if not in_this_build("h264_qsv"):
        pytest.skip("h264_qsv is not in this PyAV build")
    assert RGBEncoderConfig(vcodec="h264_qsv").pix_fmt == "nv12"
    with pytest.raises(InvalidEncoderOptionError, match="pix_fmt"):
        RGBEncoderConfig(vcodec="h264_qsv", pix_fmt="yuv444p")
