"""Hardware encoders: the probe, ``vcodec="auto"`` and each encoder's option mapping, with real PyAV.

No GPU, VAAPI device or V4L2 encoder exists on the machines these tests run on, so no
hardware encoder is expected to open here; every test still holds where one does (the
expectations follow from the probe, never from a list of what this machine lacks).
``benchmarks/bench_hardware.py`` is what a person with such a device runs.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import cast

import av
import numpy as np
import pytest
from structlog.testing import capture_logs

from robovid.encoder_config import RGBEncoderConfig
from robovid.encoders import ENCODERS, HW_VIDEO_CODECS, as_strings, codec_options, in_this_build, spec_of
from robovid.hardware import (
    FALLBACK_VCODEC,
    probe_encoder,
    probe_hardware_encoders,
    random_access_problem,
    resolve_auto,
)


def encode_packets(encoder: str, options: dict[str, str], frames: int = 12) -> list[tuple[int, int, bool]]:
    """(pts, dts, keyframe) of each packet of a small real encode, in decode order."""
    packets: list[tuple[int, int, bool]] = []
    with av.open(io.BytesIO(), "w", format="mp4") as container:
        stream = cast(av.video.stream.VideoStream, container.add_stream(encoder, rate=30, options=options))
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for index in range(frames):
            rgb = np.zeros((64, 64, 3), np.uint8)
            rgb[:, (index * 5) % 64 :] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 30)
            for packet in [*stream.encode(frame)]:
                packets.append((int(packet.pts or 0), int(packet.dts or 0), bool(packet.is_keyframe)))
                container.mux(packet)
        for packet in stream.encode(None):
            packets.append((int(packet.pts or 0), int(packet.dts or 0), bool(packet.is_keyframe)))
            container.mux(packet)
    return packets


@pytest.mark.parametrize("vcodec", HW_VIDEO_CODECS)
def test_each_hardware_encoder_is_probed_by_a_real_encode_and_says_why(vcodec: str) -> None:
    probe = probe_encoder(vcodec)
    ffmpeg_name = spec_of(vcodec).ffmpeg_name

    assert probe.vcodec == vcodec
    if not in_this_build(ffmpeg_name):
        assert not probe.available
        assert f"has no {ffmpeg_name} encoder" in probe.reason
    elif probe.available:
        assert "exact random access" in probe.reason
    else:  # compiled in, but no device or driver here: FFmpeg's own words are the reason
        assert probe.reason.startswith(f"{ffmpeg_name} did not open or encode: ")
        assert len(probe.reason) > len(f"{ffmpeg_name} did not open or encode: ") + 5


def test_the_probe_says_yes_for_an_encoder_that_works() -> None:
    for vcodec in ("libsvtav1", "h264", "hevc"):
        assert probe_encoder(vcodec).available, probe_encoder(vcodec).reason


def test_auto_picks_the_first_hardware_encoder_that_opens_else_libsvtav1_and_logs_every_reason() -> None:
    probes = probe_hardware_encoders()
    expected = next((p.vcodec for p in probes if p.available), FALLBACK_VCODEC)

    with capture_logs() as logs:
        chosen = resolve_auto()

    assert chosen == expected
    [event] = [e for e in logs if e["event"].startswith("vcodec_auto")]
    assert event["vcodec"] == chosen
    assert event["reason"]
    names = [p.vcodec for p in probes]
    tried = probes[: names.index(chosen)] if chosen in names else probes
    assert event["tried"] == {p.vcodec: p.reason for p in tried}
    if chosen == FALLBACK_VCODEC:
        assert event["event"] == "vcodec_auto_fallback"
        assert event["log_level"] == "warning"


def test_auto_stops_at_the_first_candidate_that_opens() -> None:
    """A software encoder last in the list stands for hardware that works: the same probe path says yes."""
    candidates = [*HW_VIDEO_CODECS, "hevc"]
    first_working = next(v for v in candidates if probe_encoder(v).available)

    with capture_logs() as logs:
        assert resolve_auto(candidates) == first_working

    [event] = [e for e in logs if e["event"] == "vcodec_auto_selected"]
    assert event["vcodec"] == first_working
    assert set(event["tried"]) == set(candidates[: candidates.index(first_working)])


def test_an_auto_config_is_resolved_when_built() -> None:
    config = RGBEncoderConfig(vcodec="auto")
    assert config.vcodec == resolve_auto()
    assert config.vcodec in ENCODERS


def test_b_frames_and_sparse_keyframes_fail_the_random_access_check() -> None:
    with_b_frames = encode_packets("libx264", {"bf": "2", "g": "12", "preset": "medium"}, frames=24)
    sparse = encode_packets("libx264", {"bf": "0", "g": "6"})
    right = encode_packets("libx264", {"bf": "0", "g": "2"})

    assert "reorders frames" in str(random_access_problem(with_b_frames, 12))
    assert "between keyframes" in str(random_access_problem(sparse, 2))
    assert random_access_problem(right, 2) is None


@pytest.mark.parametrize("vcodec", HW_VIDEO_CODECS)
def test_crf_maps_to_each_encoders_quality_knob_with_closed_gops_and_no_b_frames(vcodec: str) -> None:
    spec = spec_of(vcodec)
    options = codec_options(spec, g=2, crf=25, preset=None, fast_decode=0, threads=4, extra_options={})

    assert options["g"] == 2
    assert options["bf"] == 0
    assert "crf" not in options
    assert set(spec.quality(25)) <= set(options)
    assert "threads" not in options  # hardware encoders schedule themselves
    if not in_this_build(spec.ffmpeg_name):
        pytest.skip(f"{spec.ffmpeg_name} is not in this PyAV build: its option names cannot be checked here")
    supported = av.codec.CodecContext.create(spec.ffmpeg_name, "w").supported_options
    published = {o.name for o in (*supported.generic, *supported.private)}
    assert set(options) <= published, f"{vcodec}: options FFmpeg does not publish: {set(options) - published}"


_KNOB_ARGS = {"g": None, "crf": 25, "preset": None, "fast_decode": 0, "threads": None, "extra_options": {}}


def test_crf_goes_where_lerobot_maps_it_for_nvenc_qsv_and_vaapi() -> None:
    assert codec_options(spec_of("h264_nvenc"), **_KNOB_ARGS) == {
        "rc": 0,
        "qp": 25,
        "bf": 0,
        "forced-idr": 1,
        "no-scenecut": 1,
    }
    assert codec_options(spec_of("h264_qsv"), **_KNOB_ARGS)["global_quality"] == 25
    assert codec_options(spec_of("h264_vaapi"), **_KNOB_ARGS)["qp"] == 25
    v4l2 = codec_options(spec_of("h264_v4l2m2m"), **_KNOB_ARGS)
    assert (v4l2["qmin"], v4l2["qmax"]) == (25, 25)


def test_q_v_is_not_an_option_ffmpeg_uses_so_videotoolbox_gets_global_quality() -> None:
    """LeRobot maps crf to VideoToolbox's ``q:v``; avcodec_open2 leaves that name unused (checked on x264)."""
    unused = {}
    for options in ({"q:v": "40"}, {"flags": "+qscale", "global_quality": str(40 * 118)}):
        with av.open(io.BytesIO(), "w", format="mp4") as container:
            stream = cast(av.video.stream.VideoStream, container.add_stream("libx264", rate=30, options=options))
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")))
            unused[next(iter(options))] = dict(stream.codec_context.options)
            container.mux(stream.encode(None))

    assert unused == {"q:v": {"q:v": "40"}, "flags": {}}
    options = codec_options(spec_of("h264_videotoolbox"), **_KNOB_ARGS)
    assert options["flags"] == "+qscale"
    assert options["global_quality"] == 50 * 118  # crf 25 -> q 50, LeRobot's scale
    assert as_strings(options)["global_quality"] == str(50 * 118)
