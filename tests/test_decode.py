"""Decoding returns exactly the frame each timestamp names, with both backends, on real videos."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from structlog.testing import capture_logs
from videocheck import require_torchcodec

from robovid.decode import (
    decode_video_frames,
    decode_video_frames_npu,
    decode_video_frames_torchvision,
    get_safe_default_codec,
)
from robovid.errors import BackendUnavailableError, FrameTimestampError, InvalidToleranceError
from robovid.synthetic import read_index, render_frame, scene

FPS = 30
WIDTH, HEIGHT = 160, 120
NUM_FRAMES = 60
EPISODE = 7
LAST_FRAME_S = (NUM_FRAMES - 1) / FPS
CODEC_OPTIONS = {
    "libsvtav1": {"g": "2", "crf": "30"},
    "libx264": {"g": "2", "crf": "23"},  # B-frames on (x264's default): pts and decode order differ
}


def source_frames(num_frames: int = NUM_FRAMES, episode: int = EPISODE) -> list[np.ndarray]:
    background = scene(WIDTH, HEIGHT, seed=episode)
    return [render_frame(background, WIDTH, HEIGHT, episode, i) for i in range(num_frames)]


def write_video(path: Path, codec: str = "libsvtav1", num_frames: int = NUM_FRAMES) -> Path:
    """Encode synthetic frames 0..num_frames-1 of EPISODE with PyAV (yuv420p, FPS)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS, options=CODEC_OPTIONS[codec])
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for image in source_frames(num_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def frame_ids(frames: object) -> list[tuple[int, int]]:
    """The (episode, frame) burnt into each decoded [N, 3, H, W] float frame."""
    array = np.asarray(frames)
    images = np.rint(array.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return [read_index(image) for image in images]


@pytest.fixture(params=["pyav", "torchcodec"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "torchcodec":
        require_torchcodec()
    return str(request.param)


@pytest.fixture(scope="module", params=["libsvtav1", "libx264"])
def any_video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / f"{request.param}.mp4", request.param)


@pytest.fixture(scope="module")
def av1_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "av1.mp4")


def test_every_frame_decoded_alone_is_the_exact_frame(any_video: Path, backend: str) -> None:
    for i in range(NUM_FRAMES):
        frames = decode_video_frames(any_video, [i / FPS], tolerance_s=1e-4, backend=backend)
        assert frame_ids(frames) == [(EPISODE, i)], f"frame {i}"


def test_random_batch_with_duplicates_comes_back_in_query_order(any_video: Path, backend: str) -> None:
    rng = np.random.default_rng(0)
    wanted = [*rng.integers(0, NUM_FRAMES, 24).tolist(), 5, 5, 0, NUM_FRAMES - 1, 5]
    frames = decode_video_frames(any_video, [i / FPS for i in wanted], tolerance_s=1e-4, backend=backend)
    assert frame_ids(frames) == [(EPISODE, i) for i in wanted]


@pytest.mark.parametrize("past_end_s", [0.01, 1 / FPS])
def test_timestamp_just_past_the_end_within_tolerance_returns_last_frame(
    av1_video: Path, backend: str, past_end_s: float
) -> None:
    frames = decode_video_frames(av1_video, [LAST_FRAME_S + past_end_s], tolerance_s=0.04, backend=backend)
    assert frame_ids(frames) == [(EPISODE, NUM_FRAMES - 1)]


@pytest.mark.parametrize("timestamp_s", [LAST_FRAME_S + 1.0, 10.5 / FPS])
def test_timestamp_out_of_tolerance_raises_naming_video_and_backend(
    av1_video: Path, backend: str, timestamp_s: float
) -> None:
    with pytest.raises(FrameTimestampError, match="tolerance_s") as caught:
        decode_video_frames(av1_video, [0.0, timestamp_s], tolerance_s=1e-4, backend=backend)
    assert str(av1_video) in str(caught.value)
    assert f"backend {backend}" in str(caught.value)


def test_tolerance_bound_is_inclusive(av1_video: Path, backend: str) -> None:
    frames = decode_video_frames(av1_video, [0.25 / FPS], tolerance_s=0.25 / FPS, backend=backend)
    assert frame_ids(frames) == [(EPISODE, 0)]


@pytest.mark.parametrize("timestamp_s", [-0.5, math.nan, math.inf])
def test_negative_or_non_finite_timestamp_raises(av1_video: Path, backend: str, timestamp_s: float) -> None:
    with pytest.raises(FrameTimestampError, match="negative or not finite"):
        decode_video_frames(av1_video, [timestamp_s], tolerance_s=0.04, backend=backend)


@pytest.mark.parametrize("tolerance_s", [None, -1e-4, math.nan, np.float64(math.nan), "1e-4", True], ids=repr)
def test_a_tolerance_that_is_not_seconds_raises_saying_what_to_pass(
    av1_video: Path, backend: str, tolerance_s: object
) -> None:
    """None has no meaning (the reference compares frames' distances with it: a bare TypeError); it, a negative
    and a NaN tolerance raise a named error that is still the TypeError / ValueError they were."""
    with pytest.raises(InvalidToleranceError, match=r"tolerance_s=.* must be a number of seconds >= 0.*1e-4") as caught:
        decode_video_frames(av1_video, [0.0], tolerance_s=tolerance_s, backend=backend)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, ValueError)
    assert str(av1_video) in str(caught.value)


def test_an_infinite_tolerance_accepts_the_nearest_frame(av1_video: Path, backend: str) -> None:
    frames = decode_video_frames(av1_video, [LAST_FRAME_S + 5.0], tolerance_s=math.inf, backend=backend)
    assert frame_ids(frames) == [(EPISODE, NUM_FRAMES - 1)]


def test_empty_timestamps_raise_value_error(av1_video: Path, backend: str) -> None:
    with pytest.raises(ValueError, match="at least one timestamp"):
        decode_video_frames(av1_video, [], tolerance_s=0.04, backend=backend)


def test_frames_are_float32_nchw_in_unit_range_and_close_to_source(av1_video: Path, backend: str) -> None:
    wanted = [0, 17, 42, NUM_FRAMES - 1]
    frames = decode_video_frames(av1_video, [i / FPS for i in wanted], tolerance_s=1e-4, backend=backend)
    array = np.asarray(frames)
    assert array.dtype == np.float32
    assert array.shape == (len(wanted), 3, HEIGHT, WIDTH)
    assert array.min() >= 0.0 and array.max() <= 1.0
    sources = source_frames()
    for i, frame in zip(wanted, array, strict=True):
        error = frame.transpose(1, 2, 0) * 255 - sources[i]
        psnr_db = 10 * math.log10(255**2 / float(np.mean(error**2)))
        assert psnr_db > 30, f"frame {i}: PSNR {psnr_db:.1f} dB"


def test_return_uint8_gives_the_same_frames_unconverted(any_video: Path, backend: str) -> None:
    wanted = [0, 17, 42, NUM_FRAMES - 1, 17]
    timestamps = [i / FPS for i in wanted]
    as_float = np.asarray(decode_video_frames(any_video, timestamps, tolerance_s=1e-4, backend=backend))
    frames = decode_video_frames(any_video, timestamps, tolerance_s=1e-4, backend=backend, return_uint8=True)

    array = np.asarray(frames)
    assert type(frames).__module__ == "torch"
    assert array.dtype == np.uint8
    assert array.shape == (len(wanted), 3, HEIGHT, WIDTH)
    assert np.array_equal(array, np.rint(as_float * 255).astype(np.uint8))
    assert [read_index(image) for image in array.transpose(0, 2, 3, 1)] == [(EPISODE, i) for i in wanted]


def test_file_url_is_read_through_fsspec(av1_video: Path, backend: str) -> None:
    frames = decode_video_frames(av1_video.as_uri(), [0.5, 0.1], tolerance_s=1e-4, backend=backend)
    assert frame_ids(frames) == [(EPISODE, 15), (EPISODE, 3)]


def test_loaded_timestamps_are_logged_on_request(av1_video: Path) -> None:
    with capture_logs() as logs:
        decode_video_frames_torchvision(av1_video, [0.2], tolerance_s=1e-4, log_loaded_timestamps=True)
    assert [(log["event"], log["loaded_timestamps"]) for log in logs] == [("frames_loaded", [0.2])]


def test_default_backend_is_torchcodec_when_it_loads(av1_video: Path) -> None:
    require_torchcodec()
    assert get_safe_default_codec() == "torchcodec"
    frames = decode_video_frames(av1_video, [1.0], tolerance_s=1e-4)
    assert frame_ids(frames) == [(EPISODE, 30)]


@pytest.mark.parametrize("alias", ["pyav", "video_reader"])
def test_torchvision_compatibility_names_decode_with_pyav(av1_video: Path, alias: str) -> None:
    frames = decode_video_frames_torchvision(av1_video, [0.4], tolerance_s=1e-4, backend=alias)
    assert frame_ids(frames) == [(EPISODE, 12)]


def test_unknown_backend_raises_value_error_listing_supported_ones(av1_video: Path) -> None:
    with pytest.raises(ValueError, match="Supported values are torchcodec, pyav, video_reader, npu"):
        decode_video_frames(av1_video, [0.0], tolerance_s=1e-4, backend="torchvision")


def test_npu_backend_without_torch_npu_says_what_to_install(av1_video: Path) -> None:
    try:
        import torch_npu  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("torch_npu is installed here")
    with pytest.raises(BackendUnavailableError, match="torch-npu") as caught:
        decode_video_frames_npu(av1_video, [0.0], tolerance_s=1e-4)
    assert caught.value.__cause__ is not None


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_robovid_does_not_import_torch() -> None:
    out = run_python(
        "import sys, robovid, robovid.decode, robovid.cache\n"
        "print(sorted(m for m in ('torch', 'torchcodec') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_pyav_backend_returns_numpy_without_torch(av1_video: Path) -> None:
    out = run_python(
        "import sys; sys.modules['torch'] = None  # makes `import torch` fail, as if not installed\n"
        "from robovid.decode import decode_video_frames\n"
        f"frames = decode_video_frames({str(av1_video)!r}, [0.1, 0.2], 1e-4, backend='pyav')\n"
        "print(type(frames).__module__, frames.dtype, frames.shape)"
    )
    assert out.strip() == f"numpy float32 (2, 3, {HEIGHT}, {WIDTH})"


def test_pyav_backend_returns_numpy_uint8_without_torch(av1_video: Path) -> None:
    out = run_python(
        "import sys; sys.modules['torch'] = None  # makes `import torch` fail, as if not installed\n"
        "from robovid.decode import decode_video_frames\n"
        f"frames = decode_video_frames({str(av1_video)!r}, [0.1], 1e-4, backend='pyav', return_uint8=True)\n"
        "print(type(frames).__module__, frames.dtype, frames.shape, frames.flags['C_CONTIGUOUS'])"
    )
    assert out.strip() == f"numpy uint8 (1, 3, {HEIGHT}, {WIDTH}) True"
