"""Shared fixtures: encoded episode videos made once per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_harness import PointHooks

import robovid._faults as faults
from robovid import fidelity
from robovid.encode import EncodeResult, encode_frames
from robovid.settings import EncoderSettings
from robovid.synthetic import write_episode

EpisodeVideo = Callable[..., Path]
ShipTemplate = Callable[..., Path]


@pytest.fixture(scope="session")
def episode_video(tmp_path_factory: pytest.TempPathFactory) -> EpisodeVideo:
    """Return ``make(episode, num_frames=6, width=64, height=48, fps=30, vcodec=..., pix_fmt=..., g=2)``.

    It encodes the synthetic episode (index burnt into every frame) once per session and
    returns the cached MP4. Tests must treat the file as read-only: copy it to modify it.
    """
    root = tmp_path_factory.mktemp("episode_videos")
    cache: dict[tuple[object, ...], Path] = {}

    def make(
        episode: int = 0,
        num_frames: int = 6,
        width: int = 64,
        height: int = 48,
        fps: int = 30,
        vcodec: str = "libsvtav1",
        pix_fmt: str = "yuv420p",
        g: int | None = 2,
    ) -> Path:
        key = (episode, num_frames, width, height, fps, vcodec, pix_fmt, g)
        if key not in cache:
            name = "-".join(str(part) for part in key)
            frames = write_episode(root / f"png-{name}", episode, num_frames, width, height, seed=episode)
            video = root / f"episode-{name}.mp4"
            encode_frames(frames, video, fps, EncoderSettings(vcodec=vcodec, pix_fmt=pix_fmt, g=g))
            cache[key] = video
        return cache[key]

    return make


@pytest.fixture
def points(tmp_path_factory: pytest.TempPathFactory) -> PointHooks:
    """Test hooks for a daemon started with ``**points.env``, in a folder outside its root."""
    return PointHooks(tmp_path_factory.mktemp("points"))


FidelityEncode = Callable[[fidelity.Clip, EncoderSettings], tuple[Path, EncodeResult]]


@pytest.fixture(scope="session")
def fidelity_encode(tmp_path_factory: pytest.TempPathFactory) -> FidelityEncode:
    """Return ``encode(clip, settings) -> (video, result)``: the clip written as PNGs, encoded by the library
    (fingerprints taken in its reader thread), once per session for each (clip, settings). Read-only files."""
    root = tmp_path_factory.mktemp("fidelity")
    cache: dict[tuple[str, int, EncoderSettings], tuple[Path, EncodeResult]] = {}

    def encode(clip: fidelity.Clip, settings: EncoderSettings) -> tuple[Path, EncodeResult]:
        key = (clip.name, clip.num_frames, settings)
        if key not in cache:
            name = f"{clip.name}-{clip.num_frames}-{len(cache)}"
            frames = fidelity.write_clip(clip, root / name, marker=None)
            video = root / f"{name}.mp4"
            cache[key] = video, encode_frames(frames, video, 30, settings, fingerprints=True)
        return cache[key]

    return encode


@pytest.fixture(scope="session")
def ship_template(tmp_path_factory: pytest.TempPathFactory) -> ShipTemplate:
    """Return ``make(spec)``: a root made by the real service from ``spec`` (a ship_harness.RootSpec),
    its finished files sealed; made once per session. Copy it (ship_harness.copy_root) before use."""
    from ship_harness import make_root

    cache: dict[object, Path] = {}

    def make(spec: object) -> Path:
        if spec not in cache:
            cache[spec] = make_root(spec, tmp_path_factory.mktemp("ship_template"))  # type: ignore[arg-type]
        return cache[spec]

    return make


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    """moto's standalone S3 server on a free port of 127.0.0.1, shared by the session (a bucket per test)."""
    from s3server import moto_server

    with moto_server() as server:
        yield server


@pytest.fixture
def held_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Hold every stream encoder thread at ``stream:before-encode`` until the test removes the hold file."""
    points = tmp_path / "points"
    points.mkdir()
    monkeypatch.setattr(faults, "_POINTS_DIR", str(points))
    (points / "stream:before-encode.hold").touch()
    yield points
    (points / "stream:before-encode.hold").unlink(missing_ok=True)
