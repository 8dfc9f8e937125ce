"""The torchcodec decoder cache is bounded, thread-safe, closes what it drops and sees changed files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
from videocheck import require_torchcodec

from robovid._decode_torchcodec import decode_video_frames_torchcodec
from robovid.cache import CACHE_SIZE_VARIABLES, DEFAULT_MAX_SIZE, VideoDecoderCache
from robovid.errors import VideoFormatError
from robovid.synthetic import read_index, render_frame, scene

FPS = 30
WIDTH, HEIGHT = 160, 120


def write_video(path: Path, episode: int, num_frames: int) -> Path:
    """Encode frames 0..num_frames-1 of ``episode`` (AV1, g=2) with PyAV."""
    background = scene(WIDTH, HEIGHT, seed=episode)
    with av.open(str(path), "w") as container:
        options = {"g": "2", "crf": "30"}
        stream = container.add_stream("libsvtav1", rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(num_frames):
            image = render_frame(background, WIDTH, HEIGHT, episode, i)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def decoded_ids(video_path: Path | str, frames: list[int], cache: VideoDecoderCache) -> list[tuple[int, int]]:
    batch = decode_video_frames_torchcodec(video_path, [i / FPS for i in frames], 1e-4, decoder_cache=cache)
    images = np.rint(batch.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return [read_index(image) for image in images]


def open_descriptors(path: Path) -> int:
    """How many of this process's file descriptors point at ``path`` (Linux /proc)."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        pytest.skip("needs /proc/self/fd to see open files")
    count = 0
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        count += target.removesuffix(" (deleted)") == str(path)
    return count


@pytest.fixture(autouse=True)
def _require_torchcodec() -> None:
    """Skip when torchcodec cannot load here, but fail where CI requires the system tools."""
    require_torchcodec()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"episode_{episode}.mp4", episode, 12) for episode in range(3)]


@pytest.mark.parametrize("max_size", [0, -1, 1.5, True])
def test_max_size_below_one_or_not_an_int_raises(max_size: int) -> None:
    with pytest.raises(ValueError, match="at least 1 decoder"):
        VideoDecoderCache(max_size=max_size)


def test_an_unbounded_cache_is_refused() -> None:
    """LeRobot takes max_size=None (or 'none' / -1 in its variable) for no bound; robovid is always bounded."""
    with pytest.raises(ValueError, match="always bounded"):
        VideoDecoderCache(max_size=None)


def test_the_default_size_is_100_or_what_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CACHE_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert VideoDecoderCache().max_size == DEFAULT_MAX_SIZE == 100
    monkeypatch.setenv("LEROBOT_VIDEO_DECODER_CACHE_SIZE", "7")
    assert VideoDecoderCache().max_size == 7
    monkeypatch.setenv("ROBOVID_VIDEO_DECODER_CACHE_SIZE", "3")
    assert VideoDecoderCache().max_size == 3  # robovid's own variable wins
    assert VideoDecoderCache(max_size=5).max_size == 5  # an explicit size wins over both


@pytest.mark.parametrize(("value", "size"), [("+5", 5), (" 6 ", 6), ("1_000", 1000), ("007", 7)])
def test_the_environment_size_is_what_int_reads_in_it(monkeypatch: pytest.MonkeyPatch, value: str, size: int) -> None:
    """'+5' was refused: only plain digits were taken."""
    monkeypatch.setenv("ROBOVID_VIDEO_DECODER_CACHE_SIZE", value)
    assert VideoDecoderCache().max_size == size


@pytest.mark.parametrize("value", ["none", "-1", "0", "lots", "2.5", "+0", "-0", "-5", "²", "5e2", "0x10"])
def test_a_bad_size_in_the_environment_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ROBOVID_VIDEO_DECODER_CACHE_SIZE", value)
    with pytest.raises(ValueError, match=rf"ROBOVID_VIDEO_DECODER_CACHE_SIZE='{re.escape(value)}'.*always bounded"):
        VideoDecoderCache()


def test_membership_says_which_files_have_a_decoder(videos: list[Path]) -> None:
    cache = VideoDecoderCache(max_size=2)
    for video in videos:
        cache.get_decoder(video)
    assert [video in cache for video in videos] == [False, True, True]
    assert str(videos[2]) in cache
    assert "not a path" not in cache
    cache.clear()
    assert videos[2] not in cache


def test_decode_video_frames_shares_one_cache_sized_by_the_environment(videos: list[Path]) -> None:
    """Calls that pass no cache share one built on first use, with the size the variable gives."""
    code = (
        "import json, sys\n"
        "import robovid\n"
        "from robovid._decode_torchcodec import default_decoder_cache\n"
        f"videos = {[str(v) for v in videos]!r}\n"
        "for video in videos:\n"
        "    robovid.decode_video_frames(video, [0.0], 1e-4, backend='torchcodec')\n"
        "cache = default_decoder_cache()\n"
        "print(json.dumps([cache.max_size, len(cache), [video in cache for video in videos]]))\n"
    )
    env = os.environ | {"ROBOVID_VIDEO_DECODER_CACHE_SIZE": "2"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [2, 2, [False, True, True]]


def test_unchanged_file_reuses_its_decoder(videos: list[Path]) -> None:
    cache = VideoDecoderCache()
    assert cache.get_decoder(videos[0]) is cache.get_decoder(str(videos[0]))
    assert cache.size() == len(cache) == 1


def test_cache_is_bounded_and_closes_the_evicted_file(videos: list[Path]) -> None:
    cache = VideoDecoderCache(max_size=2)
    for video in videos:
        cache.get_decoder(video)
    assert cache.size() == 2
    assert [open_descriptors(video) for video in videos] == [0, 1, 1]
    assert decoded_ids(videos[0], [7], cache) == [(0, 7)]  # reopened, evicting the least recently used
    assert [open_descriptors(video) for video in videos] == [1, 0, 1]
    cache.clear()
    assert cache.size() == 0
    assert [open_descriptors(video) for video in videos] == [0, 0, 0]


def test_concurrent_decoding_from_8_threads_is_correct_and_bounded(videos: list[Path]) -> None:
    cache = VideoDecoderCache(max_size=2)

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(15):
            episode, frame = int(rng.integers(3)), int(rng.integers(12))
            assert decoded_ids(videos[episode], [frame], cache) == [(episode, frame)]
            cache.get_decoder(videos[int(rng.integers(3))])

    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(work, seed) for seed in range(8)]:
            future.result(timeout=60)
    assert cache.size() <= 2
    cache.clear()
    assert sum(open_descriptors(video) for video in videos) == 0


def test_failed_open_closes_the_file_and_raises_video_format_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    cache = VideoDecoderCache()
    with pytest.raises(VideoFormatError, match=r"garbage\.mp4") as caught:
        cache.get_decoder(garbage)
    assert caught.value.__cause__ is not None
    assert open_descriptors(garbage) == 0
    assert cache.size() == 0


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        VideoDecoderCache().get_decoder(tmp_path / "missing.mp4")


def replace_atomically(path: Path, source: Path) -> None:
    os.replace(source, path)


def rewrite_in_place(path: Path, source: Path) -> None:
    """Overwrite the same inode, as robovid's in-place chunk append does."""
    with open(path, "r+b") as f:
        f.write(source.read_bytes())
        f.truncate()


@pytest.mark.parametrize("update", [replace_atomically, rewrite_in_place])
def test_cached_decoder_sees_a_file_grown_with_a_new_episode(
    tmp_path: Path, update: Callable[[Path, Path], None]
) -> None:
    chunk = write_video(tmp_path / "chunk.mp4", episode=0, num_frames=30)
    cache = VideoDecoderCache()
    assert decoded_ids(chunk, [10], cache) == [(0, 10)]
    grown = write_video(tmp_path / "grown.mp4", episode=1, num_frames=60)
    update(chunk, grown)
    assert decoded_ids(chunk, [45, 10], cache) == [(1, 45), (1, 10)]
    assert cache.size() == 1
    assert open_descriptors(chunk) == 1  # the replaced file's handle was closed


def test_file_url_is_cached_and_refreshed_through_fsspec(tmp_path: Path) -> None:
    chunk = write_video(tmp_path / "chunk.mp4", episode=0, num_frames=30)
    cache = VideoDecoderCache()
    assert decoded_ids(chunk.as_uri(), [29], cache) == [(0, 29)]
    replace_atomically(chunk, write_video(tmp_path / "grown.mp4", episode=1, num_frames=60))
    assert decoded_ids(chunk.as_uri(), [59], cache) == [(1, 59)]


def test_without_torchcodec_the_error_says_what_to_install_and_pyav_is_the_default() -> None:
    code = (
        "import json, sys; sys.modules['torchcodec'] = None  # makes `import torchcodec` fail\n"
        "from structlog.testing import capture_logs\n"
        "from robovid.cache import VideoDecoderCache\n"
        "from robovid.decode import get_safe_default_codec\n"
        "try:\n"
        "    VideoDecoderCache().get_decoder('any.mp4')\n"
        "except ImportError as error:\n"
        "    caught = [type(error).__name__, isinstance(error.__cause__, ImportError), str(error)]\n"
        "with capture_logs() as logs:\n"
        "    default = get_safe_default_codec()\n"
        "print(json.dumps([caught, default, [log['event'] for log in logs]]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    (error_type, caused_by_import_error, message), default, events = json.loads(result.stdout)
    assert (error_type, caused_by_import_error) == ("BackendUnavailableError", True)
    for advice in ("pip install 'robovid[decode]'", "torchcodec==0.13", "apt-get install ffmpeg", "backend='pyav'"):
        assert advice in message
    assert (default, events) == ("pyav", ["torchcodec_unavailable_using_pyav"])
