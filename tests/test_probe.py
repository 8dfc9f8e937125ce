"""robovid.probe: the reference's info dicts (same keys and types), plus robovid's encoder settings."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import EpisodeVideo

from robovid.errors import VideoFormatError
from robovid.probe import get_audio_info, get_video_duration_in_s, get_video_info, get_video_pixel_channels
from robovid.settings import EncoderSettings

REFERENCE_VIDEO_KEYS = {
    "video.height",
    "video.width",
    "video.codec",
    "video.pix_fmt",
    "video.is_depth_map",
    "is_depth_map",
    "video.fps",
    "video.channels",
    "has_audio",
}
ENCODER_KEYS = {
    "video.g",
    "video.crf",
    "video.preset",
    "video.fast_decode",
    "video.extra_options",
    "video.video_backend",
}
REFERENCE_AUDIO_KEYS = {
    "audio.channels",
    "audio.codec",
    "audio.bit_rate",
    "audio.sample_rate",
    "audio.bit_depth",
    "audio.channel_layout",
    "has_audio",
}
AUDIO_RATE = 48000


def write_video_with_audio(path: Path, num_frames: int = 10, fps: int = 30) -> None:
    """An MP4 with an H.264 video track and an AAC stereo audio track, written by PyAV."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        for i in range(num_frames):
            rgb = np.full((48, 64, 3), 10 * i, dtype=np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        samples_per_frame = 1024
        for i in range(AUDIO_RATE * num_frames // fps // samples_per_frame + 1):
            tone = np.zeros((2, samples_per_frame), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            frame.pts = i * samples_per_frame
            frame.time_base = Fraction(1, AUDIO_RATE)
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


@pytest.mark.parametrize("vcodec", ["libsvtav1", "h264", "hevc"])
def test_video_info_has_the_reference_keys_plus_the_encoder_settings(episode_video: EpisodeVideo, vcodec: str) -> None:
    info = get_video_info(episode_video(0, vcodec=vcodec))
    settings = EncoderSettings(vcodec=vcodec)

    assert set(info) == REFERENCE_VIDEO_KEYS | ENCODER_KEYS
    assert info["video.width"] == 64
    assert info["video.height"] == 48
    assert info["video.codec"] == {"libsvtav1": "av1", "h264": "h264", "hevc": "hevc"}[vcodec]
    assert info["video.pix_fmt"] == "yuv420p"
    assert info["video.is_depth_map"] is False
    assert type(info["video.fps"]) is int
    assert info["video.fps"] == 30
    assert info["video.channels"] == 3
    assert info["has_audio"] is False
    assert info["video.g"] == settings.g == 2
    assert info["video.crf"] == settings.crf == 30
    assert info["video.preset"] == settings.effective_preset
    assert info["video.fast_decode"] == 0


def test_video_info_of_a_file_robovid_did_not_write_has_only_the_reference_keys(tmp_path: Path) -> None:
    video = tmp_path / "foreign.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode(None))

    info = get_video_info(video)

    assert set(info) == REFERENCE_VIDEO_KEYS
    assert info["video.fps"] == 15


def test_a_file_with_audio_reports_the_audio_keys(tmp_path: Path) -> None:
    video = tmp_path / "with audio.mp4"
    write_video_with_audio(video)

    info = get_video_info(video)
    audio = get_audio_info(video)

    assert set(audio) == REFERENCE_AUDIO_KEYS
    assert set(info) == REFERENCE_VIDEO_KEYS | REFERENCE_AUDIO_KEYS
    assert info["has_audio"] is True
    assert info["audio.codec"] == "aac"
    assert info["audio.channels"] == 2
    assert info["audio.channel_layout"] == "stereo"
    assert info["audio.sample_rate"] == AUDIO_RATE
    assert info["video.codec"] == "h264"
    assert info["video.fps"] == 30


def test_audio_info_of_a_silent_video_is_only_has_audio_false(episode_video: EpisodeVideo) -> None:
    assert get_audio_info(episode_video(0)) == {"has_audio": False}


@pytest.mark.parametrize(
    ("pix_fmt", "channels"),
    [
        ("gray", 1),
        ("gray16le", 1),
        ("rgba", 4),
        ("yuva420p", 4),
        ("rgb24", 3),
        ("yuv420p", 3),
        ("yuv444p", 3),
    ],
)
def test_pixel_channels(pix_fmt: str, channels: int) -> None:
    assert get_video_pixel_channels(pix_fmt) == channels


def test_an_unknown_pixel_format_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="nv12"):
        get_video_pixel_channels("nv12")


@pytest.mark.parametrize(("num_frames", "fps"), [(6, 30), (30, 15)])
def test_duration_is_frames_over_fps(episode_video: EpisodeVideo, num_frames: int, fps: int) -> None:
    duration_s = get_video_duration_in_s(episode_video(0, num_frames=num_frames, fps=fps))
    assert duration_s == pytest.approx(num_frames / fps, abs=1e-6)


def test_a_file_that_is_not_a_video_raises_video_format_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 100)
    for probe in (get_video_info, get_audio_info, get_video_duration_in_s):
        with pytest.raises(VideoFormatError, match=r"notes\.mp4"):
            probe(text)


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        get_video_info(tmp_path / "absent.mp4")


def test_an_audio_only_file_has_no_video_info_and_no_duration(tmp_path: Path) -> None:
    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, 0, Fraction(1, AUDIO_RATE)
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))

    assert get_video_info(sound) == {}
    assert get_audio_info(sound)["audio.channels"] == 1
    with pytest.raises(VideoFormatError, match="no video stream"):
        get_video_duration_in_s(sound)


def test_duration_of_an_appended_chunk_covers_every_episode(tmp_path: Path, episode_video: EpisodeVideo) -> None:
    from robovid.append import append_video

    chunk = tmp_path / "chunk.mp4"
    for source in (0, 1, 2):
        append_video(chunk, episode_video(source))
    assert get_video_duration_in_s(chunk) == pytest.approx(3 * 6 / 30, abs=1e-6)
