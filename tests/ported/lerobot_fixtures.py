"""What LeRobot's video tests import from LeRobot's own test tree, rebuilt for robovid.

The tests in this folder are ported from huggingface/lerobot at commit 7427f31
(``tests/datasets/test_video_encoding.py``, ``test_video_decoder_cache.py``,
``test_streaming_video_encoder.py``) and from its pull request #3179
(``tests/datasets/test_video_timestamp_drift.py``), Apache-2.0. Their assertions are unchanged;
only imports and fixtures differ, and those of the tests that run in robovid's python are all here
(the 9 that run in LeRobot main's python, through its dataset writer, carry theirs in
``lerobot_main_writer.py``):

- LeRobot's clips in ``tests/artifacts/encoded_videos`` are Git LFS objects not stored
  here. ``write_artifacts`` makes clips with the same properties (96x64, 30 fps, AV1 but
  one h264 clip and one 32x48 clip) with plain PyAV, not robovid, so that like LeRobot's
  they carry no robovid settings tag. ``TEST_ARTIFACTS_DIR`` points at them.
- ``write_image`` stands for ``lerobot.datasets.image_writer.write_image`` (PNG via Pillow).
- ``get_codec`` stands for ``lerobot.datasets.pyav_utils.get_codec``: whether the encoder
  behind a ``vcodec`` is in PyAV's FFmpeg build.
- ``cached_handle`` / ``cached_handles`` stand for reading ``VideoDecoderCache._cache``,
  LeRobot's private dict of (decoder, file handle), which robovid's cache does not have.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
from PIL import Image

from robovid.cache import VideoDecoderCache
from robovid.encoders import in_this_build, spec_of

TEST_ARTIFACTS_DIR = Path(tempfile.gettempdir()) / f"robovid-lerobot-clips-{os.getpid()}"
"""Filled by ``write_artifacts`` (a session fixture in this folder's conftest) before any test runs."""

ARTIFACT_CLIPS = {  # name: (codec, width, height, frames)
    "clip_4frames.mp4": ("libsvtav1", 96, 64, 4),
    "clip_5frames.mp4": ("libsvtav1", 96, 64, 5),
    "clip_6frames.mp4": ("libsvtav1", 96, 64, 6),
    "clip_h264.mp4": ("libx264", 96, 64, 4),
    "clip_32x48.mp4": ("libsvtav1", 32, 48, 4),
}
FPS = 30

DUMMY_VIDEO_INFO = {  # LeRobot's tests/fixtures/constants.py
    "video.fps": FPS,
    "video.codec": "av1",
    "video.pix_fmt": "yuv420p",
    "video.video_backend": "pyav",
    "video.extra_options": {},
    "video.g": 2,
    "video.crf": 30,
    "video.preset": 12,
    "video.fast_decode": 0,
    "is_depth_map": False,
    "has_audio": False,
}


def write_artifacts(directory: Path) -> None:
    """Write the clips of ``ARTIFACT_CLIPS`` into ``directory`` (replacing it)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (encoder, width, height, frames) in ARTIFACT_CLIPS.items():
        with av.open(str(directory / name), "w") as container:
            stream = container.add_stream(encoder, rate=FPS, options={"g": "2", "crf": "30"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for _ in range(frames):
                rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode(None))


def write_image(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path)


def get_codec(vcodec: str) -> bool | None:
    """True if the encoder behind ``vcodec`` is in this PyAV build, else None (as LeRobot's ``get_codec``)."""
    return in_this_build(spec_of(vcodec).ffmpeg_name) or None


def cached_handle(cache: VideoDecoderCache, video_path: Path | str) -> object:
    """The open file handle the cache keeps for ``video_path``."""
    return cache._entries[str(video_path)].handle


def cached_handles(cache: VideoDecoderCache) -> list[object]:
    return [entry.handle for entry in cache._entries.values()]


DUMMY_REPO_ID = "dummy/repo"


class _Meta:
    video_path = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"

    def update_chunk_settings(self, video_files_size_in_mb: int) -> None:
        """Every episode goes to one file here, as the drift test asks with a large size."""


class RobovidDataset:
    """Stands for ``LeRobotDataset`` in the drift test: records episodes the way LeRobot's writer
    (after its PR #3179) does, with robovid's functions.

    Each camera's episode is encoded with ``robovid.encode_video_frames``; its
    ``from_timestamp`` is ``robovid.get_video_duration_in_s`` of the camera's file before the
    episode joins it; the episode is joined with ``robovid.concatenate_video_files([file, episode], file)``.
    """

    meta = _Meta()

    def __init__(self, root: Path, fps: int, features: dict[str, dict[str, object]]) -> None:
        self.root, self.fps = root, fps
        self.video_keys = [key for key, feature in features.items() if feature["dtype"] == "video"]
        self._frames = 0
        self._episodes: list[dict[str, object]] = []

    @classmethod
    def create(cls, repo_id: str, fps: int, features: dict[str, dict[str, object]], root: Path) -> RobovidDataset:
        return cls(root, fps, features)

    def _images(self, key: str) -> Path:
        return self.root / "images" / key / f"episode-{len(self._episodes):06d}"

    def add_frame(self, frame: dict[str, object]) -> None:
        for key in self.video_keys:
            folder = self._images(key)
            folder.mkdir(parents=True, exist_ok=True)
            write_image(np.asarray(frame[key]), folder / f"frame-{self._frames:06d}.png")
        self._frames += 1

    def save_episode(self) -> None:
        from robovid import concatenate_video_files, encode_video_frames, get_video_duration_in_s

        row: dict[str, object] = {"episode_index": len(self._episodes)}
        for key in self.video_keys:
            video = self.root / self.meta.video_path.format(video_key=key, chunk_index=0, file_index=0)
            episode = self.root / "tmp" / f"{key}-episode.mp4"
            encode_video_frames(self._images(key), episode, self.fps, overwrite=True)
            if video.exists():
                from_timestamp = get_video_duration_in_s(video)
                concatenate_video_files([video, episode], video)
            else:
                from_timestamp = 0.0
                video.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(episode, video)
            row |= {
                f"videos/{key}/from_timestamp": from_timestamp,
                f"videos/{key}/to_timestamp": get_video_duration_in_s(video),
                f"videos/{key}/chunk_index": 0,
                f"videos/{key}/file_index": 0,
            }
        self._episodes.append(row)
        self._frames = 0
        (self.root / "meta").mkdir(exist_ok=True)
        (self.root / "meta" / "episodes.json").write_text(json.dumps(self._episodes))

    def finalize(self) -> None:
        """Nothing is buffered."""


def load_episodes(root: Path) -> list[dict[str, object]]:
    """The episodes ``RobovidDataset`` recorded, as LeRobot's ``load_episodes`` rows."""
    return list(json.loads((root / "meta" / "episodes.json").read_text()))


DUMMY_DEPTH_VIDEO_INFO_FULL = {  # LeRobot's tests/fixtures/constants.py
    **{k: v for k, v in DUMMY_VIDEO_INFO.items() if k != "video.preset"},
    "video.codec": "hevc",
    "video.pix_fmt": "gray12le",
    "is_depth_map": True,
    "video.depth_min": 0.05,
    "video.depth_max": 8.0,
    "video.shift": 2.5,
    "video.use_log": True,
}
