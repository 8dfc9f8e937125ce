"""Depth samples into and out of video frames unscaled, and LeRobot's 12-bit quantizer."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from robovid.depth import (
    DEPTH_QMAX,
    depth_frame,
    depth_samples,
    dequantize_depth,
    frame_samples,
    quantization_error_mm,
    quantize_depth,
)
from robovid.errors import FrameFormatError
from robovid.synthetic_depth import depth_scene, render_depth


def test_depth_images_of_every_layout_become_uint16_millimetres() -> None:
    mm = np.array([[0, 1234], [65535, 7]], dtype=np.uint16)
    for image in (mm, mm[..., None], mm[None], mm.astype(np.int32)):
        np.testing.assert_array_equal(depth_samples(image), mm)
    metres = np.array([[0.0, 1.2344], [np.nan, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(depth_samples(metres), [[0, 1234], [0, 0]])


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 3), dtype=np.uint16), "one channel"),
        (np.full((4, 4), 70000, dtype=np.int64), "0..65535"),
        (np.zeros((4, 4), dtype=bool), "not supported"),
    ],
)
def test_other_images_are_refused_with_what_to_pass(image: np.ndarray, message: str) -> None:
    with pytest.raises(FrameFormatError, match=message):
        depth_samples(image)


@pytest.mark.parametrize(
    ("encoder", "pix_fmt", "options"),
    [("ffv1", "gray16le", {}), ("libx265", "gray12le", {"x265-params": "lossless=1:log-level=error"})],
)
def test_samples_survive_a_lossless_encode_unscaled(encoder: str, pix_fmt: str, options: dict[str, str]) -> None:
    scene = depth_scene(0)
    frames = [render_depth(scene, 64, 48, 0, i) for i in range(3)]
    if pix_fmt == "gray12le":
        frames = [quantize_depth(f) for f in frames]
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream(encoder, rate=30, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        for samples in frames:
            container.mux(stream.encode(depth_frame(samples, pix_fmt)))
        container.mux(stream.encode(None))
    out.seek(0)
    with av.open(out) as container:
        decoded = [frame_samples(f).copy() for f in container.decode(video=0)]
    for source, back in zip(frames, decoded, strict=True):
        np.testing.assert_array_equal(back, source)


def test_gray12le_frames_take_codes_only() -> None:
    with pytest.raises(ValueError, match="quantize depth first"):
        depth_frame(np.full((16, 16), 5000, dtype=np.uint16), "gray12le")


def test_lerobots_log_quantizer_is_off_by_half_a_step_keeps_no_holes_and_clips_past_its_range() -> None:
    mm = np.array([0, 300, 1000, 4000, 9000, 10_000, 12_000], dtype=np.uint16)
    codes = quantize_depth(mm)
    assert codes.dtype == np.uint16 and codes.min() == 0 and codes.max() == DEPTH_QMAX
    back = dequantize_depth(codes).astype(np.int64)
    assert back[0] == 10 and back[-1] == 10_000  # a hole comes back as depth_min, far depth clipped
    for value, decoded in zip(mm[1:-1], back[1:-1], strict=True):
        assert abs(int(decoded) - int(value)) <= quantization_error_mm(float(value))
    assert quantization_error_mm(1000) < 1.3 and quantization_error_mm(10_000) < 2.8


def test_linear_quantization_and_metres_round_trip_within_a_step() -> None:
    metres = np.linspace(0.01, 10.0, 1000, dtype=np.float32)
    back = dequantize_depth(quantize_depth(metres, use_log=False), use_log=False, output_unit="m")
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, metres, atol=(10.0 - 0.01) / DEPTH_QMAX)
    with pytest.raises(ValueError, match="depth_min \\+ shift must be positive"):
        quantize_depth(metres, depth_min=1.0, shift=-2.0)
